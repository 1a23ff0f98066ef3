"""Two undocumented provider behaviours, each a setting the simulator can play strictly:

* Awaaz's connector takes only whole 320-byte (20 ms) frames: the engine's ``whole_frames``
  (default on) pads a playback's tail; against a strict peer (``strict_frames``) the
  caller hears every sample with it, and loses the tail without it.
* Knowlarity's application may cut the playing clip for a new one: ``clips="utterance"``
  sends one clip per playback and the next only once it has played, so nothing is cut;
  the default stream mode loses audio to such an application.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.events import PlayAudio
from callengine.testing.harness import open_simulated_call

TONE_8K = tone(440, 1.013, 8000)  # 8104 samples: 50 whole frames and 104 samples


def _heard(sim) -> np.ndarray:
    return np.concatenate([np.frombuffer(s.pcm, dtype="<i2") for s in sim.provider.heard])


def _clips(sim) -> list[PlayAudio]:
    return [cmd for _, cmd in sim.provider.received if isinstance(cmd, PlayAudio)]


# --- Awaaz: whole 20 ms frames ---------------------------------------------------------


@pytest.mark.parametrize("strict_peer", [True, False])
@pytest.mark.parametrize("whole_frames", [True, False])
async def test_awaaz_whole_frames_against_a_peer_that_takes_only_whole_frames(autojump_clock, whole_frames, strict_peer):
    results = []

    async def agent(call):
        call.barge_in = False
        results.append(await (await call.play(TONE_8K, 8000)).wait())

    async with open_simulated_call(
        agent,
        "awaaz",
        CallConfig(agent_rate=8000),
        codec_options={"whole_frames": whole_frames},
        provider_codec_options={"strict_frames": strict_peer},
    ) as sim:
        pass
    heard, peer = _heard(sim), sim.provider.codec
    # the engine's account is the agent's audio either way
    assert [(r.interrupted, r.played_ms, r.duration_ms) for r in results] == [(False, pytest.approx(1013), pytest.approx(1013))]
    assert getattr(peer, "timestamp_mismatches") == 0
    dropped = [e for e in sim.provider.timeline if e.kind == "unknown" and e.detail.startswith("media dropped")]
    if whole_frames:
        # every sample, then 56 samples of padding silence (to 1.02 s)
        np.testing.assert_array_equal(heard, np.concatenate([TONE_8K, np.zeros(56, np.int16)]))
        assert {len(c.pcm) for c in _clips(sim)} == {320}
        assert getattr(peer, "media_dropped") == 0 and not dropped
    elif strict_peer:
        # the damage: the 13 ms tail was not a whole frame and the peer dropped it
        np.testing.assert_array_equal(heard, TONE_8K[:8000])
        assert getattr(peer, "media_dropped") == 1 and len(dropped) == 1
    else:
        np.testing.assert_array_equal(heard, TONE_8K)


async def test_awaaz_padding_moves_marks_and_the_next_playback_as_the_provider_plays_it(autojump_clock):
    """The ledger counts the padding the provider plays: a mark after a 1.013 s playback is
    reached at 1.02 s, when the caller's audio ends, and the next playback starts there."""
    reached = []

    async def agent(call):
        call.barge_in = False
        t0 = trio.current_time()
        await call.play(TONE_8K, 8000)
        mark = await call.mark("after")
        second = await call.play(TONE_8K[:4000], 8000)
        await mark.wait()
        reached.append(trio.current_time() - t0)
        await second.wait()

    async with open_simulated_call(
        agent, "awaaz", CallConfig(agent_rate=8000), codec_options={"mark_echo": False}, echo_marks=False,
        provider_codec_options={"strict_frames": True},
    ) as sim:
        pass
    first_end = sim.provider.heard[0].start + 1.02
    assert reached == [pytest.approx(1.02, abs=1e-6)]
    assert sim.provider.heard_seconds() == pytest.approx(1.02 + 0.5, abs=1e-9)
    assert sim.provider.gaps() == [] and sim.provider.heard[-1].end == pytest.approx(first_end + 0.5)


