"""The simulator plays the odd messages real providers' code sends (opt-in quirks), and the
engine, on its default settings, keeps the call with the right meaning: every frame of
the caller's audio reaches the agent, each digit arrives once, the odd message is counted."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.call.transport import memory_transport_pair
from callengine.events import CallerAudio, CallStarted, Dtmf, MarkEchoed
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.testing.harness import open_simulated_call
from callengine.testing.provider import SimulatedProvider
from callengine.testing.quirks import AWAAZ_QUIRKS, MOD_AUDIO_FORK_QUIRKS, parse_quirks, quirks_for, with_quirks


async def _call(provider: str, quirks, *, keys: str = "", rate: int | None = None, seconds: float = 1.01):
    """A call whose caller says a tone (and presses ``keys``), then hangs up; the agent
    keeps everything it gets. The agent runs at the wire rate so its audio is the wire's."""
    # (hangs up between two microphone frames: a frame sent at the same instant as the stop
    # may follow it, and the engine reads nothing after a stop)
    rate = rate or create_codec(provider).capabilities.inbound_rate
    pcm = bytearray()
    digits: list[str] = []
    said = tone(440, 0.5, rate, dbfs=-12)

    async def agent(call):
        async for ev in call:
            if isinstance(ev, Dtmf):
                digits.append(ev.digit)
            elif hasattr(ev, "pcm"):
                pcm.extend(ev.pcm)

    async with open_simulated_call(agent, provider, CallConfig(agent_rate=rate), provider_codec_options={"quirks": quirks}) as sim:
        sim.provider.say(said)
        for key in keys:
            await sim.provider.press(key)
        await trio.sleep(seconds)
        await sim.provider.stop()
    return sim, np.frombuffer(bytes(pcm), dtype="<i2"), digits, said


def _assert_all_audio_arrived(sim, got, said):
    """Every frame the microphone sent reached the agent, in order, and nothing else did."""
    provider = sim.provider
    assert sim.report.stats.frames_in == provider.frames_sent
    assert len(got) == provider.frames_sent * provider.frame_samples
    np.testing.assert_array_equal(got[: len(said)], said)
    assert not got[len(said) :].any()  # then the silence between utterances
    assert sim.report.end_cause == "provider_stop"


# Awaaz quirks and how many messages the engine reports as odd (unknown) for each; the
# ones at 0 the engine reads as the normal message they stand for.
AWAAZ_EXPECTED_UNKNOWN = {
    "media-before-start": 1,
    "dtmf-before-start": 1,
    "mark-before-start": 1,
    "second-start": 1,
    "media-without-payload": 1,
    "media-without-media": 1,
    "base64-line-breaks": 0,
    "binary-json": 0,
    "bom": 0,
    "string-marks": 0,
}


def test_every_awaaz_quirk_is_tested():
    assert set(AWAAZ_EXPECTED_UNKNOWN) == set(AWAAZ_QUIRKS)


@pytest.mark.parametrize("quirk", sorted(AWAAZ_EXPECTED_UNKNOWN))
async def test_awaaz_quirk_keeps_the_call(autojump_clock, quirk):
    sim, got, digits, said = await _call("awaaz", {quirk}, keys="5")
    _assert_all_audio_arrived(sim, got, said)
    assert digits == ["5"]  # the key pressed during the call, once; never one sent before start
    assert sim.report.stats.unknown_messages == AWAAZ_EXPECTED_UNKNOWN[quirk]
    assert sim.call is not None and sim.call.info.call_id == "sim-call-1"  # a second start changes nothing


async def test_awaaz_all_quirks_at_once(autojump_clock):
    sim, got, digits, said = await _call("awaaz", set(AWAAZ_QUIRKS), keys="7#")
    _assert_all_audio_arrived(sim, got, said)
    assert digits == ["7", "#"]
    assert sim.report.stats.unknown_messages == sum(AWAAZ_EXPECTED_UNKNOWN.values())


async def test_awaaz_quirks_are_on_the_wire():
    """What the quirky simulator sends, message by message (so the tests above test what
    they say they test)."""
    codec = with_quirks(
        create_codec("awaaz", Role.PROVIDER),
        {"media-before-start", "second-start", "base64-line-breaks", "media-without-media", "binary-json", "bom"},
    )
    start = CallStarted(call_id="c1", stream_id="MZ1", sample_rate=8000)
    wire = list(codec.send(start))
    wire += codec.send(CallerAudio(bytes(range(256)) * 2 + bytes(128), 8000))
    assert all(isinstance(m, bytes) and m.startswith("\ufeff".encode()) for m in wire)
    msgs = [json.loads(m.decode("utf-8-sig")) for m in wire]
    assert [m["event"] for m in msgs] == ["connected", "media", "start", "start", "media", "media"]
    assert [m["start"]["call_sid"] for m in msgs if m["event"] == "start"] == ["c1", "second-c1"]
    payload = msgs[4]["media"]["payload"]
    assert "\n" in payload and base64.b64decode(payload) == bytes(range(256)) * 2 + bytes(128)
    assert "media" not in msgs[5]


