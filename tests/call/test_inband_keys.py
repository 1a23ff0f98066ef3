"""In-band key presses (Knowlarity) are keys, not speech: the VAD hears a key's tone as a
speech segment, and the analyzer must not report it as one, nor barge in on it; speech
right after the tone is the caller's speech again. In virtual time, through the simulated
provider."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.events import Backchannel, BargeIn, Clear, Dtmf, SpeechEnded, SpeechStarted
from callengine.testing.harness import open_simulated_call

WATCHED = (Dtmf, SpeechStarted, SpeechEnded, BargeIn)
#: a phone line is never digitally silent, and the energy VAD hears a key on a noisy line
LINE_NOISE_DBFS = -65.0


def _listening_agent(events: list, bot_s: float, listen_s: float = 8.0):
    """Plays ``bot_s`` of tone, notes what it hears for ``listen_s``, then hangs up."""

    async def agent(call):
        if bot_s:
            await call.play(tone(500, bot_s, 16000, dbfs=-15))
        with trio.move_on_after(listen_s):
            async for ev in call:
                if isinstance(ev, WATCHED):
                    events.append((trio.current_time(), ev))

    return agent


@pytest.mark.parametrize("press_s", [0.08, 0.4])
async def test_a_key_over_the_bot_is_a_key_not_speech_and_does_not_barge_in(autojump_clock, press_s):
    events: list = []
    config = CallConfig(min_speech_ms=200)
    async with open_simulated_call(_listening_agent(events, 4.0), "knowlarity", config, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(1.0)
        await sim.provider.press("5", duration=press_s)  # longer than min_speech_ms: 0.4 s
        await trio.sleep(2.0)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["Dtmf"], kinds
    assert events[0][1].digit == "5"
    assert not any(isinstance(c, Clear) for _, c in sim.provider.received)
    assert sim.report.stats.barge_ins == 0
    assert sim.session.counters.speech_segments == 0
    assert sim.session.counters.dtmf == 1


async def test_speech_right_after_a_key_is_speech_and_barges_in(autojump_clock, speech):
    samples, onset_in_file = speech
    events: list = []
    config = CallConfig(min_speech_ms=200)
    async with open_simulated_call(_listening_agent(events, 6.0), "knowlarity", config, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(1.0)
        key_at = sim.provider.say(b"")  # where the tone starts
        await sim.provider.press("7", duration=0.1)  # the tone, then 60 ms of silence
        speech_at = sim.provider.say(samples, 8000)  # within the VAD's hang-over
        await trio.sleep(len(samples) / 8000 + 1.0)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds[:3] == ["Dtmf", "SpeechStarted", "BargeIn"], kinds
    started = events[1][1]
    # dated to the end of the key's tone, not to its start
    assert key_at + 0.1 - 0.03 <= started.at <= speech_at + onset_in_file + 0.03
    assert sum(isinstance(c, Clear) for _, c in sim.provider.received) == 1
    assert sim.report.stats.barge_ins == 1
    ended = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert ended  # (the recording has pauses: maybe more than one segment)
    # the first segment's duration counts the speech, not the tone before it
    assert ended[0].at - ended[0].duration == pytest.approx(started.at)


async def test_keys_while_the_bot_is_silent_give_no_speech_events(autojump_clock):
    events: list = []
    async with open_simulated_call(_listening_agent(events, 0.0), "knowlarity", noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(0.5)
        for d in "1#9":
            await sim.provider.press(d, duration=0.15)
        await trio.sleep(1.0)
    assert [type(e).__name__ for _, e in events] == ["Dtmf"] * 3
    assert [e.digit for _, e in events] == list("1#9")


async def test_speech_then_a_key_inside_it_stays_one_speech_segment(autojump_clock, speech):
    """A key pressed while the caller is already talking does not cut the speech segment
    into a tone: the segment began before the key."""
    samples, _ = speech
    events: list = []
    async with open_simulated_call(_listening_agent(events, 0.0), "knowlarity", noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(0.5)
        sim.provider.say(samples[: 8000], 8000)  # a second of speech
        await sim.provider.press("3", duration=0.1)
        await trio.sleep(2.0)
    kinds = [type(e).__name__ for _, e in events]
    assert kinds.count("SpeechStarted") == 1 and kinds.count("SpeechEnded") == 1, kinds
    assert "Dtmf" in kinds


async def test_a_key_during_a_pause_is_not_more_speech(autojump_clock, speech):
    """Pause mode: a short "haan" pauses the bot; a key pressed while the pause waits for
    quiet is not more speech (counted as speech it would make the episode long enough to be
    an interruption): the pause resolves as a backchannel, the bot resumes, the agent gets
    the key."""
    samples, onset_in_file = speech
    events: list = []
    config = CallConfig(min_speech_ms=200, barge_in_mode="pause", backchannel_max_ms=700, backchannel_resume_ms=600)

    async def agent(call):
        await call.play(tone(500, 8.0, 16000, dbfs=-15))
        with trio.move_on_after(8.0):
            async for ev in call:
                if isinstance(ev, (*WATCHED, Backchannel)):
                    events.append(ev)
                    if isinstance(ev, Backchannel):
                        resumed_at.append(trio.current_time())

    resumed_at: list[float] = []
    onset = int(onset_in_file * 8000)
    haan = samples[onset : onset + int(0.3 * 8000)]
    async with open_simulated_call(agent, "knowlarity", config, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(1.0)
        sim.provider.say(haan, 8000)
        sim.provider.say(np.zeros(int(0.35 * 8000), np.int16), 8000)  # past the VAD's hang-over
        await sim.provider.press("2", duration=0.2)
        await trio.sleep(3.0)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SpeechStarted") == 1 and "Dtmf" in kinds and "Backchannel" in kinds, kinds
    assert "BargeIn" not in kinds, kinds
    assert sim.report.stats.barge_ins == 0
    # on time: the key's tone did not hold the resume back until its own segment ended
    haan_end = 1.0 + 0.3
    assert resumed_at[0] <= haan_end + 0.6 + 0.1, resumed_at