async def test_awaaz_cleared_during_the_padding_reports_the_agent_audio_only(autojump_clock):
    results = []

    async def agent(call):
        call.barge_in = False
        pb = await call.play(TONE_8K, 8000)
        await trio.sleep(1.016)  # inside the 7 ms of padding after the last of the audio
        await call.clear()
        results.append(await pb.wait())

    async with open_simulated_call(agent, "awaaz", CallConfig(agent_rate=8000)) as sim:
        pass
    assert [(r.interrupted, r.played_ms) for r in results] == [(True, pytest.approx(1013))]
    assert len(_heard(sim)) == 8128  # the caller heard up to the clear: the audio and 3 ms of silence


# --- Knowlarity: one clip per utterance ----------------------------------------------------

SHORT_PLAYBACKS = (1.2, 0.7, 2.5)


async def _three_playbacks(call):
    call.barge_in = False
    pbs = [await call.play(tone(300 + 200 * i, s, 16000), 16000) for i, s in enumerate(SHORT_PLAYBACKS)]
    for pb in pbs:
        assert not (await pb.wait()).interrupted


@pytest.mark.parametrize("clips", ["utterance", "stream"])
async def test_knowlarity_clip_mode_against_an_application_that_cuts_the_playing_clip(autojump_clock, clips):
    async with open_simulated_call(_three_playbacks, "knowlarity", codec_options={"clips": clips}, new_audio_cuts=True) as sim:
        pass
    cuts = [e for e in sim.provider.timeline if e.kind == "cut"]
    if clips == "utterance":
        assert sim.provider.heard_seconds() == pytest.approx(sum(SHORT_PLAYBACKS), abs=1e-6)
        assert not cuts and len(_clips(sim)) == len(SHORT_PLAYBACKS)
    else:
        # the damage: two clips go out at once at the start, and the second cuts the first
        assert cuts and sim.provider.heard_seconds() <= sum(SHORT_PLAYBACKS) - 0.2 + 1e-6


async def test_knowlarity_utterance_mode_with_an_application_that_queues(autojump_clock):
    async with open_simulated_call(_three_playbacks, "knowlarity", codec_options={"clips": "utterance"}) as sim:
        pass
    clips = _clips(sim)
    assert [c.duration for c in clips] == [pytest.approx(s) for s in SHORT_PLAYBACKS]  # one clip per playback
    assert sim.provider.heard_seconds() == pytest.approx(sum(SHORT_PLAYBACKS), abs=1e-6)
    # each clip was sent when the one before it had played, plus the 100 ms the engine
    # allows by default for the provider to start a clip: never two at the provider
    sent_at = [t for t, c in sim.provider.received if isinstance(c, PlayAudio)]
    assert np.diff(sent_at) == pytest.approx([s + 0.1 for s in SHORT_PLAYBACKS[:-1]], abs=1e-6)


@pytest.mark.parametrize("engine_delay_ms", [0, None, 60])
async def test_knowlarity_utterance_mode_against_an_application_slow_to_start_a_clip(autojump_clock, engine_delay_ms):
    """An application that cuts the playing clip for a new one and takes 60 ms to start
    each clip: an engine that assumes clips start on arrival (start_delay_ms=0) sends each
    next clip 60 ms before the one playing has ended, and the caller loses the end of every
    clip; the default (100 ms) or the true delay loses nothing, and the marks fall when
    the audio has really played."""
    marks: list[float] = []

    async def agent(call):
        call.barge_in = False
        for i, seconds in enumerate(SHORT_PLAYBACKS):
            await call.play(tone(300 + 200 * i, seconds, 16000), 16000)
        handle = await call.mark("end")
        await handle.wait()
        marks.append(trio.current_time())

    config = CallConfig(start_delay_ms=engine_delay_ms)
    async with open_simulated_call(
        agent, "knowlarity", config, codec_options={"clips": "utterance"}, new_audio_cuts=True, start_delay_ms=60
    ) as sim:
        pass
    cuts = [e for e in sim.provider.timeline if e.kind == "cut"]
    heard = sim.provider.heard_seconds()
    if engine_delay_ms == 0:
        assert len(cuts) == len(SHORT_PLAYBACKS) - 1
        assert heard == pytest.approx(sum(SHORT_PLAYBACKS) - 0.06 * len(cuts), abs=1e-3)
    else:
        assert not cuts and heard == pytest.approx(sum(SHORT_PLAYBACKS), abs=1e-6)
        last = sim.provider.heard[-1]
        # the mark is reached no sooner than the caller heard the last sample
        assert marks[0] >= sim.provider.t0 + last.end - 1e-6


