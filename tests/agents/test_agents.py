"""The bundled agents, run against the simulated providers in virtual time."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import trio

from callengine.agents import BUNDLED, load
from callengine.agents import echo, ivr, parrot, prompt
from callengine.audio.generate import tone
from callengine.audio.pcm import dbfs
from callengine.audio.wav import read_wav
from callengine.call.config import CallConfig
from callengine.events import CallerAudio, Clear, Hangup, SpeechEnded, SpeechStarted
from callengine.protocols.registry import CODECS
from callengine.testing.harness import open_simulated_call

from ..call.conftest import padded_s

DATA = Path(__file__).resolve().parent.parent / "data"
PROVIDERS = list(CODECS)
HANGOVER_S = 0.3  # SpeechSegmenter's default: SpeechEnded comes this long after the speech


def loud_windows(x: np.ndarray, rate: int = 8000) -> list[float]:
    """Start times of the 10 ms windows above -40 dBFS: speech, the way tests/call/conftest.py
    finds the onset of a clean recording."""
    win = rate // 100
    return [i / rate for i in range(0, len(x) - win + 1, win) if dbfs(x[i : i + win]) > -40]


def recording(name: str, until: float | None = None) -> tuple[np.ndarray, float, float]:
    """A test recording at 8 kHz (cut at ``until`` seconds), its speech onset and end."""
    x = np.frombuffer(read_wav(DATA / name).pcm, dtype="<i2")
    if until is not None:
        x = x[: int(until * 8000)]
    loud = loud_windows(x)
    return x, loud[0], loud[-1] + 0.01


def similarity(a: np.ndarray, b: np.ndarray, max_lag: int = 400) -> float:
    """Best normalised cross-correlation of two signals over lags up to ``max_lag`` samples."""
    n = min(len(a), len(b)) - max_lag
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    best = 0.0
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, lag) : max(0, lag) + n]
        y = b[max(0, -lag) : max(0, -lag) + n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
    return best


async def say_after_a_frame(provider, audio: np.ndarray, rate: int) -> float:
    """``provider.say(audio)`` just after a microphone frame has gone out; returns the call
    time at which the audio starts in the caller's stream.

    ``say()`` puts the audio at the start of the frame in progress, which has begun up to
    one frame before the time it returns; right after a frame has been sent, the two agree
    within the 1 ms poll.
    """
    sent = provider.frames_sent
    while provider.frames_sent == sent:
        await trio.sleep(0.001)
    start = provider.frames_sent * provider.frame_s
    said = provider.say(audio, rate)
    assert start <= said <= start + 0.001 + 1e-9
    return start


def heard_at(sim, start: float, seconds: float, rate: int = 8000) -> np.ndarray:
    """What the caller heard from call time ``start`` for ``seconds``, at ``rate``."""
    x = sim.provider.heard_audio(rate)
    return x[int(start * rate) : int((start + seconds) * rate)]


class EventSpy:
    """Wraps the ``Call`` given to an agent and records the non-audio events it reads."""

    def __init__(self, agent):
        self.agent = agent
        self.events: list[tuple[float, object]] = []  # (trio time, event)

    async def __call__(self, call):
        spy = self

        class SpiedCall:
            def __getattr__(self, name):
                return getattr(call, name)

            @property
            def barge_in(self):
                return call.barge_in

            @barge_in.setter
            def barge_in(self, value):
                call.barge_in = value

            def __aiter__(self):
                return self

            async def __anext__(self):
                event = await call.__anext__()
                if not isinstance(event, CallerAudio):
                    spy.events.append((trio.current_time(), event))
                return event

        await self.agent(SpiedCall())

    def times(self, sim, kind) -> list[tuple[float, object]]:
        """(call time, event) of the events of type ``kind``."""
        return [(t - sim.provider.t0, e) for t, e in self.events if isinstance(e, kind)]


# --- the registry and the package data ------------------------------------------------------


def test_bundled_names_load_to_agents():
    assert set(BUNDLED) == {"echo", "parrot", "prompt", "ivr", "realtime-openai", "realtime-gemini", "cascade-sarvam"}
    assert load("echo") is echo.agent and load("parrot") is parrot.agent
    assert load("prompt") is prompt.agent and load("ivr") is ivr.agent
    assert load("callengine.agents.ivr:menu_prompt") is ivr.menu_prompt
    with pytest.raises(ValueError):
        load("no-such-agent")


def test_the_bridges_load_as_agents_configured_from_the_environment(monkeypatch):
    from callengine.bridges import GeminiLiveAgent, OpenAIRealtimeAgent
    from callengine.cli import load_agent

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")
    assert isinstance(load("realtime-openai"), OpenAIRealtimeAgent)
    assert isinstance(load_agent("realtime-gemini"), GeminiLiveAgent)
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        load("realtime-openai")


def test_the_spoken_prompt_is_the_bundled_recording_with_its_licence():
    audio, rate = prompt.spoken_prompt()
    assert rate == 8000
    assert audio.tobytes() == read_wav(DATA / "vm-tmpexists.wav").pcm
    readme = resources.files("callengine.agents").joinpath("data", "README.md").read_text()
    for needle in ("asterisk-core-sounds-en-wav", "1.6.1-1", "Allison Smith", "CC BY-SA 3.0", "creativecommons.org/licenses/by-sa/3.0"):
        assert needle in readme
    tones, tone_rate = prompt.tonal_prompt(16000)
    assert tone_rate == 16000 and len(tones) == 4 * 16000


def test_the_prompt_falls_back_to_tones_without_the_recording(monkeypatch, caplog):
    def missing():
        raise FileNotFoundError("prompt.wav")

    monkeypatch.setattr(prompt, "spoken_prompt", missing)
    prompt.load_prompt.cache_clear()
    try:
        audio, rate = prompt.load_prompt()
    finally:
        prompt.load_prompt.cache_clear()
    assert rate == 16000 and len(audio) == 4 * 16000
    assert "using tones" in caplog.text


# --- echo -------------------------------------------------------------------------------------

ECHO_CASES = [
    # (provider, agent rate): at the wire rate nothing is resampled; else both ways
    ("awaaz", 8000),
    ("knowlarity", 16000),
    ("awaaz", 16000),
    ("knowlarity", 8000),
]


@pytest.mark.parametrize("provider, agent_rate", ECHO_CASES)
async def test_echo_returns_the_callers_audio(autojump_clock, provider, agent_rate):
    async with open_simulated_call(echo.agent, provider, CallConfig(agent_rate=agent_rate)) as sim:
        await trio.sleep(0.5)
        rate = sim.provider.rate
        said_at = await say_after_a_frame(sim.provider, tone(1000, 1.0, rate, dbfs=-12), rate)
        await trio.sleep(2.0)
        await sim.provider.stop()
    wire_rate = sim.call.info.wire_rate
    at_wire_rate = agent_rate == wire_rate
    out_rate = sim.provider.heard[0].sample_rate
    heard = sim.provider.heard_audio(out_rate).astype(np.float64)
    loud = np.nonzero(np.abs(heard) > 0.5 * np.abs(heard).max())[0] / out_rate
    delay = loud[0] - said_at
    # the same tone, at the same level and for as long
    spectrum = np.abs(np.fft.rfft(heard))
    assert np.fft.rfftfreq(len(heard), 1 / out_rate)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)
    echoed = heard[int((said_at + delay) * out_rate) : int((said_at + delay + 1.0) * out_rate)]
    assert dbfs(echoed[100:-100].astype(np.int16)) == pytest.approx(-12, abs=0.5)
    gaps = sim.provider.gaps()
    if at_wire_rate:
        assert loud[-1] - loud[0] == pytest.approx(1.0, abs=0.001)
        assert gaps == []  # one continuous playback: no seam, no click
    else:
        # bursty resampler output can starve the playout for a frame now and then
        assert loud[-1] - loud[0] == pytest.approx(1.0 + sum(g for t, g in gaps if loud[0] < t < loud[-1]), abs=0.001)
    # round trip: a 20 ms frame to arrive whole, then filling one outbound chunk (20 ms
    # Awaaz, 200 ms Knowlarity), plus the soxr HQ streaming lag of the two resamplers
    # (up to ~115 ms each for 8 <-> 16 kHz) when the agent is not at the wire rate.
    # Measured: Awaaz 20 ms / 240 ms resampled, Knowlarity 180 ms / 340 ms resampled.
    chunk = sim.session.chunk_s
    bound = 0.020 + (chunk if chunk > 0.02 else 0.0) + (0.0 if at_wire_rate else 0.230) + 0.002
    assert 0.020 <= delay <= bound, delay
    if provider == "awaaz" and at_wire_rate:
        assert delay == pytest.approx(0.020, abs=0.0002)  # exactly one frame
    assert not any(isinstance(c, Clear) for _, c in sim.provider.received)  # barge-in off


# --- parrot -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parrot_repeats_the_utterance_after_the_caller_stops(autojump_clock, provider):
    speech, onset, end = recording("vm-tmpexists.wav", until=2.0)  # the first sentence
    spy = EventSpy(parrot.agent)
    async with open_simulated_call(spy, provider) as sim:
        await trio.sleep(0.5)
        said_at = await say_after_a_frame(sim.provider, speech, 8000)
        await trio.sleep(6.0)
        await sim.provider.stop()
    [(_, started)] = spy.times(sim, SpeechStarted)
    [(ended_t, ended)] = spy.times(sim, SpeechEnded)
    [segment] = sim.provider.heard
    speech_end = said_at + end
    # it answers once the caller has stopped: when SpeechEnded arrives, a hang-over later
    assert segment.start == pytest.approx(ended_t, abs=0.001)
    assert speech_end < segment.start <= speech_end + HANGOVER_S + 0.1
    # pre-roll before the onset, a short tail after the end: about the utterance's length
    expected = ended.at - started.at + parrot.PRE_ROLL_S + parrot.TAIL_S
    assert segment.duration == pytest.approx(expected, abs=0.001)
    assert segment.duration == pytest.approx(end - onset + 0.4, abs=0.2)
    # the repeat begins PRE_ROLL_S before the onset the VAD dated (here 10 ms before the
    # first 10 ms window above -40 dBFS)
    repeat_onset = loud_windows(heard_at(sim, segment.start, 1.0))[0]
    assert repeat_onset == pytest.approx(said_at + onset - (started.at - parrot.PRE_ROLL_S), abs=0.011)
    assert repeat_onset >= parrot.PRE_ROLL_S - 0.05
    # and it is the caller's own audio
    repeated = heard_at(sim, segment.start, segment.duration)
    mic = np.concatenate([np.zeros(int(said_at * 8000), np.int16), speech])  # stream time 0 on
    original = mic[int((started.at - parrot.PRE_ROLL_S) * 8000) :][: len(repeated)]
    assert similarity(repeated, original) > 0.95
    assert not sim.provider.clears


async def test_parrot_repeats_at_most_max_utterance_s(autojump_clock, monkeypatch):
    monkeypatch.setattr(parrot, "MAX_UTTERANCE_S", 1.0)
    speech, onset, end = recording("vm-tmpexists.wav", until=2.0)
    async with open_simulated_call(parrot.agent, "awaaz") as sim:
        await trio.sleep(0.5)
        await say_after_a_frame(sim.provider, speech, 8000)
        await trio.sleep(4.0)
        await sim.provider.stop()
    [segment] = sim.provider.heard
    assert segment.duration == pytest.approx(1.0, abs=0.001)


async def test_parrot_stops_when_the_caller_talks_over_it_and_repeats_the_new_utterance(autojump_clock):
    # the whole recording: two sentences with a 0.17 s pause. The VAD ends the first one,
    # the parrot starts repeating it, the second sentence barges in and is repeated after.
    speech, onset, end = recording("vm-tmpexists.wav")
    spy = EventSpy(parrot.agent)
    async with open_simulated_call(spy, "awaaz") as sim:
        await trio.sleep(0.5)
        said_at = await say_after_a_frame(sim.provider, speech, 8000)
        await trio.sleep(9.0)
        await sim.provider.stop()
    assert len(sim.provider.clears) == 1 and sim.report.stats.barge_ins == 1
    first, last = sim.provider.heard
    assert first.end == pytest.approx(sim.provider.clears[0])  # cut by the barge-in
    assert first.duration < 0.5
    assert len(spy.times(sim, SpeechEnded)) == 2
    (_, started), (ended_t, ended) = spy.times(sim, SpeechStarted)[-1], spy.times(sim, SpeechEnded)[-1]
    assert last.start == pytest.approx(ended_t, abs=0.001)
    # the energy VAD hears the recording's quiet tail for 0.2 s longer than -40 dBFS does
    assert said_at + end < last.start <= said_at + end + HANGOVER_S + 0.25
    assert last.duration == pytest.approx(ended.at - started.at + parrot.PRE_ROLL_S + parrot.TAIL_S, abs=0.001)
    assert not sim.provider.gaps(min_gap=1.0)[1:]  # nothing else was played


# --- prompt -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_prompt_loops_stops_for_the_caller_and_starts_again(autojump_clock, provider):
    audio, rate = prompt.spoken_prompt()
    caller, onset, end = recording("privacy-prompt.wav", until=1.63)  # up to its pause
    async with open_simulated_call(prompt.agent, provider) as sim:
        await trio.sleep(8.0)
        said_at = await say_after_a_frame(sim.provider, caller, 8000)
        await trio.sleep(3.0)
        await sim.provider.stop()
    # whole 20 ms frames (Awaaz, Twilio...): the prompt's tail is padded with silence
    # (4.854 s -> 4.86 s), which the provider plays before the pause
    loop_s = padded_s(len(audio) / rate, sim) + prompt.PAUSE_S
    speech_onset, speech_end = said_at + onset, said_at + end
    lead, chunk = sim.session.lead_s, sim.session.chunk_s
    # the prompt, a pause and the prompt again, without a gap
    first, second = sim.provider.heard
    assert first.start == 0.0
    assert similarity(heard_at(sim, 0.0, 2.0), audio[:16000], 40) > 0.99
    assert similarity(heard_at(sim, loop_s, 2.0), audio[:16000], 40) > 0.99
    # it stops within the 200 ms of speech a barge-in needs + lead + one chunk (measured:
    # 180 ms on both providers)
    [clear_t] = sim.provider.clears
    assert first.end == pytest.approx(clear_t)
    stop_latency = first.end - speech_onset
    assert 0 < stop_latency <= 0.2 + lead + chunk, stop_latency
    # and starts over once the caller has stopped (SpeechEnded comes a hang-over later)
    assert speech_end < second.start <= speech_end + HANGOVER_S + 0.1
    assert similarity(heard_at(sim, second.start, 1.0), audio[:8000], 40) > 0.99


# --- ivr --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ivr_key_3_hangs_up(autojump_clock, provider):
    async with open_simulated_call(ivr.agent, provider) as sim:
        await trio.sleep(0.5)
        await sim.provider.press("3")
        await trio.sleep(3.0)
    assert sim.report.end_cause == "hangup"
    assert len(sim.provider.clears) == 1  # the key cut the menu short
    if not sim.session.caps.hangup_message:
        # no hang-up message (Awaaz, Twilio...): the engine closes the socket with 1000
        assert sim.provider.hangups == []
        assert sim.report.close_code == 1000 and sim.provider.closed_code == 1000
    else:
        [(t, what)] = sim.provider.hangups
        assert what == "hangup" and 0.5 < t < 0.6  # the tone is detected 20-40 ms in
        assert [c for _, c in sim.provider.received if isinstance(c, Hangup)] == [Hangup()]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ivr_key_2_transfers_or_hangs_up_where_it_cannot(autojump_clock, provider, caplog):
    caplog.set_level(logging.INFO, logger="callengine.agents.ivr")
    async with open_simulated_call(ivr.agent, provider) as sim:
        await trio.sleep(0.5)
        await sim.provider.press("2")
        await trio.sleep(3.0)
    if sim.session.caps.transfer:
        [(t, what)] = sim.provider.hangups
        assert what == "transfer:default" and 0.5 < t < 0.6
        assert sim.report.end_cause == "transfer"
    else:
        assert f"{provider} cannot transfer" in caplog.text
        assert sim.report.end_cause == "hangup" and sim.provider.closed_code == 1000
        assert sim.provider.hangups == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ivr_key_1_plays_the_message_then_the_menu(autojump_clock, provider):
    message, rate = prompt.spoken_prompt()
    menu = ivr.menu_prompt(8000)
    async with open_simulated_call(ivr.agent, provider) as sim:
        await trio.sleep(0.5)
        await sim.provider.press("7")  # not a menu key: the menu again
        await trio.sleep(3.0)
        await sim.provider.press("1", duration=0.3)  # a long press does not barge in
        await trio.sleep(8.0)
        await sim.provider.stop()
    menu_s, message_s = len(menu) / 8000, len(message) / rate
    # the menu, cut by key 7 and played again at once (one heard segment), then key 1
    menus, after_1 = sim.provider.heard
    [clear_7] = sim.provider.clears  # the menu was over when 1 was pressed
    assert 0.5 <= clear_7 < 0.56
    assert menus.start == 0.0 and menus.end == pytest.approx(clear_7 + menu_s, abs=0.02)
    assert 3.5 <= after_1.start < 3.56  # at once on Awaaz, 20-40 ms into the tone on Knowlarity
    assert after_1.duration == pytest.approx(message_s + menu_s, abs=0.02)
    assert similarity(heard_at(sim, after_1.start, 1.0), message[:8000], 40) > 0.99
    assert sim.report.stats.barge_ins == 0
    assert sim.report.end_cause == "provider_stop"


async def test_ivr_replays_the_menu_after_the_caller_talks_over_it(autojump_clock):
    speech, onset, end = recording("privacy-prompt.wav", until=1.63)
    async with open_simulated_call(ivr.agent, "awaaz") as sim:
        await trio.sleep(0.3)
        said_at = await say_after_a_frame(sim.provider, speech, 8000)
        await trio.sleep(4.0)
        await sim.provider.stop()
    assert sim.report.stats.barge_ins == 1
    first, again = sim.provider.heard
    assert first.end == pytest.approx(sim.provider.clears[0])
    assert said_at + end < again.start <= said_at + end + HANGOVER_S + 0.1
    assert again.duration == pytest.approx(len(ivr.menu_prompt(8000)) / 8000, abs=0.02)
