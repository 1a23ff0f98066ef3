"""barge_in_mode="pause": a backchannel ("haan", "hmm") over the bot pauses it and playback
resumes from the exact position heard; an interruption is cut at that position. Real
recorded speech (tests/call/speech_clips.py) against the simulated providers, in virtual
time."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import trio

from callengine.audio.resample import resample
from callengine.call.bargein import BargeInControl
from callengine.call.config import CallConfig
from callengine.call.causes import Counters
from callengine.call.inbox import Inbox
from callengine.call.ledger import MarkPoint, MarkState, PlaybackAudio
from callengine.call.writer import PlayoutRequest
from callengine.events import (
    Backchannel,
    BargeIn,
    CallerAudio,
    Clear,
    MarkCleared,
    MarkReached,
    PlayAudio,
    SpeechEnded,
    SpeechStarted,
)
from callengine.protocols.jsonevents import ENCODINGS
from callengine.protocols.registry import CODECS
from callengine.testing.harness import open_simulated_call

from .speech_clips import LINE_NOISE_DBFS, RATE, Clip, backchannel, interruption, prompt

PROVIDERS = list(CODECS)
MIN_SPEECH_S = 0.2
BACKCHANNEL_MAX_S = 0.8
PAUSE = CallConfig(barge_in_mode="pause")
PLAY_AT = 0.0073  # the bot starts off the 20 ms frame grid, so pauses fall mid-frame
HAAN = ("vm-tmpexists.wav", 2.11, 0.5)  # 0.5 s of speech to the energy VAD
PHRASE = ("vm-tmpexists.wav", 0.19, 1.94)  # 1.7 s
SAMPLE = 1.5 / 8000  # the simulated provider cuts what it plays at a sample


@attrs.define
class Run:
    sim: object
    events: list  # (call time, event), CallerAudio left out
    results: list
    onset: float  # call time of the clip's speech onset
    rate: int = 0

    def of(self, kind):
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    @property
    def clears(self) -> list[float]:
        return [t for t, c in self.sim.provider.received if isinstance(c, Clear)]

    def expected(self) -> np.ndarray:
        """The prompt as the caller should hear it: resampled as the engine does, through
        the provider's encoding (G.711 on Twilio, Smartflo, Telnyx: sample by sample)."""
        x = prompt(RATE) if self.rate == RATE else resample(prompt(RATE), RATE, self.rate)
        encoding = getattr(self.sim.session.codec, "encoding", "pcm16")
        decode, encode, _ = ENCODINGS[encoding]
        return np.frombuffer(decode(encode(x.tobytes())), dtype="<i2")

    def heard_pcm(self) -> np.ndarray:
        """The bot audio the caller heard, its segments put end to end (pauses removed)."""
        return np.concatenate([np.frombuffer(s.pcm, dtype="<i2") for s in self.sim.provider.heard])


