"""Pacing, marks, clear and played_ms, on virtual time against the simulated provider."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.events import Clear, MarkCleared, MarkReached, PlayAudio
from callengine.protocols.registry import CODECS
from callengine.testing.harness import open_simulated_call

from .conftest import padded_s

PROVIDERS = list(CODECS)


def _lead_s(sim) -> float:
    return sim.session.lead_s


def _chunk_s(sim) -> float:
    return sim.session.chunk_s


def _queued_at_provider(sim) -> list[float]:
    """After each audio message the provider received: seconds queued ahead of its clock."""
    out, play_end = [], -1.0
    for t, cmd in sim.provider.received:
        if isinstance(cmd, PlayAudio):
            play_end = max(t, play_end) + cmd.duration
            out.append(play_end - t)
        elif isinstance(cmd, Clear):
            play_end = t
    return out


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_lead_never_exceeds_bound_and_no_underrun(autojump_clock, provider):
    played_at = []

    async def agent(call):
        played_at.append(trio.current_time())
        pb = await call.play(tone(440, 3.0, 16000), sample_rate=16000)
        result = await pb.wait()
        assert not result.interrupted and result.played_ms == pytest.approx(3000)
        await call.hangup()

    async with open_simulated_call(agent, provider) as sim:
        pass
    queued = _queued_at_provider(sim)
    assert queued and max(queued) <= _lead_s(sim) + 1e-9
    assert sim.session.ledger.max_queued <= _lead_s(sim) + 1e-9
    assert sim.provider.gaps() == []  # the agent supplied audio ahead: no gap at the provider
    assert sim.report.stats.underruns == 0
    assert sim.provider.heard_seconds() == pytest.approx(3.0)
    # audio starts within one chunk of play
    first_audio = next(t for t, c in sim.provider.received if isinstance(c, PlayAudio))
    assert first_audio + sim.provider.t0 - played_at[0] <= _chunk_s(sim) + 1e-9
    assert sim.report.end_cause == "hangup"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_back_to_back_playbacks_have_no_gap(autojump_clock, provider):
    results = []

    async def agent(call):
        pbs = [await call.play(tone(300 + 100 * i, 0.37, 16000)) for i in range(5)]
        results.extend([await pb.wait() for pb in pbs])

    async with open_simulated_call(agent, provider) as sim:
        pass
    assert sim.provider.gaps() == []
    assert [(r.interrupted, r.played_ms) for r in results] == [(False, pytest.approx(370, abs=1e-6))] * 5
    # whole 20 ms frames (Awaaz, Twilio...): each playback's tail is padded with silence to
    # 380 ms, which the caller hears as part of the same contiguous stream
    per_playback = padded_s(0.37, sim)
    assert sim.provider.heard_seconds() == pytest.approx(5 * per_playback, abs=1e-3)
    assert sim.report.end_cause == "agent_returned"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_marks_reached_at_the_right_virtual_time(autojump_clock, provider):
    events = []

    async def agent(call):
        t0 = trio.current_time()
        await call.play(tone(500, 1.0, 16000))
        m1 = await call.mark("one")
        await call.play(tone(600, 0.5, 16000))
        await call.mark("two")
        async for ev in call:
            if isinstance(ev, MarkReached):
                events.append((ev.name, trio.current_time() - t0))
                if ev.name == "two":
                    break
        assert await m1.wait() is m1.state
        await call.hangup()

    async with open_simulated_call(agent, provider) as sim:
        pass
    assert [e[0] for e in events] == ["one", "two"]
    assert events[0][1] == pytest.approx(1.0, abs=1e-6)
    assert events[1][1] == pytest.approx(1.5, abs=1e-6)
    if sim.session.caps.mark_echo:
        # reached by the provider's echo, not by the fallback deadline
        assert [n for _, n in sim.provider.marks_echoed] == ["one", "two"]
        assert sim.report.stats.mark_echoes == 2 and sim.report.stats.mark_fallbacks == 0
    else:
        assert sim.provider.marks_received == []  # Knowlarity has no marks on the wire
        assert sim.report.stats.mark_echoes == 0


async def test_awaaz_mark_without_echo_reached_by_deadline(autojump_clock):
    got = []

    async def agent(call):
        t0 = trio.current_time()
        await call.play(tone(500, 0.4, 16000))
        await call.mark("m")
        async for ev in call:
            if isinstance(ev, MarkReached):
                got.append(trio.current_time() - t0)
                break

    config = CallConfig(mark_grace_s=0.5)
    async with open_simulated_call(agent, "awaaz", config, echo_marks=False) as sim:
        pass
    assert got == [pytest.approx(0.9, abs=1e-6)]
    assert sim.report.stats.mark_fallbacks == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_clear_settles_marks_and_reports_played_ms(autojump_clock, provider):
    seen = []
    results = {}

    async def agent(call):
        a = await call.play(tone(500, 1.0, 16000))
        await call.mark("a")
        b = await call.play(tone(700, 1.0, 16000))
        await call.mark("b")
        await trio.sleep(0.5)
        interrupted = await call.clear()
        results["interrupted"] = interrupted
        results["a"], results["b"] = await a.wait(), await b.wait()
        with trio.move_on_after(3):
            async for ev in call:
                if isinstance(ev, (MarkCleared, MarkReached)):
                    seen.append(ev)
        await call.hangup()

    async with open_simulated_call(agent, provider) as sim:
        pass
    assert seen == [MarkCleared("a"), MarkCleared("b")]
    assert results["a"].interrupted and results["b"].interrupted
    assert results["a"].played_ms == pytest.approx(500, abs=1e-6)  # exact in virtual time
    assert results["b"].played_ms == 0
    assert len(results["interrupted"]) == 2
    # the provider got its clear (clear / killAudio) at 0.5 s and stopped playback there
    assert sim.provider.clears == [pytest.approx(0.5, abs=1e-6)]
    assert sim.provider.heard_seconds() == pytest.approx(0.5, abs=1e-6)
    # nothing more was sent after the clear except the hang-up
    after = [c for t, c in sim.provider.received if t > 0.5 + 1e-9]
    assert not any(isinstance(c, PlayAudio) for c in after)
    # a provider that acknowledges a clear (Plivo, Vonage) did, and the engine took it as
    # known: nothing unknown on any provider
    acks = [e for e in sim.provider.timeline if e.kind == "clear-ack"]
    assert len(acks) == (1 if sim.session.caps.clear_ack else 0)
    assert sim.report.stats.unknown_messages == 0


async def test_played_ms_exact_to_the_chunk_when_cleared_mid_chunk(autojump_clock):
    out = {}

    async def agent(call):
        pb = await call.play(tone(500, 2.0, 16000))
        await trio.sleep(0.731)
        await call.clear()
        out["r"] = await pb.wait()

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    # the ledger times each chunk; what the provider played is what the ledger says
    assert out["r"].played_ms == pytest.approx(731, abs=1e-6)
    assert abs(out["r"].played_ms / 1000 - sim.provider.heard_seconds()) <= sim.session.chunk_s


async def test_streaming_playback_plays_pieces_in_order(autojump_clock):
    out = {}

    async def agent(call):
        async with call.open_playback(sample_rate=24000) as pb:
            for i in range(10):
                await pb.write(tone(400, 0.1, 24000))
                await trio.sleep(0.05)  # produced faster than real time
        out["r"] = await pb.wait()

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert not out["r"].interrupted
    assert out["r"].played_ms == pytest.approx(1000, abs=1)
    assert sim.provider.heard_seconds() == pytest.approx(1.0, abs=2e-3)
    assert sim.report.stats.underruns == 0


async def test_resampling_round_trip_keeps_frequency_and_level(autojump_clock):
    """A 1 kHz tone from the provider at 8 kHz reaches the agent at 16 kHz, is played back
    and arrives at the provider at 8 kHz with its frequency and level intact."""
    got = []

    async def agent(call):
        assert call.info.sample_rate == 16000
        # one streaming playback keeps the outbound resampler's state across frames
        async with call.open_playback(sample_rate=16000) as playback:
            async for ev in call:
                if hasattr(ev, "pcm"):
                    assert ev.sample_rate == 16000
                    got.append(ev.pcm)
                    await playback.write(ev.pcm)
                    if sum(map(len, got)) >= 2 * 16000 * 1.5:
                        break
        await call.hangup()

    async with open_simulated_call(agent, "awaaz") as sim:
        sim.provider.say(tone(1000, 1.5, 8000, dbfs=-12.0))
    heard = sim.provider.heard_audio(8000)
    nz = np.flatnonzero(heard)
    x = heard[nz[0] : nz[-1]].astype(float)[800:-800]  # the echoed tone, away from its edges
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freq = np.argmax(spectrum) * 8000 / len(x)
    assert freq == pytest.approx(1000, abs=8000 / len(x) * 1.5)
    level = 20 * np.log10(np.sqrt(np.mean((x / 32768) ** 2)))
    assert level == pytest.approx(-12.0, abs=0.5)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_regression_streaming_pause_does_not_hold_back_a_partial_chunk(autojump_clock, provider):
    """A streaming playback that pauses with less than a chunk buffered used to keep that
    tail until more audio came (on Knowlarity up to a 200 ms clip, for as long as TTS paused)."""

    async def agent(call):
        async with call.open_playback(sample_rate=16000) as pb:
            await pb.write(tone(440, 0.31, 16000))  # not a whole number of chunks
            await trio.sleep(3.0)  # TTS pauses
            await pb.write(tone(440, 0.2, 16000))

    async with open_simulated_call(agent, provider) as sim:
        pass
    first_part = [seg for seg in sim.provider.heard if seg.start < 2.0]
    # all 310 ms were heard before the pause ended, without waiting for the next write
    # (less the streaming resampler's 3.4 ms filter delay where it resamples 16k -> 8k)
    caps = sim.session.caps
    sent = [cmd for _, cmd in sim.provider.received if isinstance(cmd, PlayAudio)]
    if provider == "awaaz":
        # whole 20 ms frames: the flushed tail (306.6 ms) and the last one are padded with
        # silence to 320 and 220 ms
        assert sum(seg.duration for seg in first_part) == pytest.approx(0.32, abs=1e-9)
        assert sim.provider.heard_seconds() == pytest.approx(0.54, abs=1e-9)
        assert {len(cmd.pcm) % 320 for cmd in sent} == {0}
    elif caps.frame_ms or caps.min_chunk_bytes:
        # the flushed tail is padded with silence to the provider's frames and smallest
        # message (Exotel: 3.2 KB), never held back
        pad_s = max(caps.frame_ms / 1000, caps.min_chunk_bytes / (2 * caps.outbound_rate))
        assert 0.31 - 4e-3 <= sum(seg.duration for seg in first_part) <= 0.31 + pad_s + 1e-9
        frame = 2 * caps.outbound_rate * caps.frame_ms // 1000
        assert all(len(cmd.pcm) >= caps.min_chunk_bytes for cmd in sent)
        assert not frame or {len(cmd.pcm) % frame for cmd in sent} == {0}
    else:
        assert sum(seg.duration for seg in first_part) == pytest.approx(0.31, abs=4e-3)
        assert sim.provider.heard_seconds() == pytest.approx(0.51, abs=2e-3)


async def test_a_tail_below_the_smallest_message_rides_on_the_chunk_before_it(autojump_clock):
    """Exotel plays nothing under 3.2 KB cleanly: a 0.5 s playback in 200 ms chunks goes out
    as 200 + 300 ms, not 200 + 200 + 100 ms padded to 200 (100 ms of silence the caller
    would hear, and a mark after it reached 100 ms late)."""

    async def agent(call):
        await call.play(tone(500, 0.5, 8000), sample_rate=8000)
        await call.mark("end")
        async for ev in call:
            if isinstance(ev, MarkReached):
                break

    async with open_simulated_call(agent, "exotel") as sim:
        pass
    sent = [len(cmd.pcm) for _, cmd in sim.provider.received if isinstance(cmd, PlayAudio)]
    assert sent == [3200, 4800]
    assert sim.provider.marks_echoed == [(pytest.approx(0.5, abs=1e-6), "end")]
