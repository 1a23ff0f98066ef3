"""Barge-in on real recorded speech, in virtual time; in-band DTMF; a slow agent."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.events import BargeIn, Clear, Dtmf, PlayAudio, SpeechEnded, SpeechStarted
from callengine.protocols.registry import CODECS
from callengine.testing.harness import open_simulated_call

PROVIDERS = list(CODECS)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_barge_in_stops_playback_within_min_speech_plus_one_chunk(autojump_clock, provider, speech):
    samples, onset_in_file = speech
    events = []
    results = []

    async def agent(call):
        pb = await call.play(tone(500, 10.0, 16000, dbfs=-15))
        async for ev in call:
            if isinstance(ev, (SpeechStarted, BargeIn, SpeechEnded)):
                events.append((trio.current_time(), ev))
                if isinstance(ev, BargeIn):
                    results.append(await pb.wait())
                if isinstance(ev, SpeechEnded):
                    break

    config = CallConfig(min_speech_ms=200)
    async with open_simulated_call(agent, provider, config) as sim:
        await trio.sleep(1.0)
        starts_at = sim.provider.say(samples, 8000)
    speech_onset = starts_at + onset_in_file  # call time of the first speech sample
    clear_t = [t for t, c in sim.provider.received if isinstance(c, Clear)]
    assert len(clear_t) == 1
    latency = clear_t[0] - speech_onset
    # the first speech frame arrives one frame after the onset; the bound is counted from it
    chunk = sim.session.chunk_s
    assert 0 < latency <= 0.2 + 0.02 + 0.02, latency
    if provider == "knowlarity":
        # killAudio, and no clip after it
        assert not any(isinstance(c, PlayAudio) for t, c in sim.provider.received if t > clear_t[0])
    kinds = [type(e).__name__ for _, e in events]
    assert kinds[:2] == ["SpeechStarted", "BargeIn"]
    barge = events[1][1]
    assert barge.interrupted and barge.interrupted[0].interrupted
    assert results[0].played_ms == pytest.approx(1000 * (clear_t[0]), abs=1000 * chunk)
    assert sim.report.stats.barge_ins == 1


async def test_no_barge_in_while_the_bot_is_silent(autojump_clock, speech):
    samples, _ = speech
    events = []

    async def agent(call):
        async for ev in call:
            if isinstance(ev, (SpeechStarted, SpeechEnded, BargeIn)):
                events.append(ev)
                if isinstance(ev, SpeechEnded):
                    break

    async with open_simulated_call(agent, "awaaz") as sim:
        await trio.sleep(0.5)
        sim.provider.say(samples, 8000)
    assert not any(isinstance(c, Clear) for _, c in sim.provider.received)
    assert [type(e) for e in events][:1] == [SpeechStarted]
    assert any(isinstance(e, SpeechEnded) for e in events)
    assert sim.report.stats.barge_ins == 0


async def test_barge_in_off_lets_the_bot_talk(autojump_clock, speech):
    samples, _ = speech

    async def agent(call):
        call.barge_in = False
        pb = await call.play(tone(500, 4.0, 16000))
        assert not (await pb.wait()).interrupted

    async with open_simulated_call(agent, "awaaz") as sim:
        await trio.sleep(0.5)
        sim.provider.say(samples, 8000)
    assert not any(isinstance(c, Clear) for _, c in sim.provider.received)
    assert sim.provider.heard_seconds() == pytest.approx(4.0)


async def test_knowlarity_inband_dtmf_reaches_the_agent(autojump_clock):
    keys = []

    async def agent(call):
        async for ev in call:
            if isinstance(ev, Dtmf):
                keys.append(ev.digit)
                if len(keys) == 4:
                    break

    async with open_simulated_call(agent, "knowlarity") as sim:
        await trio.sleep(0.3)
        for d in "19#*":
            await sim.provider.press(d)
    assert keys == list("19#*")


async def test_awaaz_dtmf_events_reach_the_agent(autojump_clock):
    keys = []

    async def agent(call):
        async for ev in call:
            if isinstance(ev, Dtmf):
                keys.append(ev.digit)
                if len(keys) == 3:
                    break

    async with open_simulated_call(agent, "awaaz") as sim:
        for d in "50#":
            await sim.provider.press(d)
    assert keys == list("50#")


async def test_slow_agent_drops_oldest_audio_and_the_reader_never_blocks(autojump_clock):
    got = []

    async def agent(call):
        await trio.sleep(5.0)  # not reading: the inbound queue fills
        async for ev in call:
            if hasattr(ev, "pcm"):
                got.append(ev)
                if len(got) >= 3:
                    break

    config = CallConfig(inbound_queue_ms=1000)
    async with open_simulated_call(agent, "awaaz", config) as sim:
        pass
    stats = sim.report.stats
    # 5 s of 20 ms frames arrived while the agent slept; 1 s worth was kept. The agent was
    # not reading the call at all, so the discarded frames are unread, not dropped
    assert stats.frames_unread >= 195 and stats.frames_dropped == 0
    assert stats.frames_in >= 250
