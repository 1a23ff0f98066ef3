"""The simulator plays the providers' undocumented alternatives strictly, so a wrong engine
setting is visible: for each, the engine with the matching setting gets everything to the
caller, and with the wrong one the test sees the damage."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.testing.harness import open_simulated_call

TONE_8K = tone(440, 1.0, 8000)


async def _play_tone_8k(call):
    call.barge_in = False
    pb = await call.play(TONE_8K, 8000)
    await pb.wait()


@pytest.mark.parametrize("engine_wraps, heard_exact", [(False, True), (True, False)])
async def test_awaaz_account_that_plays_raw_pcm(autojump_clock, engine_wraps, heard_exact):
    """Awaaz's own Pipecat bot sends raw PCM: an account like that plays a WAV header as 44
    bytes of noise every 20 ms. ``wav_wrap=False`` matches it; the default does the damage."""
    async with open_simulated_call(
        _play_tone_8k,
        "awaaz",
        CallConfig(agent_rate=8000),
        codec_options={"wav_wrap": engine_wraps},
        provider_codec_options={"wav_wrap": False},
    ) as sim:
        pass
    heard = np.concatenate([np.frombuffer(s.pcm, dtype="<i2") for s in sim.provider.heard])
    if heard_exact:
        np.testing.assert_array_equal(heard, TONE_8K)
    else:
        assert len(heard) == len(TONE_8K) + 22 * 50  # 22 samples of header per 20 ms message
        assert not np.array_equal(heard[: len(TONE_8K)], TONE_8K)


@pytest.mark.parametrize("one_clip_at_a_time", [True, False])
async def test_knowlarity_application_that_cuts_the_playing_clip(autojump_clock, one_clip_at_a_time):
    """If Knowlarity's application cuts the playing clip for each new ``playAudio``, the
    default (200 ms clips, 400 ms lead: the next clip goes out while one plays) loses audio;
    a lead of one clip (``--lead-ms`` equal to ``--chunk-ms``) sends a clip only once the
    previous one has played, and the caller hears everything."""

    async def agent(call):
        call.barge_in = False
        pb = await call.play(tone(440, 2.0, 16000), 16000)
        await pb.wait()

    config = CallConfig(lead_ms=200, chunk_ms=200) if one_clip_at_a_time else CallConfig()
    async with open_simulated_call(agent, "knowlarity", config, new_audio_cuts=True) as sim:
        pass
    if one_clip_at_a_time:
        assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=1e-6)
        assert not [e for e in sim.provider.timeline if e.kind == "cut"]
    else:
        assert sim.provider.heard_seconds() < 1.9  # cut clips: the caller lost audio
        assert [e for e in sim.provider.timeline if e.kind == "cut"]


@pytest.mark.parametrize("engine_expects_echo", [False, True])
async def test_awaaz_account_that_never_echoes_marks(autojump_clock, engine_expects_echo):
    """With ``mark_echo=False`` a mark is reached when its audio has played; expecting an
    echo that never comes makes every mark late by ``mark_grace_s``."""
    reached = []

    async def agent(call):
        t0 = trio.current_time()
        await call.play(tone(440, 0.4, 16000))
        handle = await call.mark("m")
        await handle.wait()
        reached.append(trio.current_time() - t0)

    async with open_simulated_call(
        agent, "awaaz", CallConfig(mark_grace_s=1.0), codec_options={"mark_echo": engine_expects_echo}, echo_marks=False
    ) as sim:
        pass
    assert reached == [pytest.approx(1.4 if engine_expects_echo else 0.4, abs=1e-6)]
    assert sim.report.stats.mark_fallbacks == (1 if engine_expects_echo else 0)


async def test_knowlarity_graceful_shutdown_is_an_empty_frame_and_the_engine_closes(autojump_clock):
    """mod_audio_fork sends one empty frame and waits: the engine must close, at once."""

    async def agent(call):
        await trio.sleep_forever()

    async with open_simulated_call(agent, "knowlarity") as sim:
        await trio.sleep(1.0)
        t = trio.current_time()
        await sim.provider.stop()
        assert trio.current_time() - t < 0.1  # the engine closed; the simulator did not wait it out
    assert (sim.report.end_cause, sim.report.close_code) == ("provider_stop", 1000)
    assert sim.provider.closed_code == 1000


@pytest.mark.parametrize("engine_shape", ["object", "string"])
@pytest.mark.parametrize("peer_shape", ["object", "string"])
async def test_awaaz_mark_shape_matching_and_wrong(autojump_clock, engine_shape, peer_shape):
    """A peer that parses one mark shape ignores the other. With the matching
    ``mark_shape`` the mark is reached on its echo, on time; with the wrong one no echo
    comes and the mark is reached only by the fallback, ``mark_grace_s`` late."""
    reached = []

    async def agent(call):
        t0 = trio.current_time()
        await call.play(tone(440, 0.4, 16000))
        await (await call.mark("m")).wait()
        reached.append(trio.current_time() - t0)

    async with open_simulated_call(
        agent, "awaaz", codec_options={"mark_shape": engine_shape}, provider_codec_options={"mark_shape": peer_shape}
    ) as sim:
        pass
    stats = sim.report.stats
    if engine_shape == peer_shape:
        assert reached == [pytest.approx(0.4, abs=1e-6)]
        assert (stats.mark_echoes, stats.mark_fallbacks) == (1, 0)
    else:
        assert reached == [pytest.approx(0.4 + CallConfig().mark_grace_s, abs=1e-6)]
        assert (stats.mark_echoes, stats.mark_fallbacks) == (0, 1)
        assert any(e.kind == "unknown" and e.detail == "mark" for e in sim.provider.timeline)


@pytest.mark.parametrize("engine_kills", [False, True])
async def test_knowlarity_that_ignores_kill_audio(autojump_clock, engine_kills):
    """If Knowlarity ignores ``killAudio``, the caller hears every clip already sent. With
    ``kill_audio=False`` the engine reports exactly that; assuming the kill worked, it tells
    the agent less than the caller heard."""
    results = []

    async def agent(call):
        pb = await call.play(tone(440, 2.0, 16000))
        await trio.sleep(1.0)
        await call.clear()
        results.append(await pb.wait())

    async with open_simulated_call(agent, "knowlarity", codec_options={"kill_audio": engine_kills}, honour_clear=False) as sim:
        pass
    heard_ms = sim.provider.heard_seconds() * 1000
    if engine_kills:
        assert results[0].played_ms < heard_ms - 100  # the agent was told too little
    else:
        assert results[0].played_ms == pytest.approx(heard_ms, abs=1e-3)
