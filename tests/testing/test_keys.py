"""Keys as each provider carries them, read from one place (``Capabilities.dtmf_keys``):
Awaaz's serializer carries 0-9, * and # only, so the simulated Awaaz drops A-D as the real
one does; Knowlarity has no DTMF events, so every key is a tone in the caller's audio."""

from __future__ import annotations

import pytest
import trio

from callengine.events import Dtmf
from callengine.protocols import AwaazCodec, KnowlarityCodec, LegacyAwaazCodec
from callengine.testing.harness import open_simulated_call


def test_the_key_sets_are_on_the_codecs():
    assert AwaazCodec.capabilities.dtmf_keys == frozenset("0123456789*#")
    assert AwaazCodec().capabilities.dtmf_keys == frozenset("0123456789*#")  # options keep it
    for codec in (KnowlarityCodec, LegacyAwaazCodec):
        assert not codec.capabilities.dtmf_events and codec.capabilities.dtmf_keys == frozenset()


async def _keys_heard(provider: str, keys: str):
    digits: list[str] = []

    async def agent(call):
        async for ev in call:
            if isinstance(ev, Dtmf):
                digits.append(ev.digit)

    async with open_simulated_call(agent, provider) as sim:
        await trio.sleep(0.3)
        for key in keys:
            await sim.provider.press(key)
            await trio.sleep(0.3)
        await sim.provider.stop()
    return sim, digits


async def test_awaaz_drops_a_to_d_as_its_serializer_does(autojump_clock):
    sim, digits = await _keys_heard("awaaz", "1A#d")
    assert digits == ["1", "#"]
    assert [k for _, k in sim.provider.dtmf_dropped] == ["A", "D"]
    dropped = [e for e in sim.provider.timeline if e.kind == "dtmf dropped"]
    assert [e.detail.split(":")[0] for e in dropped] == ["A", "D"]
    assert sim.report.stats.dtmf == 2
    # nothing went on the wire for A or D: the engine saw exactly two key messages
    assert sim.report.stats.unknown_messages == 0


@pytest.mark.parametrize("provider", ["knowlarity", "awaaz-legacy"])
async def test_in_band_providers_play_every_key_as_a_tone(autojump_clock, provider):
    sim, digits = await _keys_heard(provider, "1A#D")
    assert digits == ["1", "A", "#", "D"]
    assert [e.detail for e in sim.provider.timeline if e.kind == "dtmf-tone"] == ["1", "A", "#", "D"]
    assert not sim.provider.dtmf_dropped


async def test_a_key_no_keypad_has_is_an_error(autojump_clock):
    async def agent(call):
        await trio.sleep_forever()

    async with open_simulated_call(agent, "awaaz", wait=False) as sim:
        for bad in ("X", "12", ""):
            with pytest.raises(ValueError, match="not a DTMF key"):
                await sim.provider.press(bad)
