#!/usr/bin/env python3
"""Backchannel or interruption: what ``barge_in_mode="pause"`` decides on real speech.

    python scripts/bench_backchannel.py [--providers awaaz,knowlarity,twilio] [--seed 1] [--clips]

Virtual time (trio's MockClock), in-process: every call is an engine session against the
simulated provider, as in tests/call/test_backchannel.py, so the figures are exact and the
same on any machine. Per call the bot plays a recorded prompt (privacy-prompt.wav, 3.5 s)
and the caller says one clip over it, at a random 0.3-1.3 s into the prompt and a random
phase of the 20 ms microphone frames. The clips (tests/call/speech_clips.py) are cut from
the shipped recordings (tests/data, CC BY-SA 3.0):

  backchannels   40: 0.3, 0.4, 0.5, 0.6 and 0.7 s from each of 8 word onsets (as long as
                 "haan", "hmm", "ok")
  interruptions  9: whole phrases and whole recordings, 1.2-4.9 s

said on a line with -60 dBFS of noise (the simulated provider's noise_dbfs), so that the
energy VAD's floor is a line's, as on a real call.

Per clip: the decision (resume: a Backchannel event; cut: a BargeIn; none: the speech
never lasted min_speech_ms, so the bot was not even paused), the VAD's speech length,
"stop": from the speech onset (the clip's first 10 ms window above -40 dBFS) to the
provider receiving the pause's clear, i.e. the caller no longer hearing the bot; "pause":
how long the bot was silent (resume) or paused before the cut; "decide": onset to the
agent's event; and whether what the caller heard is exact: after a resume, the prompt
with nothing repeated or skipped (sample for sample, through the provider's encoding),
played_ms the whole prompt; after a cut, the prompt up to the pause, played_ms what was
heard.

Targets: no backchannel is cut; every interruption stops the bot within min_speech_ms +
60 ms of its onset (the BargeIn itself comes once the speech has lasted
backchannel_max_ms, 800 ms, or at once when the agent calls call.confirm_barge_in()).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import source_info  # noqa: E402
from callengine.audio.resample import resample  # noqa: E402
from callengine.call.config import CallConfig  # noqa: E402
from callengine.events import Backchannel, BargeIn, CallerAudio, Clear, MarkReached, SpeechEnded  # noqa: E402
from callengine.protocols.jsonevents import ENCODINGS  # noqa: E402
from callengine.protocols.registry import CODECS  # noqa: E402
from callengine.testing.harness import open_simulated_call  # noqa: E402
from tests.call.speech_clips import LINE_NOISE_DBFS, RATE, Clip, backchannels, interruptions, prompt  # noqa: E402

CONFIG = CallConfig(barge_in_mode="pause")
LIMIT_S = CONFIG.min_speech_ms / 1000 + 0.06


async def one_call(provider: str, clip: Clip, at: float, phase: float) -> dict:
    events: list = []
    results: list = []
    bot = prompt(RATE)

    async def agent(call):
        pb = await call.play(bot, sample_rate=RATE)
        await call.mark("end")
        with trio.fail_after(30):
            async for ev in call:
                if isinstance(ev, CallerAudio):
                    continue
                events.append((trio.current_time(), ev))
                if isinstance(ev, BargeIn) or (isinstance(ev, MarkReached) and ev.name == "end"):
                    break
            results.append(await pb.wait())

    async with open_simulated_call(agent, provider, CONFIG, noise_dbfs=LINE_NOISE_DBFS) as sim:
        t0 = sim.provider.t0
        await trio.sleep_until(t0 + at)
        lead = np.zeros(int(round(phase * RATE)), dtype=np.int16)
        onset = sim.provider.say(np.concatenate([lead, clip.samples]), RATE) + len(lead) / RATE + clip.onset_s
    events = [(t - t0, e) for t, e in events]
    clears = [t for t, c in sim.provider.received if isinstance(c, Clear)]
    bc = [(t, e) for t, e in events if isinstance(e, Backchannel)]
    barge = [(t, e) for t, e in events if isinstance(e, BargeIn)]
    ended = [e for _, e in events if isinstance(e, SpeechEnded)]
    decision = "resume" if bc else "cut" if barge else "none"
    heard_segments = sim.provider.heard
    rate = heard_segments[0].sample_rate
    expected = bot if rate == RATE else resample(bot, RATE, rate)
    decode, encode, _ = ENCODINGS[getattr(sim.session.codec, "encoding", "pcm16")]
    expected = np.frombuffer(decode(encode(expected.tobytes())), dtype="<i2")
    heard = np.concatenate([np.frombuffer(s.pcm, dtype="<i2") for s in heard_segments])
    [result] = results
    if decision == "cut":
        exact = (
            np.array_equal(heard, expected[: len(heard)])
            and abs(result.played_ms - 1000 * sum(s.duration for s in heard_segments)) < 1e-3
            and len(heard_segments) == 1
        )
    else:
        exact = np.array_equal(heard[: len(expected)], expected) and not heard[len(expected) :].any() and not result.interrupted
    row = {
        "provider": provider,
        "clip": clip.label,
        "kind": clip.kind,
        "decision": decision,
        "speech_ms": 1000 * (bc[0][1].duration if bc else ended[0].duration if ended and not barge else float("nan")),
        "stop_ms": 1000 * (clears[0] - onset) if clears else float("nan"),
        "pause_ms": 1000 * (bc[0][1].paused if bc else barge[0][0] - clears[0] if barge and clears else float("nan")),
        "decide_ms": 1000 * ((bc or barge)[0][0] - onset) if (bc or barge) else float("nan"),
        "exact": bool(exact),
        "underruns": sim.report.stats.underruns,
    }
    return row


def fmt(x: float) -> str:
    return "-" if x != x else f"{x:.0f}"


def summary(rows: list[dict]) -> list[str]:
    out = []
    for provider in dict.fromkeys(r["provider"] for r in rows):
        mine = [r for r in rows if r["provider"] == provider]
        bcs = [r for r in mine if r["kind"] == "backchannel"]
        ins = [r for r in mine if r["kind"] == "interruption"]
        resumed = [r for r in bcs if r["decision"] == "resume"]
        paused = [r["pause_ms"] for r in resumed]
        stops = [r["stop_ms"] for r in ins]
        decides = [r["decide_ms"] for r in ins]
        out.append(
            f"{provider:12} backchannels {len(bcs)}: resumed {len(resumed)}, not paused {sum(r['decision'] == 'none' for r in bcs)}, "
            f"cut {sum(r['decision'] == 'cut' for r in bcs)}; pause p50 {statistics.median(paused):.0f} ms, max {max(paused):.0f} ms | "
            f"interruptions {len(ins)}: cut {sum(r['decision'] == 'cut' for r in ins)}; stop p50 {statistics.median(stops):.0f} ms, "
            f"max {max(stops):.0f} ms (limit {1000 * LIMIT_S:.0f}); BargeIn p50 {statistics.median(decides):.0f} ms, max {max(decides):.0f} ms | "
            f"heard exact {sum(r['exact'] for r in mine)}/{len(mine)}, underruns {sum(r['underruns'] for r in mine)}"
        )
    return out


async def main(args: argparse.Namespace) -> list[dict]:
    rng = np.random.default_rng(args.seed)
    clips = backchannels() + interruptions()
    rows = []
    for provider in args.providers:
        for clip in clips:
            rows.append(await one_call(provider, clip, at=float(rng.uniform(0.3, 1.3)), phase=float(rng.uniform(0, 0.019))))
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=lambda s: [p.strip() for p in s.split(",")], default=["awaaz", "knowlarity", "twilio"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clips", action="store_true", help="print one line per clip")
    args = parser.parse_args()
    for p in args.providers:
        if p not in CODECS:
            parser.error(f"unknown provider {p!r}; choose from {', '.join(CODECS)}")
    print(source_info())
    print(f"barge_in_mode=pause, min_speech_ms={CONFIG.min_speech_ms:g}, backchannel_max_ms={CONFIG.backchannel_max_ms:g}, backchannel_resume_ms={CONFIG.backchannel_resume_ms:g}; virtual time\n")
    t = time.perf_counter()
    rows = trio.run(main, args, clock=trio.testing.MockClock(autojump_threshold=0))
    if args.clips:
        print(f"{'provider':12} {'clip':34} {'kind':12} {'decision':8} {'speech':>6} {'stop':>5} {'pause':>5} {'decide':>6} exact")
        for r in rows:
            print(
                f"{r['provider']:12} {r['clip']:34} {r['kind']:12} {r['decision']:8} {fmt(r['speech_ms']):>6} {fmt(r['stop_ms']):>5}"
                f" {fmt(r['pause_ms']):>5} {fmt(r['decide_ms']):>6} {'yes' if r['exact'] else 'NO'}"
            )
        print()
    for line in summary(rows):
        print(line)
    bad = [r for r in rows if (r["kind"] == "backchannel" and r["decision"] == "cut") or (r["kind"] == "interruption" and (r["decision"] != "cut" or r["stop_ms"] > 1000 * LIMIT_S + 1e-6)) or not r["exact"]]
    print(f"\n{len(rows)} calls in {time.perf_counter() - t:.1f} s; {'all targets met' if not bad else f'{len(bad)} call(s) missed a target'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    cli()