async def test_knowlarity_utterance_mode_caps_a_long_playback_and_nothing_is_cut(autojump_clock):
    async def agent(call):
        call.barge_in = False
        await (await call.play(tone(440, 12.0, 16000), 16000)).wait()

    async with open_simulated_call(agent, "knowlarity", codec_options={"clips": "utterance"}, new_audio_cuts=True) as sim:
        pass
    assert [c.duration for c in _clips(sim)] == [pytest.approx(5.0), pytest.approx(5.0), pytest.approx(2.0)]
    assert sim.provider.heard_seconds() == pytest.approx(12.0, abs=1e-6)
    assert not [e for e in sim.provider.timeline if e.kind == "cut"]


async def test_knowlarity_utterance_mode_kill_audio_during_a_long_clip(autojump_clock):
    """A barge-in 1.5 s after a 4 s clip went out, which the provider started 100 ms after
    it arrived (as the engine assumes by default in utterance mode): killAudio stops it,
    played_ms is what played until then, the mark after it is cleared, and the next
    playback goes out at once."""
    results, marks = [], []

    async def agent(call):
        call.barge_in = False
        pb = await call.play(tone(440, 4.0, 16000), 16000)
        mark = await call.mark("after")
        await trio.sleep(1.5)
        await call.clear()
        results.append(await pb.wait())
        marks.append(await mark.wait())
        results.append(await (await call.play(tone(660, 0.5, 16000), 16000)).wait())

    async with open_simulated_call(
        agent, "knowlarity", codec_options={"clips": "utterance"}, new_audio_cuts=True, start_delay_ms=100
    ) as sim:
        pass
    assert [(r.interrupted, r.played_ms) for r in results] == [(True, pytest.approx(1400)), (False, pytest.approx(500))]
    assert [m.value for m in marks] == ["cleared"]
    assert len(sim.provider.clears) == 1
    assert sim.provider.heard_seconds() == pytest.approx(1.9, abs=1e-6)


async def test_knowlarity_utterance_mode_sends_a_streaming_playback_when_it_is_closed(autojump_clock):
    """The latency cost: a streaming playback (TTS writing ahead) goes out as one clip when
    the agent closes it, not as its first 200 ms arrive as in stream mode."""
    closed_at = []

    async def agent(call):
        call.barge_in = False
        t0 = trio.current_time()
        async with call.open_playback(sample_rate=16000) as pb:
            for _ in range(6):  # 3 s of audio, written in 0.6 s
                await pb.write(tone(440, 0.5, 16000))
                await trio.sleep(0.1)
        closed_at.append(trio.current_time() - t0)
        await pb.wait()

    async with open_simulated_call(agent, "knowlarity", codec_options={"clips": "utterance"}, new_audio_cuts=True) as sim:
        pass
    [clip] = _clips(sim)
    assert clip.duration == pytest.approx(3.0, abs=1e-3)
    assert sim.provider.heard[0].start == pytest.approx(closed_at[0], abs=1e-6)  # 0.6 s after the first write
    assert not [e for e in sim.provider.timeline if e.kind == "cut"]
