#!/usr/bin/env python3
"""Barge-in latency: from the caller's speech onset to the provider's playback stopping.

    python scripts/bench_bargein.py [--trials 30] [--load-calls 20,50] [--seed 1]

Real clock, loopback only. ``callengine serve callengine.agents.prompt`` runs in its own
process (free port, ``--log-level warning``); the `prompt` agent plays a recorded prompt in
a loop, stops when the caller talks over it (the engine's barge-in clears the playback),
waits for the caller to finish and plays again.

One measured call per provider (Awaaz over /awaaz at 8 kHz, Knowlarity over /knowlarity at
16 kHz) is dialled from this process with the simulated provider
(:func:`callengine.testing.dial.open_dialed_call`). Per trial: wait until the prompt is
playing again, wait a random 0.2-1.5 s into it, then inject real speech into the caller's
microphone (the first 0.7 s of tests/data/vm-tmpexists.wav: 0.19 s of silence, then 0.5 s
of speech; resampled to the provider's rate, behind a random 0-19 ms of silence so that the
onset falls at a random phase of the 20 ms microphone frames) and wait for the provider to
receive ``clear`` (Awaaz) or ``killAudio`` (Knowlarity).

Speech onset, on the caller's side: the truth onset within the clip (the first 10 ms frame
of the clean recording louder than -45 dBFS RMS, the rule of tests/audio/test_vad.py) plus
the stream position at which the clip's first sample entered the caller's microphone stream
(sample index / rate = call time; the mic sends frame k, samples [k*20 ms, (k+1)*20 ms), at
call time (k+1)*20 ms). This script records every frame the mic builds, so the position is
exact. The "from say()" column measures from the start time ``SimulatedProvider.say()``
returns instead, as a cross-check (it is computed from ``frames_sent``, which lags by one
frame while the mic task is between building a frame and finishing its send; simulators
before b613c1e returned the call time of the say() call, up to one frame late).

Latency = call time at which the clear / killAudio arrived - speech onset. It is split with
an offline replay of the exact microphone stream of the call (every frame is recorded)
through the engine's own detector (EnergyVad + SpeechSegmenter, the engine's defaults) and
barge-in rule (speech_seconds >= min speech, once per segment):

  vad onset    VAD-dated onset (SpeechStart.at_sample) - truth onset
  min-speech   frame boundary at which speech_seconds reached 200 ms - VAD-dated onset
  mic late     how late the caller's mic task built that frame: client scheduling, or
               backpressure (its earlier sends blocked because the engine was not reading;
               "send blocked" is the longest such send in the call)
  pipeline     clear arrival - that frame's send: WebSocket in, engine's reader, barge-in
               task, writer's clear, WebSocket out

"Last audio" is the last playAudio/media message received before the clear, relative to the
onset (on Awaaz the provider's buffer is flushed at the clear, so what the caller hears after
the onset ends at the clear).

Under load, a second client process (this script with --background) keeps N more calls
(half Awaaz, half Knowlarity) on the same engine process for the whole phase: they listen to
the prompt and send silence, as callers on hold would. The load client reports
``heard_ratio``: seconds of prompt its calls heard / seconds they lasted (about 1.0 when the
engine keeps every call's audio flowing in real time; less means underruns, i.e. an
overloaded engine). The engine's, the load client's and all other processes' CPU use
during each measurement come from /proc/PID/stat and /proc/stat; this machine may be
shared, so before each load level the script waits (bounded, --wait-quiet) for it to be
idle and prints how busy the rest of the machine was.

Target (issue 5): Awaaz p99 at one call <= min speech (200 ms) + lead (100 ms) + 40 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callengine.audio.resample import resample  # noqa: E402
from callengine.audio.vad import SpeechSegmenter, SpeechStart, make_vad  # noqa: E402
from callengine.audio.wav import read_wav  # noqa: E402
from callengine.events import PlayAudio  # noqa: E402
from benchlib import busy_cores, callengine_command, cpu_seconds, machine_busy, machine_info, pct, rss_mib, source_info, wait_quiet  # noqa: E402
from callengine.testing.dial import open_dialed_call  # noqa: E402
from callengine.testing.provider import default_start  # noqa: E402
from callengine.protocols.registry import CODECS  # noqa: E402

SPEECH_FILE = ROOT / "tests" / "data" / "vm-tmpexists.wav"
CLIP_S = 0.7  # the first 0.7 s of the file: 0.19 s of silence, then 0.5 s of speech
TRUTH_FRAME_MS = 10
TRUTH_DBFS = -45.0
MIN_SPEECH_MS = 200.0  # the engine's default (CallConfig.min_speech_ms); passed to serve
# every provider in the codec registry, with its defaults (Capabilities.lead_ms: Knowlarity's
# is 2 clips; inbound_rate: the wire rate the measured call streams at)
LEAD_MS = {name: float(codec.capabilities.lead_ms) for name, codec in CODECS.items()}
RATES = {name: codec.capabilities.inbound_rate for name, codec in CODECS.items()}
OFFSET_S = (0.2, 1.5)  # into the prompt (4.85 s of speech and pauses)
CLEAR_TIMEOUT_S = 3.0
FRAME_S = 0.02


# --- machine and processes -----------------------------------------------------------------


class Engine:
    """`callengine serve` in its own process on a free port."""

    def __init__(self, agent: str, extra: list[str]) -> None:
        self.stderr = tempfile.NamedTemporaryFile("w+", prefix="bench-bargein-engine-", suffix=".log", delete=False)
        self.argv = callengine_command() + ["serve", agent, "--port", "0", "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"listening on wss?://[^:/]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise SystemExit(f"the engine did not start: {line!r}; see {self.stderr.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: graceful drain
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_summary(self) -> str:
        self.stderr.flush()
        text = Path(self.stderr.name).read_text()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        levels = {k: sum(f" {k} " in ln for ln in lines) for k in ("WARNING", "ERROR")}
        tail = "\n".join("    " + ln[:200] for ln in lines[-5:])
        return f"engine log ({self.stderr.name}): {len(lines)} lines, {levels['WARNING']} warnings, {levels['ERROR']} errors" + (f"\n{tail}" if lines else "")


# --- speech ------------------------------------------------------------------------------


def load_clip(rate: int) -> tuple[np.ndarray, int]:
    """(clip at ``rate``, truth onset in samples)."""
    wav = read_wav(SPEECH_FILE)
    x = np.frombuffer(wav.pcm, dtype="<i2").astype(np.int16)[: int(CLIP_S * wav.sample_rate)].copy()
    fade = int(0.01 * wav.sample_rate)  # 10 ms fade-out: the cut is mid-word
    x[-fade:] = (x[-fade:] * np.linspace(1, 0, fade)).astype(np.int16)
    if rate != wav.sample_rate:
        x = resample(x, wav.sample_rate, rate).astype(np.int16)
    n = rate * TRUTH_FRAME_MS // 1000
    m = len(x) // n
    f = x[: m * n].astype(np.float64).reshape(m, n) / 32768.0
    db = 10 * np.log10(np.mean(f * f, axis=1) + 1e-12)
    first = int(np.argmax(db > TRUTH_DBFS))
    assert db[first] > TRUTH_DBFS
    return x, first * n


# --- one measured call -----------------------------------------------------------------------


def replay_barge_ins(frames: list[np.ndarray], rate: int, min_speech_ms: float) -> list[tuple[int, int]]:
    """The engine's barge-in decisions on this microphone stream: [(VAD onset sample,
    index of the frame on which the decision was taken)]. Same detector, segmenter and rule
    as CallSession._bargein (assuming the bot is audible, as it is in every trial)."""
    seg = SpeechSegmenter(make_vad("energy", sample_rate=rate))
    out = []
    barged = False
    for k, frame in enumerate(frames):
        for ev in seg.process(frame):
            if isinstance(ev, SpeechStart):
                barged = False
        cur = seg.current
        if cur is not None and not barged and seg.speech_seconds >= min_speech_ms / 1000 - 1e-9:
            barged = True
            out.append((cur.at_sample, k))
    return out


async def measure_call(url: str, provider: str, trials: int, rng: np.random.Generator, time_limit: float) -> dict:
    rate = RATES[provider]
    clip, truth = load_clip(rate)
    frames: list[np.ndarray] = []
    frame_built: list[float] = []
    injected = []  # per trial: dict
    misses = 0
    start = default_start(provider, call_id=f"bargein-{provider}", sample_rate=rate)
    async with open_dialed_call(url, provider, start=start) as sim:
        n = sim.frame_samples
        # frames sent before the recorder is in place (normally none) were silence
        frames.extend(np.zeros(n, dtype=np.int16) for _ in range(sim.frames_sent))
        frame_built.extend(math.nan for _ in range(sim.frames_sent))
        original = sim._next_mic_frame

        def recording_next_frame():  # every microphone frame, in order, with when it was built
            assert sim.frames_sent == len(frames)
            frame = original()
            frames.append(frame.copy())
            frame_built.append(sim.now())
            return frame

        sim._next_mic_frame = recording_next_frame  # the mic task looks it up per frame
        send_message = sim.transport.send_message
        blocked = [0.0]

        async def timed_send(message):  # the longest a send waited (engine backpressure)
            t = trio.current_time()
            await send_message(message)
            blocked[0] = max(blocked[0], trio.current_time() - t)

        sim.transport.send_message = timed_send
        deadline = trio.current_time() + time_limit
        last_clear_t = -1.0
        scanned = 0  # sim.received[:scanned] has been looked at
        for trial in range(trials):
            # wait until the prompt plays again (after the previous clear)
            play_start = None
            with trio.move_on_at(deadline) as scope:
                while True:
                    while play_start is None and scanned < len(sim.received):
                        t, c = sim.received[scanned]
                        scanned += 1
                        if isinstance(c, PlayAudio) and t > last_clear_t:
                            play_start = t
                    if play_start is not None and sim.mic_idle:
                        break
                    await trio.sleep(0.005)
            if scope.cancelled_caught or sim.closed.is_set():
                break
            offset = float(rng.uniform(*OFFSET_S))
            await trio.sleep_until(sim.t0 + play_start + offset)
            clears_before = len(sim.clears)
            # stream position of the clip's first sample: everything already built plus queue
            queued = sum(len(x) for x in sim._mic) - sim._mic_pos
            start_sample = len(frames) * n + queued
            # the simulator starts say() audio on a frame boundary: a random 0-19 ms of
            # silence in front puts the onset at a random phase of the 20 ms frames
            pad = int(rng.integers(0, n))
            say_t = sim.say(np.concatenate([np.zeros(pad, dtype=np.int16), clip]))
            say_t += pad / rate
            start_sample += pad
            onset_t = (start_sample + truth) / rate
            with trio.move_on_after(CLEAR_TIMEOUT_S) as scope:
                while len(sim.clears) == clears_before:
                    await trio.sleep(0.002)
            if scope.cancelled_caught:
                misses += 1
                last_clear_t = sim.now()
                continue
            clear_t = sim.clears[clears_before]
            last_clear_t = clear_t
            audio_before = [t for t, c in sim.received[scanned:] if isinstance(c, PlayAudio) and t <= clear_t]
            scanned = next((i for i in range(scanned, len(sim.received)) if sim.received[i][0] > clear_t), len(sim.received))
            injected.append(
                {
                    "trial": trial,
                    "offset_s": offset,
                    "start_sample": start_sample,
                    "say_t": say_t,
                    "onset_t": onset_t,
                    "clear_t": clear_t,
                    "last_audio_t": audio_before[-1] if audio_before else math.nan,
                }
            )
        # let the last utterance end before hanging up
        with trio.move_on_after(2.0):
            while not sim.mic_idle:
                await trio.sleep(0.02)
    # offline replay of the exact stream through the engine's detector and rule
    decisions = replay_barge_ins(frames, rate, MIN_SPEECH_MS)
    rows = []
    for tr in injected:
        begin = tr["start_sample"]
        match = [d for d in decisions if d[1] * n + n > begin]
        if not match:
            continue
        at_sample, k = match[0]
        decided_t = (k + 1) * n / rate  # end of the decision frame, stream time
        tr["vad_onset_ms"] = 1000 * (at_sample / rate - tr["onset_t"])
        tr["min_speech_ms"] = 1000 * (decided_t - at_sample / rate)
        tr["mic_late_ms"] = 1000 * (frame_built[k] - decided_t)
        tr["pipeline_ms"] = 1000 * (tr["clear_t"] - frame_built[k])
        rows.append(tr)
    for tr in injected:
        tr["latency_ms"] = 1000 * (tr["clear_t"] - tr["onset_t"])
        tr["latency_say_ms"] = 1000 * (tr["clear_t"] - (tr["say_t"] + truth / rate))
        tr["last_audio_ms"] = 1000 * (tr["last_audio_t"] - tr["onset_t"])
    return {"provider": provider, "trials": injected, "misses": misses, "replayed": len(rows), "frames": len(frames), "send_blocked_ms": 1000 * blocked[0]}


# --- background load -------------------------------------------------------------------------


async def background(url: str, calls: int, seconds: float, providers: list[str]) -> None:
    """Keep ``calls`` listening calls up for ``seconds`` (then hang up); print 'ready' once
    all are connected and a JSON summary at the end."""
    stats = {"started": 0, "failed": 0, "ended_early": 0, "audio_messages": 0, "clears": 0, "call_s": 0.0, "heard_s": 0.0}
    ready = trio.Event()
    stop = trio.CancelScope(deadline=trio.current_time() + seconds)  # stdin closing ends it early

    async def one(i: int) -> None:
        provider = providers[i % len(providers)]
        path = f"{url}/{provider}"
        try:
            async with open_dialed_call(path, provider, start=default_start(provider, call_id=f"bg-{i}")) as sim:
                stats["started"] += 1
                if stats["started"] == calls:
                    ready.set()
                with trio.CancelScope() as wait:
                    waits.append(wait)
                    await sim.closed.wait()
                if sim.closed.is_set():
                    stats["ended_early"] += 1
                stats["audio_messages"] += sum(isinstance(c, PlayAudio) for _, c in sim.received)
                stats["clears"] += len(sim.clears)
                # the prompt plays without pause: what was heard / how long the call was
                # says whether the engine kept its calls' audio up in real time
                stats["call_s"] += sim.now()
                stats["heard_s"] += sim.heard_seconds()
        except Exception as exc:  # reported, never fatal for the other calls
            stats["failed"] += 1
            print(f"background call {i} failed: {exc!r}", file=sys.stderr, flush=True)
            if stats["started"] + stats["failed"] == calls:
                ready.set()

    waits: list[trio.CancelScope] = []

    async def announce() -> None:
        await ready.wait()
        print("ready", flush=True)

    async def until_told() -> None:
        with stop:
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        for w in waits:  # every call hangs up (provider stop)
            w.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(announce)
        nursery.start_soon(until_told)
        for i in range(calls):
            nursery.start_soon(one, i)
            await trio.sleep(0.037)  # spread the calls' 20 ms frame phases
    stats["heard_ratio"] = round(stats.pop("heard_s") / max(1e-9, stats.pop("call_s")), 3)
    print(json.dumps(stats), flush=True)


class Background:
    def __init__(self, url: str, calls: int, seconds: float) -> None:
        argv = [sys.executable, __file__, "--background", str(calls), "--url", url, "--seconds", str(seconds)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "ready":
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise SystemExit("background load did not start: " + "".join(self.stderr_lines[-5:]))

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def finish(self) -> dict:
        """Tell the load to hang up (closes its stdin); its summary."""
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.stop()
            return {"error": "background load did not finish"}
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {"error": "no summary", "stderr": "".join(self.stderr_lines[-5:])}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- report ------------------------------------------------------------------------------------


def fmt(v: float) -> str:
    return "   -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.1f}"


def summarize(label: str, result: dict) -> dict:
    tr = result["trials"]
    lat = [t["latency_ms"] for t in tr]
    rep = [t for t in tr if "pipeline_ms" in t]
    return {
        "label": label,
        "provider": result["provider"],
        "n": len(tr),
        "miss": result["misses"],
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "max": max(lat) if lat else math.nan,
        "vad": pct([t["vad_onset_ms"] for t in rep], 50),
        "vad_max": max((t["vad_onset_ms"] for t in rep), default=math.nan),
        "minsp": pct([t["min_speech_ms"] for t in rep], 50),
        "minsp_max": max((t["min_speech_ms"] for t in rep), default=math.nan),
        "late": pct([t["mic_late_ms"] for t in rep], 50),
        "pipe50": pct([t["pipeline_ms"] for t in rep], 50),
        "pipe99": pct([t["pipeline_ms"] for t in rep], 99),
        "pipemax": max((t["pipeline_ms"] for t in rep), default=math.nan),
        "last50": pct([t["last_audio_ms"] for t in tr], 50),
        "last99": pct([t["last_audio_ms"] for t in tr], 99),
        "say50": pct([t["latency_say_ms"] for t in tr], 50),
        "say99": pct([t["latency_say_ms"] for t in tr], 99),
        "replayed": result["replayed"],
        "blocked": result["send_blocked_ms"],
    }


def print_table(rows: list[dict]) -> None:
    print()
    print("barge-in latency, speech onset -> provider receives clear (Awaaz) / killAudio (Knowlarity), ms")
    head = f"{'provider':<11}{'load':<10}{'n':>3}{'miss':>5} | {'p50':>6}{'p99':>7}{'max':>7} | {'vad onset':>9}{'min-speech':>11}{'mic late':>9}{'pipeline p50/p99/max':>22} | {'last audio p50/p99':>19} | {'from say() p50/p99':>18}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['provider']:<11}{r['label']:<10}{r['n']:>3}{r['miss']:>5} | {fmt(r['p50'])}{fmt(r['p99']):>7}{fmt(r['max']):>7} | "
            f"{fmt(r['vad']):>9}{fmt(r['minsp']):>11}{fmt(r['late']):>9}{fmt(r['pipe50']):>8}{fmt(r['pipe99'])}{fmt(r['pipemax'])} | "
            f"{fmt(r['last50']):>12}{fmt(r['last99'])} | {fmt(r['say50']):>11}{fmt(r['say99'])}"
        )
    print("(vad onset, min-speech, mic late: p50 of the replayed decomposition; latency = vad onset + min-speech + mic late + pipeline)")


# --- main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30, help="trials per provider and load level (default 30)")
    p.add_argument("--load-calls", default="20,50", help="background calls on the engine for the loaded runs, comma-separated (default 20,50; 0 skips)")
    p.add_argument("--providers", default="awaaz,knowlarity", help=f"comma-separated, any of {', '.join(CODECS)} (default awaaz,knowlarity)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--phase-limit", type=float, default=110.0, help="seconds at most per measured call")
    p.add_argument("--time-budget", type=float, default=570.0, help="seconds for the whole run (default 570): measurements are cut short to fit")
    p.add_argument("--wait-quiet", type=float, default=40.0, help="before each load level, wait up to this long for the machine to be idle (0: don't)")
    p.add_argument("--background", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.background is not None:
        trio.run(background, args.url, args.background, args.seconds, ["awaaz", "knowlarity"])
        return 0

    t_begin = time.monotonic()
    providers = [x.strip().lower() for x in args.providers.split(",") if x.strip()]
    unknown = [x for x in providers if x not in CODECS]
    if unknown:
        p.error(f"unknown provider {', '.join(unknown)}: use any of {', '.join(CODECS)}")
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(machine_info())
    print(source_info())
    engine = Engine("callengine.agents.prompt", ["--min-speech-ms", str(MIN_SPEECH_MS)])
    print("engine:  " + " ".join(engine.argv) + f"  (pid {engine.proc.pid}, port {engine.port})")
    base = f"ws://127.0.0.1:{engine.port}"
    rng = np.random.default_rng(args.seed)
    rows = []
    try:
        loads = [int(x) for x in str(args.load_calls).split(",") if x.strip() and int(x) > 0]
        levels = [("1 call", 0)] + [(f"+{n} calls", n) for n in loads]
        measurements_left = len(levels) * len(providers)
        for label, load in levels:
            # stay within --time-budget: a fair share of what is left for each measurement
            share = (args.time_budget - (time.monotonic() - t_begin) - 15) / measurements_left
            if args.wait_quiet:
                print(f"  {wait_quiet(min(args.wait_quiet, max(0.0, share / 3)))}", flush=True)
            bg = None
            if load:
                seconds = len(providers) * (args.phase_limit + 10) + 30
                bg = Background(base, load, seconds)
                time.sleep(2.0)  # let the load settle
            try:
                for provider in providers:
                    e0, b0, s0, m0, w0 = cpu_seconds(engine.proc.pid), (cpu_seconds(bg.proc.pid) if bg else 0.0), cpu_seconds(os.getpid()), machine_busy(), time.monotonic()
                    limit = (args.time_budget - (time.monotonic() - t_begin) - 15) / measurements_left - (3 if load else 0)
                    limit = max(10.0, min(args.phase_limit, limit))
                    measurements_left -= 1
                    result = trio.run(measure_call, f"{base}/{provider}", provider, args.trials, rng, limit)
                    e1, b1, s1, m1, w1 = cpu_seconds(engine.proc.pid), (cpu_seconds(bg.proc.pid) if bg else 0.0), cpu_seconds(os.getpid()), machine_busy(), time.monotonic()
                    wall = w1 - w0
                    row = summarize(label, result)
                    row["engine_cpu"] = (e1 - e0) / wall
                    row["load_cpu"] = (b1 - b0) / wall
                    row["other_cpu"] = max(0.0, busy_cores(m0, m1) - row["engine_cpu"] - row["load_cpu"] - (s1 - s0) / wall)
                    rows.append(row)
                    print(
                        f"  {provider:<10} {label:<10} {row['n']} trials ({row['miss']} without a clear, {row['replayed']} replayed) "
                        f"in {wall:.0f} s: p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, send blocked {row['blocked']:.0f} ms at most; cpu: engine {100 * row['engine_cpu']:.0f}%, "
                        f"load client {100 * row['load_cpu']:.0f}%, other processes {row['other_cpu']:.2f} cores; engine RSS {rss_mib(engine.proc.pid):.0f} MiB",
                        flush=True,
                    )
            finally:
                if bg:
                    print(f"  load summary: {json.dumps(bg.finish())}", flush=True)
    finally:
        engine.stop()
    print_table(rows)
    print()
    print("cpu during each measurement (cores): " + "; ".join(
        f"{r['provider']} {r['label']}: engine {r['engine_cpu']:.2f}, load client {r['load_cpu']:.2f}, other processes {r['other_cpu']:.2f}" for r in rows))
    if any(r["other_cpu"] > 0.3 for r in rows):
        print("WARNING: other processes used > 0.3 cores during some measurements (shared machine): those figures include CPU contention")
    print(engine.log_summary())
    print()
    target = MIN_SPEECH_MS + LEAD_MS["awaaz"] + 40
    for r in rows:
        if r["provider"] == "awaaz" and r["label"] == "1 call":
            ok = r["p99"] <= target and r["miss"] == 0
            print(f"target: Awaaz p99 at one call <= min speech {MIN_SPEECH_MS:.0f} + lead {LEAD_MS['awaaz']:.0f} + 40 = {target:.0f} ms: "
                  f"p99 {r['p99']:.1f} ms, {r['miss']} missed -> {'MET' if ok else 'NOT MET'}")
    for r in rows:
        if r["label"] != "1 call":
            base_row = next((b for b in rows if b["provider"] == r["provider"] and b["label"] == "1 call"), None)
            if base_row:
                print(f"under load ({r['label']}) / 1 call, {r['provider']}: p50 x{r['p50'] / base_row['p50']:.2f}, p99 x{r['p99'] / base_row['p99']:.2f}")
    print(f"total {time.monotonic() - t_begin:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