async def over_prompt(provider: str, clip: Clip | None, at: float, config: CallConfig = PAUSE, agent_hook=None, **provider_options) -> Run:
    """The bot plays the prompt (then a mark "end"); ``clip`` is said ``at`` seconds into the
    call. The agent reads events until BargeIn or the end mark, running ``agent_hook(call,
    event)`` on each."""
    events: list = []
    results: list = []

    async def agent(call):
        await trio.sleep(PLAY_AT)
        pb = await call.play(prompt(RATE), sample_rate=RATE)
        await call.mark("end")
        with trio.fail_after(20):  # a test that goes wrong fails, rather than run for ever
            async for ev in call:
                if isinstance(ev, CallerAudio):
                    continue
                events.append((trio.current_time(), ev))
                if agent_hook is not None:
                    await agent_hook(call, ev)
                if isinstance(ev, BargeIn) or (isinstance(ev, MarkReached) and ev.name == "end"):
                    break
            results.append(await pb.wait())

    provider_options.setdefault("noise_dbfs", LINE_NOISE_DBFS)
    async with open_simulated_call(agent, provider, config, **provider_options) as sim:
        t0 = sim.provider.t0
        onset = 0.0
        if clip is not None:
            await trio.sleep_until(t0 + at)
            onset = sim.provider.say(clip.samples, RATE) + clip.onset_s
    run = Run(sim, [(t - t0, e) for t, e in events], results, onset)
    run.rate = sim.provider.heard[0].sample_rate
    assert sim.provider.protocol_errors == []
    return run


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_backchannel_pauses_the_bot_and_it_resumes_from_the_position_heard(autojump_clock, provider):
    run = await over_prompt(provider, backchannel(*HAAN), at=1.0)
    sim = run.sim
    assert run.of(BargeIn) == []
    [(resumed_at, bc)] = run.of(Backchannel)
    assert 0.25 < bc.duration < 0.7
    assert abs(bc.speech_started_at - run.onset) <= 0.02 + 1e-6  # the VAD dates the onset to its frame
    # the bot stopped within min-speech + 60 ms of the onset, with one clear
    [cleared_at] = run.clears
    assert 0 < cleared_at - run.onset <= MIN_SPEECH_S + 0.06
    # the caller heard the prompt up to the pause, silence for the pause, then the rest
    first, second = sim.provider.heard
    assert first.end == pytest.approx(cleared_at, abs=SAMPLE)
    assert second.start == pytest.approx(resumed_at, abs=1e-6)
    assert second.start - first.end == pytest.approx(bc.paused, abs=SAMPLE)
    heard, expected = run.heard_pcm(), run.expected()
    np.testing.assert_array_equal(heard[: len(expected)], expected)  # nothing repeated, nothing skipped
    assert not heard[len(expected) :].any()  # then at most the padding to the provider's frames
    [result] = run.results
    assert not result.interrupted and result.played_ms == pytest.approx(result.duration_ms)
    [(reached_at, _)] = [(t, e) for t, e in run.of(MarkReached) if e.name == "end"]
    assert reached_at == pytest.approx(second.end, abs=1e-6)  # the mark behind the pause: after the rest
    stats = sim.report.stats
    assert (stats.pauses, stats.backchannels, stats.barge_ins, stats.clears, stats.underruns) == (1, 1, 0, 1, 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_interruption_is_cut_where_the_caller_stopped_hearing_the_bot(autojump_clock, provider):
    run = await over_prompt(provider, interruption(*PHRASE), at=1.0)
    sim = run.sim
    assert run.of(Backchannel) == []
    [cleared_at] = run.clears
    assert 0 < cleared_at - run.onset <= MIN_SPEECH_S + 0.06  # silent at the pause already
    [(barged_at, barge)] = run.of(BargeIn)
    # decided once the speech lasted backchannel_max_ms (one 20 ms frame of VAD dating either way)
    assert BACKCHANNEL_MAX_S - 0.03 <= barged_at - run.onset <= BACKCHANNEL_MAX_S + 0.06
    [heard] = sim.provider.heard
    assert heard.end == pytest.approx(cleared_at, abs=SAMPLE)
    assert not any(isinstance(c, PlayAudio) for t, c in sim.provider.received if t > cleared_at)
    np.testing.assert_array_equal(run.heard_pcm(), run.expected()[: len(run.heard_pcm())])
    [result] = run.results
    assert barge.interrupted == (result,)
    assert result.interrupted and result.played_ms == pytest.approx(1000 * heard.duration, abs=1e-3)
    assert [e.name for _, e in run.of(MarkCleared)] == ["end"]
    stats = sim.report.stats
    assert (stats.pauses, stats.backchannels, stats.barge_ins, stats.clears) == (1, 0, 1, 1)


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
async def test_cut_mode_is_unchanged_a_backchannel_is_a_barge_in(autojump_clock, provider):
    run = await over_prompt(provider, backchannel(*HAAN), at=1.0, config=CallConfig())
    [cleared_at] = run.clears
    assert 0 < cleared_at - run.onset <= MIN_SPEECH_S + 0.06
    [(barged_at, barge)] = run.of(BargeIn)
    assert barged_at == pytest.approx(cleared_at, abs=SAMPLE)
    assert run.of(Backchannel) == []
    [heard] = run.sim.provider.heard
    # cut mode counts to the clock, the provider cuts at a sample
    assert barge.interrupted[0].played_ms == pytest.approx(1000 * heard.duration, abs=1000 * SAMPLE)
    stats = run.sim.report.stats
    assert (stats.pauses, stats.backchannels, stats.barge_ins) == (0, 0, 1)


async def _when_paused(call, ev, then):
    if isinstance(ev, SpeechStarted):
        with trio.fail_after(1.0):
            while not call.paused:
                await trio.sleep(0.001)
        await then(call)


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
async def test_the_agent_confirms_an_interruption_without_waiting(autojump_clock, provider):
    confirmed = []

    async def confirm(call):
        confirmed.append((trio.current_time(), await call.confirm_barge_in()))
        assert not call.paused and await call.confirm_barge_in() == [] and not await call.resume()

    # a short response the engine alone would resume after: the agent's ASR says otherwise
    run = await over_prompt(provider, backchannel(*HAAN), at=1.0, agent_hook=lambda c, e: _when_paused(c, e, confirm))
    [cleared_at] = run.clears
    [(barged_at, barge)] = run.of(BargeIn)
    assert barged_at - run.onset < MIN_SPEECH_S + 0.06  # at the pause, not at backchannel_max_ms
    assert run.of(Backchannel) == []
    [(_, results)] = confirmed
    [result] = run.results
    assert list(barge.interrupted) == results == [result]
    [heard] = run.sim.provider.heard
    assert heard.end == pytest.approx(cleared_at, abs=SAMPLE)
    assert result.interrupted and result.played_ms == pytest.approx(1000 * heard.duration, abs=1e-3)
    assert run.sim.report.stats.barge_ins == 1


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
async def test_the_agent_resumes_and_the_rest_of_the_speech_does_not_pause_again(autojump_clock, provider):
    resumed = []

    async def resume(call):
        resumed.append(await call.resume())

    # a long phrase the engine alone would cut: the agent's ASR heard "haan, haan, ..."
    run = await over_prompt(provider, interruption(*PHRASE), at=1.0, agent_hook=lambda c, e: _when_paused(c, e, resume))
    assert resumed == [True]
    assert run.of(BargeIn) == []
    [(_, bc)] = run.of(Backchannel)
    assert bc.duration < BACKCHANNEL_MAX_S and bc.paused < 0.05
    assert len(run.clears) == 1
    heard, expected = run.heard_pcm(), run.expected()
    np.testing.assert_array_equal(heard[: len(expected)], expected)
    [result] = run.results
    assert not result.interrupted


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
@pytest.mark.parametrize("clip", ["haan", "phrase"])
async def test_a_mark_behind_the_paused_audio(autojump_clock, provider, clip):
    """A mark already on the wire (or the clock) when the pause comes stays pending through
    it; Twilio echoes the marks a clear drops: that echo does not reach it. Reached after
    the resume when the audio before it has played; cleared by a confirmed interruption."""
    events = []
    results = []

    async def agent(call):
        await trio.sleep(PLAY_AT)
        a = await call.play(prompt(RATE)[:RATE], sample_rate=RATE)  # 1 s
        await call.mark("m")
        b = await call.play(prompt(RATE)[RATE : 2 * RATE], sample_rate=RATE)
        await call.mark("end")
        with trio.fail_after(20):
            async for ev in call:
                if not isinstance(ev, CallerAudio):
                    events.append((trio.current_time(), ev))
                if isinstance(ev, BargeIn) or (isinstance(ev, MarkReached) and ev.name == "end"):
                    break
            results.extend([await a.wait(), await b.wait()])

    said = backchannel(*HAAN) if clip == "haan" else interruption(*PHRASE)
    async with open_simulated_call(agent, provider, PAUSE, echo_marks_on_clear=True, noise_dbfs=LINE_NOISE_DBFS) as sim:
        # the pause comes about 0.96 s in: "m" is placed (sent 0.91 s in, 0.61 s on
        # Knowlarity with its 400 ms lead), "a" still playing until 1.0073 s
        await trio.sleep_until(sim.provider.t0 + 0.76)
        sim.provider.say(said.samples, RATE)
    t0 = sim.provider.t0
    [cleared_at] = [t for t, c in sim.provider.received if isinstance(c, Clear)]
    assert 0.9073 < cleared_at < 1.0073
    marks = [(t - t0, type(e).__name__, e.name) for t, e in events if isinstance(e, (MarkReached, MarkCleared))]
    if clip == "phrase":
        assert [m[1:] for m in marks] == [("MarkCleared", "m"), ("MarkCleared", "end")]
        assert results[0].interrupted and results[0].played_ms == pytest.approx(1000 * (cleared_at - PLAY_AT), abs=1000 * SAMPLE)
        assert results[1].interrupted and results[1].played_ms == 0
        return
    [(resumed_at, _)] = [(t - t0, e) for t, e in events if isinstance(e, Backchannel)]
    assert [m[1:] for m in marks] == [("MarkReached", "m"), ("MarkReached", "end")]
    left = 1.0 - (cleared_at - PLAY_AT)  # of "a" after the pause
    frame = sim.session.caps.frame_ms / 1000
    assert resumed_at + left - SAMPLE <= marks[0][0] <= resumed_at + left + frame + SAMPLE  # + padding to whole frames
    assert marks[1][0] == pytest.approx(marks[0][0] + 1.0, abs=1e-6)
    assert [(r.interrupted, r.played_ms) for r in results] == [(False, 1000.0), (False, 1000.0)]
    if sim.session.caps.mark_echo:
        # "m" was echoed at the clear and again after the resume; only the second counts
        assert [n for _, n in sim.provider.marks_echoed].count("m") == 2
        assert sim.report.stats.mark_echoes == 2 and sim.report.stats.mark_fallbacks == 0
    assert sim.report.stats.marks == 2


async def test_a_provider_without_clear_plays_out_its_queue_and_resumes_after_it(autojump_clock):
    """Knowlarity with kill_audio off: the pause only stops sending; the 400 ms queued plays
    out, and the resume sends on from where it ended."""
    options = {"codec_options": {"kill_audio": False}, "provider_codec_options": {"kill_audio": False}}
    run = await over_prompt("knowlarity", backchannel(*HAAN), at=1.0, **options)
    sim = run.sim
    assert run.clears == [] and run.of(BargeIn) == []
    [(resumed_at, bc)] = run.of(Backchannel)
    first, second = sim.provider.heard
    assert first.end > run.onset + MIN_SPEECH_S  # what was queued at the pause played on
    assert first.end - (run.onset + MIN_SPEECH_S) <= sim.session.lead_s + 0.02 + 1e-6
    assert second.start == pytest.approx(resumed_at, abs=1e-6)
    heard, expected = run.heard_pcm(), run.expected()
    np.testing.assert_array_equal(heard[: len(expected)], expected)
    [result] = run.results
    assert not result.interrupted and result.played_ms == pytest.approx(result.duration_ms)
    assert sim.report.stats.underruns == 0

    run = await over_prompt("knowlarity", interruption(*PHRASE), at=1.0, **options)
    [(_, barge)] = run.of(BargeIn)
    [heard_seg] = run.sim.provider.heard
    assert barge.interrupted[0].played_ms == pytest.approx(1000 * heard_seg.duration, abs=1e-3)


@pytest.mark.parametrize("provider", ["awaaz", "twilio"])
async def test_the_call_ending_during_a_pause_settles_at_the_position_heard(autojump_clock, provider):
    playbacks = []

    async def agent(call):
        await trio.sleep(PLAY_AT)
        playbacks.append(await call.play(prompt(RATE), sample_rate=RATE))
        await trio.sleep_forever()

    async with open_simulated_call(agent, provider, PAUSE, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep_until(sim.provider.t0 + 1.0)
        sim.provider.say(interruption(*PHRASE).samples, RATE)
        with trio.fail_after(1.0):
            while not sim.provider.clears:
                await trio.sleep(0.01)
        assert sim.call is not None and sim.call.paused
        await sim.provider.stop()
    [heard] = sim.provider.heard
    [pb] = playbacks
    assert pb.result is not None and pb.result.interrupted
    assert pb.result.played_ms == pytest.approx(1000 * heard.duration, abs=1e-3)
    assert sim.report.end_cause == "provider_stop"


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
async def test_speech_going_on_after_a_backchannel_pauses_again_and_is_cut(autojump_clock, provider):
    """"haan" - 200 ms - "no, I want...": with a resume after 100 ms of quiet (shorter than
    the VAD's 300 ms hang-over, so still one speech segment) the bot resumes after "haan",
    pauses again 200 ms into the phrase and is cut 800 ms into it."""
    haan, phrase = backchannel(*HAAN), interruption(*PHRASE)
    gap = np.zeros(int(0.2 * RATE), dtype=np.int16)
    said = Clip("haan+phrase", np.concatenate([haan.samples, gap, phrase.samples]), haan.onset_s, "interruption")
    run = await over_prompt(provider, said, at=0.6, config=CallConfig(barge_in_mode="pause", backchannel_resume_ms=100))
    phrase_onset = run.onset - haan.onset_s + len(haan.samples) / RATE + len(gap) / RATE + phrase.onset_s  # call time
    [(resumed_at, bc)] = run.of(Backchannel)
    [(barged_at, barge)] = run.of(BargeIn)
    assert [type(e) for _, e in run.of((SpeechStarted, SpeechEnded))] == [SpeechStarted]  # one segment, to the cut
    first_pause, second_pause = run.clears
    assert resumed_at < phrase_onset < second_pause <= phrase_onset + MIN_SPEECH_S + 0.06
    assert BACKCHANNEL_MAX_S - 0.03 <= barged_at - phrase_onset <= BACKCHANNEL_MAX_S + 0.06
    first, second = run.sim.provider.heard
    assert second.end == pytest.approx(second_pause, abs=SAMPLE)
    heard = run.heard_pcm()
    np.testing.assert_array_equal(heard, run.expected()[: len(heard)])
    [result] = run.results
    assert barge.interrupted == (result,) and result.played_ms == pytest.approx(1000 * (first.duration + second.duration), abs=1e-3)
    assert (run.sim.report.stats.pauses, run.sim.report.stats.backchannels, run.sim.report.stats.barge_ins) == (2, 1, 1)


async def test_the_agent_clearing_during_a_pause_ends_it(autojump_clock):
    cleared = []

    async def clear(call):
        cleared.append(await call.clear())
        assert not call.paused and not await call.resume()

    run = await over_prompt("twilio", backchannel(*HAAN), at=1.0, agent_hook=lambda c, e: _when_paused(c, e, clear))
    assert run.of(Backchannel) == [] and run.of(BargeIn) == []
    [[result]] = cleared
    [heard] = run.sim.provider.heard
    assert result.interrupted and result.played_ms == pytest.approx(1000 * heard.duration, abs=1e-3)
    assert len(run.clears) == 1  # the pause's: nothing was sent since
    assert [e.name for _, e in run.of(MarkCleared)] == ["end"]


async def test_speech_while_the_bot_is_silent_does_not_pause(autojump_clock):
    events = []

    async def agent(call):
        with trio.fail_after(20):
            async for ev in call:
                if not isinstance(ev, CallerAudio):
                    events.append(ev)
                if isinstance(ev, SpeechEnded):
                    break

    async with open_simulated_call(agent, "awaaz", PAUSE, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(0.5)
        sim.provider.say(backchannel(*HAAN).samples, RATE)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert sim.provider.clears == [] and sim.report.stats.pauses == 0


async def test_the_agent_switches_the_mode_per_call(autojump_clock):
    run = await over_prompt("awaaz", backchannel(*HAAN), at=1.0, config=CallConfig())
    assert run.of(BargeIn)

    modes = []

    async def agent(call):
        modes.append(call.barge_in_mode)
        call.barge_in_mode = "pause"
        with pytest.raises(ValueError, match="barge_in_mode must be one of cut, pause"):
            call.barge_in_mode = "sometimes"
        modes.append(call.barge_in_mode)
        pb = await call.play(prompt(RATE), sample_rate=RATE)
        with trio.fail_after(20):
            async for ev in call:
                if isinstance(ev, Backchannel):
                    modes.append("backchannel")
                    break
            assert not (await pb.wait()).interrupted

    async with open_simulated_call(agent, "awaaz", noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep(1.0)
        sim.provider.say(backchannel(*HAAN).samples, RATE)
    assert modes == ["cut", "pause", "backchannel"]
    assert sim.call is not None and sim.call.barge_in_mode == "pause"  # after the end too


async def test_a_pause_nothing_resolves_is_cut_at_its_deadline(autojump_clock):
    """The caller's audio stops coming mid-pause: the barge-in task does not wait for ever."""
    requests: list[tuple[float, str]] = []

    async def request(req: PlayoutRequest) -> PlayoutRequest:
        requests.append((trio.current_time(), req.kind))
        req.applied = True
        await trio.lowlevel.checkpoint()
        return req

    inbox: Inbox = Inbox(1.0)
    control = BargeInControl(request, inbox, Counters(), "test", pause_max_s=PAUSE.pause_max_s)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(control.run)
        t0 = trio.current_time()
        assert control.onset("pause", 1.0, t0) == 1
        assert control.onset("pause", 1.1, t0) is None  # the same episode
        await trio.sleep(0.01)
        assert control.paused
        await trio.sleep(PAUSE.pause_max_s + 0.1)
        assert not control.paused and control.active is None
        nursery.cancel_scope.cancel()
    assert [(round(t - t0, 3), k) for t, k in requests] == [(0.0, "pause"), (round(PAUSE.pause_max_s, 3), "cut")]
    assert isinstance(inbox.get_nowait(), BargeIn)
    assert PAUSE.pause_max_s == pytest.approx(2.1)


def test_pause_settings_are_checked_and_reach_the_config():
    base = CallConfig()
    assert (base.barge_in_mode, base.backchannel_max_ms, base.backchannel_resume_ms) == ("cut", 800.0, 300.0)
    changed = base.with_settings({"barge_in_mode": "pause", "backchannel_max_ms": "600", "backchannel_resume_ms": 200})
    assert (changed.barge_in_mode, changed.backchannel_max_ms, changed.backchannel_resume_ms) == ("pause", 600.0, 200.0)
    with pytest.raises(ValueError, match="barge_in_mode must be one of cut, pause, got 'maybe'"):
        base.with_settings({"barge_in_mode": "maybe"}, "route /p")
    with pytest.raises(ValueError, match="backchannel_max_ms .150. must be above min_speech_ms .200."):
        CallConfig(barge_in_mode="pause", backchannel_max_ms=150)
    CallConfig(backchannel_max_ms=150)  # only judged in pause mode
    with pytest.raises(ValueError, match="backchannel_resume_ms must be positive"):
        CallConfig(backchannel_resume_ms=0)


def test_pause_settings_from_the_command_line():
    from callengine.cli import build_parser, server_config_from_args

    args = build_parser().parse_args(
        ["serve", "echo", "--barge-in-mode", "pause", "--backchannel-max-ms", "700", "--route", "/t=twilio,barge_in_mode=cut,backchannel_resume_ms=250"]
    )
    config = server_config_from_args(args)
    assert (config.call.barge_in_mode, config.call.backchannel_max_ms, config.call.backchannel_resume_ms) == ("pause", 700.0, 300.0)
    (route,) = config.routes
    routed = config.call_for("twilio", route)
    assert (routed.barge_in_mode, routed.backchannel_max_ms, routed.backchannel_resume_ms) == ("cut", 700.0, 250.0)


# --- the plan on its own: pause, rewind, resume (pure, synchronous) ------------------------


def _heard(sent: list[tuple[float, bytes]], cuts: list[float], rate: int) -> bytes:
    """What a provider that plays chunks in order, and drops its queue at each of ``cuts``,
    plays: every chunk from when the previous one ends, cut at the sample a clear comes."""
    out = bytearray()
    play_end = -math.inf
    pending: list[tuple[float, bytes]] = []  # (start, pcm) queued, not yet known to be heard
    events = sorted([(t, 0, b) for t, b in sent] + [(t, 1, b"") for t in cuts], key=lambda e: (e[0], -e[1]))
    for t, kind, pcm in events:
        if kind == 1:  # a clear at t
            for start, chunk in pending:
                n = max(0, min(len(chunk) // 2, int(round((t - start) * rate))))
                out += chunk[: 2 * n]
            pending = []
            play_end = min(play_end, t)
            continue
        start = max(t, play_end)
        pending.append((start, pcm))
        play_end = start + len(pcm) / (2 * rate)
    for _, chunk in pending:
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("frame_s", [0.0, 0.02])
@pytest.mark.parametrize("pause_at", [0.3331, 0.8, 1.1117])
def test_the_plan_takes_back_the_unplayed_audio_and_sends_it_on_from_the_sample_heard(frame_s, pause_at):
    from .test_playout_plan import plan, ramp, run

    rate = 8000
    p = plan(0.02, 0.1, frame_s=frame_s)
    a_pcm, b_pcm = ramp(1.0037), ramp(0.5)
    a = PlaybackAudio(rate, p.bytes_per_chunk(rate), p.frame_bytes(rate))
    a.feed(a_pcm, 0.0)
    a.finish()
    p.add(a)
    m = MarkPoint("m")
    p.add(m)
    b = PlaybackAudio(rate, p.bytes_per_chunk(rate), p.frame_bytes(rate))
    b.feed(b_pcm, 0.0)
    b.finish()
    p.add(b)
    sent = [(t, s.pcm) for t, s in run(p, 0.0037, pause_at)]
    assert p.pause(pause_at) is True and p.pause(pause_at) is False  # a pause is one clear
    assert run(p, pause_at, pause_at + 0.5) == []  # nothing goes out while paused
    heard_at_pause = a.played_seconds(pause_at) + b.played_seconds(pause_at)
    assert p.resume(pause_at + 0.5) and not p.resume(pause_at + 0.5)
    resent = run(p, pause_at + 0.5, 10.0)
    if frame_s:
        assert all(len(s.pcm) % p.frame_bytes(rate) == 0 for _, s in resent)  # whole frames only
    heard = _heard(sent + [(t, s.pcm) for t, s in resent], [pause_at], rate)
    samples = np.frombuffer(heard, dtype="<i2")
    # the ramp has no zero sample: the zeros are the padding of each playback's last frame
    np.testing.assert_array_equal(samples[samples != 0], np.frombuffer(a_pcm + b_pcm, dtype="<i2"))
    assert a.result is not None and b.result is not None and m.state is MarkState.REACHED
    assert not a.result.interrupted and not b.result.interrupted
    assert (a.result.played_ms, b.result.played_ms) == (pytest.approx(len(a_pcm) / 16), pytest.approx(len(b_pcm) / 16))
    # played_ms at the pause: exactly the agent's samples the provider had played (no padding)
    before = np.frombuffer(_heard(sent, [pause_at], rate), dtype="<i2")
    assert heard_at_pause == pytest.approx(np.count_nonzero(before) / rate, abs=1e-9)
    assert p.ledger.underruns == 0


def test_the_plan_cut_after_a_pause_settles_at_the_position_heard_and_sends_no_second_clear():
    from .test_playout_plan import plan, ramp, run

    rate = 8000
    p = plan(0.02, 0.1, frame_s=0.02)
    a = PlaybackAudio(rate, p.bytes_per_chunk(rate), p.frame_bytes(rate))
    a.feed(ramp(1.0), 0.0)
    a.finish()
    p.add(a)
    p.add(m := MarkPoint("after"))
    run(p, 0.0, 0.4567)
    assert p.pause(0.4567)
    interrupted, tell_provider = p.clear(1.2)
    assert not tell_provider and p.counters.clears == 1 and p.counters.pauses == 1
    assert [r.played_ms for r in interrupted] == [pytest.approx(456.75)]  # to the sample
    assert m.state is MarkState.CLEARED and not p.paused


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity", "twilio"])
async def test_a_streaming_playback_goes_on_being_written_through_a_pause(autojump_clock, provider):
    """TTS writing in real time while the bot is paused: what it writes waits behind the kept
    audio, and the caller hears it all, in order, once the bot resumes."""
    from callengine.protocols.base import Role
    from callengine.protocols.registry import create_codec

    rate = create_codec(provider, Role.ENGINE).outbound_rate
    text = prompt(RATE) if rate == RATE else resample(prompt(RATE), RATE, rate)
    piece = rate // 10
    events = []
    results = []

    async def agent(call):
        async with call.open_playback(sample_rate=rate) as pb:
            for i in range(0, len(text), piece):
                await pb.write(text[i : i + piece])
                await trio.sleep(0.1)
        with trio.fail_after(20):
            async for ev in call:
                if isinstance(ev, Backchannel):
                    events.append(ev)
                    break
            results.append(await pb.wait())

    async with open_simulated_call(agent, provider, PAUSE, noise_dbfs=LINE_NOISE_DBFS) as sim:
        await trio.sleep_until(sim.provider.t0 + 1.0)
        sim.provider.say(backchannel(*HAAN).samples, RATE)
    assert len(events) == 1 and len(sim.provider.clears) == 1
    [result] = results
    assert not result.interrupted and result.played_ms == pytest.approx(1000 * len(text) / rate)
    encoding = getattr(sim.session.codec, "encoding", "pcm16")
    decode, encode, _ = ENCODINGS[encoding]
    expected = np.frombuffer(decode(encode(text.tobytes())), dtype="<i2")
    heard = np.concatenate([np.frombuffer(s.pcm, dtype="<i2") for s in sim.provider.heard])
    # silence the engine pads a short chunk with (the writer ran ahead of the TTS) aside,
    # the caller heard every sample once, in order
    np.testing.assert_array_equal(heard[heard != 0], expected[expected != 0])