async def test_awaaz_string_marks_are_echoes(autojump_clock):
    reached = []

    async def agent(call):
        await call.play(tone(440, 0.4, 16000))
        await (await call.mark("m")).wait()
        reached.append(trio.current_time())

    async with open_simulated_call(agent, "awaaz", provider_codec_options={"quirks": "string-marks"}) as sim:
        pass
    assert len(reached) == 1
    assert (sim.report.stats.mark_echoes, sim.report.stats.mark_fallbacks) == (1, 0)
    codec = with_quirks(create_codec("awaaz", Role.PROVIDER), {"string-marks"})
    codec.send(CallStarted(call_id="c1", stream_id="MZ1", sample_rate=8000))
    (echo,) = codec.send(MarkEchoed("m"))
    assert json.loads(echo)["mark"] == "m"


MOD_AUDIO_FORK_EXPECTED_UNKNOWN = {
    "bom": 0,
    "joined-texts": 0,
    "binary-before-metadata": 1,
    "dtmf-drachtio": 0,
    "dtmf-jambonz": 0,
}


def test_every_mod_audio_fork_quirk_is_tested():
    assert set(MOD_AUDIO_FORK_EXPECTED_UNKNOWN) == set(MOD_AUDIO_FORK_QUIRKS)


@pytest.mark.parametrize("provider", ["knowlarity", "awaaz-legacy"])
@pytest.mark.parametrize("quirk", sorted(MOD_AUDIO_FORK_EXPECTED_UNKNOWN))
async def test_mod_audio_fork_quirk_keeps_the_call(autojump_clock, provider, quirk):
    text_keys = quirk.startswith("dtmf-")
    sim, got, digits, said = await _call(provider, {quirk}, keys="5" if text_keys else "")
    _assert_all_audio_arrived(sim, got, said)
    assert sim.report.stats.unknown_messages == MOD_AUDIO_FORK_EXPECTED_UNKNOWN[quirk]
    if text_keys:
        # sent as text, not as a tone: once, though the engine also listens for tones
        assert digits == ["5"]
        assert sim.report.stats.dtmf == 1
        assert [e.kind for e in sim.provider.timeline if e.kind.startswith("dtmf")] == ["dtmf"]


async def test_joined_texts_carry_the_metadata_and_two_keys_in_one_frame(autojump_clock):
    """Keys pressed before the socket was next writable leave with the metadata, joined
    (drachtio appends queued texts): the call starts and both digits arrive once, in order."""
    sim, got, digits, said = await _call("knowlarity", {"joined-texts", "dtmf-jambonz", "bom"}, keys="1A")
    _assert_all_audio_arrived(sim, got, said)
    assert digits == ["1", "A"]  # A-D are keys a text DTMF (or an in-band tone) can carry
    assert sim.report.stats.unknown_messages == 0


async def test_joined_texts_on_the_wire():
    codec = with_quirks(create_codec("knowlarity", Role.PROVIDER), "joined-texts,dtmf-drachtio")
    start = CallStarted(call_id="u1", sample_rate=16000)
    assert codec.send(start) == []  # held until the next frame goes out
    assert codec.send(Dtmf("5")) == []
    frames = codec.send(CallerAudio(bytes(640), 16000))
    assert isinstance(frames[0], str) and frames[1] == bytes(640)
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(frames[0])
    assert first["uuid"] == "u1"
    assert json.loads(frames[0][end:]) == {"dtmf": "5", "duration": "1600", "source": "RTP"}


def test_quirk_names_are_checked():
    assert parse_quirks(["bom,binary-json", " Second-Start "]) == {"bom", "binary-json", "second-start"}
    with pytest.raises(ValueError, match="knowlarity has no quirk second-start"):
        with_quirks(create_codec("knowlarity", Role.PROVIDER), {"second-start"})
    with pytest.raises(ValueError, match="awaaz has no quirk joined-texts"):
        with_quirks(create_codec("awaaz", Role.PROVIDER), {"joined-texts"})
    with pytest.raises(ValueError, match="one of"):
        with_quirks(create_codec("knowlarity", Role.PROVIDER), {"dtmf-drachtio", "dtmf-jambonz"})
    codec = create_codec("awaaz", Role.PROVIDER)
    assert with_quirks(codec, None) is codec
    assert quirks_for("awaaz-legacy") == MOD_AUDIO_FORK_QUIRKS


async def test_a_simulator_instance_takes_quirks_from_its_codec_options():
    a, _ = memory_transport_pair()
    sim = SimulatedProvider(a, "awaaz", codec_options={"quirks": "bom", "mark_shape": "string"})
    assert sim.codec.name == "awaaz" and getattr(sim.codec, "quirks") == {"bom"}
    assert getattr(sim.codec, "mark_shape") == "string"


def test_the_dial_option_parses_into_quirks():
    import argparse

    from callengine.testing.quirks import add_quirk_argument, check_quirks

    parser = argparse.ArgumentParser()
    add_quirk_argument(parser)
    args = parser.parse_args(["--quirk", "bom,binary-json", "--quirk", "second-start"])
    assert check_quirks("awaaz", args.quirk) == {"bom", "binary-json", "second-start"}
    assert check_quirks("knowlarity", parser.parse_args([]).quirk) == frozenset()
    with pytest.raises(ValueError, match="knowlarity has no quirk binary-json, second-start; it can play: binary-before-metadata, bom,"):
        check_quirks("knowlarity", args.quirk)
