#!/usr/bin/env python
"""How many concurrent calls one engine process carries, next to bare echo servers doing the
same decode/re-encode work.

**The echo row** (``--row echo``, the default) sweeps N concurrent simulated echo calls
(``callengine load``, callengine/testing/load.py) against several servers, each in its own
process, in the same run, alternating at every step (``--servers``, see
scripts/bench_servers.py):

* engine: ``callengine serve callengine.agents.echo --agent-rate R --no-barge-in``, R the
  wire rate (8000 Awaaz, 16000 Knowlarity: the echo path has no resampler and the round
  trip is the engine's own work: WebSocket, codec, queues, the call tasks, pacing, ledger,
  VAD); ``engine-wN`` the same with ``--workers N``; ``baseline`` the same from another
  checkout (``--baseline-tree``);
* bare: scripts/bare_echo_server.py (trio-websocket), websockets:
  scripts/bare_echo_websockets.py (websockets' asyncio server), picows:
  scripts/bare_echo_picows.py; all three share scripts/echo_handling.py (parse,
  base64-decode, WAV-wrap, re-encode, send back; nothing else) and differ only in the
  WebSocket library. ``--servers all`` = engine,bare,websockets,picows. ``trio-floor`` and
  ``trio-floor3`` (scripts/bare_echo_trio_floor.py) are the same handling with the least
  Trio can spend around it, in one task per call and in the engine's three tasks.

``--provider awaaz`` (default) sends Awaaz JSON media frames (8 kHz) and gets Awaaz media
messages back; ``--provider knowlarity`` sends mod_audio_fork's metadata text frame, then
raw 16 kHz PCM16 binary frames, and gets ``playAudio`` JSON clips of 200 ms back (the
engine's default on Knowlarity; the bare servers gather the same clips). A 200 ms clip
makes the first frame in it wait 180 ms, so on Knowlarity the round-trip limit is 220 ms
(the clip plus the 20 ms Awaaz gets); the modelled playout buffer is 40 ms on both, unless
``--p99-ms`` and ``--jitter-buffer-ms`` say otherwise. (The load generator leaves each
call's last clip out of its statistics: the caller stops mid-clip, and a server holds a
partial clip until the stream pauses, which a real caller never makes it do.)

Each step starts a fresh server process, runs ``callengine load`` (``--generators``
processes, 2 by default, the N calls split between them; their percentiles are merged from
2 %-wide histograms) for ``--step-seconds`` (calls ramp up over ``--ramp`` seconds;
statistics cover the steady state after the ramp), samples the server's CPU (utime+stime
from /proc/PID/stat) and RSS (VmRSS) every 0.2 s, and stops the server. Every server runs
with the same garbage-collector settings (callengine.cli.tune_gc_for_serving). The CPU the
load generators and any other process used over the same window is printed beside it ("gen
CPU", "others CPU"): the generators cost about as much per call as a bare server, so on
two cores a bare server's N_max is usually where the generators saturate, not where it does.

Columns: rtt = round trip (provider send -> echoed audio back), jit99 = p99 of the outbound
pacing jitter, under = modelled underruns, fail = handshake failures + calls cut short,
server CPU = fraction of one core, ms/cs = server CPU milliseconds per call-second (one
call-second = 50 caller frames echoed), late99 = p99 of the generators' own lateness.

A step passes when every call connected and stayed up, the round trip p99 is under the
limit, no frame was dropped and the modelled caller heard no underrun. Per server, N_max is
the largest N that passed with every smaller step passing too; after the first failure one
midpoint is tried. ``--runs K`` repeats the whole alternating sweep K times (a fresh N_max
search each time, ``--budget`` per run), prints each run's N_max and calls per core, then
the median across runs, and the ratios engine/bare, engine/websockets, engine/picows from
the medians.

* CPU = server CPU seconds / wall seconds over the steady window (1.00 = one core busy).
* calls per core = N_max / CPU at N_max: how many such calls one fully used core would
  carry at the per-call cost measured at N_max (it normalises away what the server could
  not use because it shares the cores with the load generators and anything else).
* ratio = engine calls per core / bare calls per core (the target is >= 0.6 against
  trio-websocket); the summary also compares CPU per call at each N both servers carried
  (bare ms / engine ms = the same ratio, measured at equal load).
* RSS per call = (peak RSS during the step - RSS of the idle server before it) / N.

**The talk row** (``--row talk``) runs ``engine-talk``: ``callengine serve
scripts.bench_agent:agent`` (a TTS-style bot: answers every utterance with 3 s of streamed
speech written ahead of real time in 300 ms bursts, marks the end of each turn, barge-in on,
answers keys) against ``callengine load --traffic talk`` (a looped 16 s caller script:
speech with pauses, speech over the bot's answer, a key press: a DTMF message on Awaaz, an
in-band tone on Knowlarity). It measures each N of ``--steps`` (default 20, 40, 60; 20 s
steps) and prints CPU per call-second, RSS per call, the engine's underruns, starved gaps
and drops (``GET /metrics``), utterances, barge-in attempts and keys sent, barge-ins seen
(engine, agent, clears the caller got), DTMF (engine, agent), marks placed, reached (agent)
and echoed (caller; Awaaz only). A talk step passes when every call stayed up with no
underrun and no drop.

**The profile** (``--profile N``, ``--profile-only`` to skip the sweep) runs each server
once more at N calls under a 1 kHz CPU-clock sampler and prints where its time goes. The
sampler counts only the steady window (it is opened and closed by SIGUSR2 from the bench:
after the ramp plus the generators' start-up, until the end of streaming), so the process's
start-up (module imports) and the teardown are not charged to the frames.

    python scripts/bench_capacity.py                       # echo row, engine and bare, Awaaz (< 10 min on 2 cores)
    python scripts/bench_capacity.py --quick               # a short sanity run (~1 minute)
    python scripts/bench_capacity.py --servers all --runs 3                           # Awaaz, 4 servers, median of 3
    python scripts/bench_capacity.py --servers all --runs 3 --provider knowlarity     # the same on Knowlarity
    python scripts/bench_capacity.py --row talk --runs 3                              # the talk row, N = 20, 40, 60
    python scripts/bench_capacity.py --row talk --provider knowlarity
    python scripts/bench_capacity.py --servers all --profile 60 --profile-only --step-seconds 15
                                                     # where each server's time goes (window: step - ramp - 1.5 s)
    python scripts/bench_capacity.py --pin           # server on CPU 0, load generators on the rest
    python scripts/bench_capacity.py --servers engine,baseline --baseline-tree /tmp/old
    python scripts/bench_capacity.py --servers engine,engine-w2                       # one process against --workers 2
    ... --json /tmp/bench.json                       # also every step's figures, per run, and the summary

``--pin`` gives the server under test a core of its own (every server alike); its N_max is
then where the server's own core runs out, or where the generators on the other core do.
websockets and picows come with ``pip install 'callengine[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import bench_servers
from bench_profile import print_profile
from bench_servers import PY, describe, loadavg, server_command, valid_kind
from bench_step import HEADER, PROFILE_MARGIN_S, TALK_HEADER, fmt_row, fmt_talk_row, run_step
from bench_summary import print_summary, print_tables

FULL_STEPS = (10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 700)
QUICK_STEPS = (10, 50, 100)
TALK_STEPS = (20, 40, 60)
ALL_SERVERS = "engine,bare,websockets,picows"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run: N in 10, 50, 100; 5 s steps")
    p.add_argument("--row", choices=("echo", "talk"), default="echo", help="echo: the N_max sweep of echo servers (default); talk: the realistic agent (engine-talk) at --steps")
    p.add_argument("--provider", choices=("awaaz", "knowlarity"), default="awaaz", help="the calls' provider (default awaaz)")
    p.add_argument("--steps", help="comma-separated N values (default: %s; talk row %s)" % (",".join(map(str, FULL_STEPS)), ",".join(map(str, TALK_STEPS))))
    p.add_argument("--step-seconds", type=float, help="length of each step (default 9; 5 with --quick; 20 for the talk row)")
    p.add_argument("--ramp", type=float, default=2.0, help="spread call starts over this long (default 2 s)")
    p.add_argument("--p99-ms", type=float, help="round-trip p99 limit (default 20 ms on Awaaz, 220 ms on Knowlarity: its 200 ms clips)")
    p.add_argument("--jitter-buffer-ms", type=float, help="modelled provider playout buffer (default 40 ms)")
    p.add_argument("--generators", type=int, default=2, help="load generator processes per step, the calls split between them (default 2)")
    p.add_argument(
        "--pin", action="store_true",
        help="pin the server under test to the first CPU and the load generators to the others, so that the "
        "server never waits for a core the generators hold (it then measures the server, not the scheduler)",
    )
    p.add_argument("--servers", default="engine,bare", help=f"which servers to sweep: engine, bare (trio-websocket), websockets, picows, trio-floor, trio-floor3, baseline, engine-wN (the engine with --workers N); 'all' = {ALL_SERVERS} (default engine,bare)")
    p.add_argument("--baseline-tree", help="a checkout of another commit: its engine runs as the 'baseline' server, with this tree's load generator")
    p.add_argument("--runs", type=int, default=1, help="repeat the whole alternating sweep this many times and report the medians (default 1)")
    p.add_argument("--wait-quiet", type=float, default=10.0, help="before each step, wait up to this long for other processes to go under 25%% of a core (default 10 s; 0: never wait)")
    p.add_argument("--budget", type=float, default=540.0, help="in each run, stop starting steps after this many seconds (default 540)")
    p.add_argument("--no-refine", action="store_true", help="skip the midpoint step after the first failure")
    p.add_argument("--retries", type=int, default=0, help="run a failing step again up to this many times, for a machine shared with other work: it passes if one try does (default 0)")
    p.add_argument("--profile", type=int, metavar="N", help="also profile the servers (a 1 kHz CPU-clock sampler, steady window only) at N calls and print where their time goes")
    p.add_argument("--profile-only", action="store_true", help="skip the sweep (with --profile)")
    p.add_argument("--profile-out", default="/tmp/callengine-bench-{server}.json")
    p.add_argument("--json", metavar="PATH", help="also write every step's figures (per run) and the summary to this JSON file")
    args = p.parse_args()
    args.server_cpus = args.generator_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            p.error("--pin needs at least 2 CPUs")
        args.server_cpus, args.generator_cpus = {cpus[0]}, set(cpus[1:])
    talk = args.row == "talk"
    args.traffic = "talk" if talk else "echo"
    default_steps = TALK_STEPS if talk else (QUICK_STEPS if args.quick else FULL_STEPS)
    args.step_list = tuple(int(x) for x in args.steps.split(",")) if args.steps else default_steps
    if args.step_seconds is None:
        args.step_seconds = 20.0 if talk else (5.0 if args.quick else 9.0)
    if args.p99_ms is None:
        args.p99_ms = 220.0 if args.provider == "knowlarity" else 20.0
    if args.jitter_buffer_ms is None:
        args.jitter_buffer_ms = 40.0
    if args.quick:
        args.no_refine = True
    if args.runs < 1:
        p.error("--runs must be at least 1")
    servers = ALL_SERVERS if args.servers == "all" else args.servers
    args.server_list = ["engine-talk"] if talk else [s.strip() for s in servers.split(",") if s.strip()]
    for s in args.server_list:
        if not valid_kind(s):
            p.error(f"unknown server {s!r}")
    if "baseline" in args.server_list:
        if not args.baseline_tree:
            p.error("--servers baseline needs --baseline-tree")
        bench_servers.BASELINE_TREE = Path(args.baseline_tree).resolve()
    if max(args.step_list) > 2000:
        p.error("the load generator carries at most 2000 calls")
    return args


def print_header(args) -> None:
    import trio
    import trio_websocket
    import wsproto

    versions = f"trio {trio.__version__}, trio-websocket {trio_websocket.__version__}, wsproto {wsproto.__version__}"
    for name in ("websockets", "picows"):
        if name in args.server_list:
            module = __import__(name)
            versions += f", {name} {getattr(module, '__version__', '?')}"
    print("command: " + " ".join([Path(PY).name, *sys.argv]))
    print(
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}; "
        f"Python {platform.python_version()}, {versions}; load average at start {loadavg()}"
    )
    ramp = min(args.ramp, args.step_seconds / 2)
    steps = f"steps: N in {', '.join(map(str, args.step_list))}; {args.step_seconds:g} s each (ramp {ramp:g} s); provider {args.provider}"
    if args.traffic == "talk":
        print(steps + "; traffic talk (callengine/testing/_talk.py); pass: every call up, no engine underrun, no drop")
    else:
        print(
            steps + f"; pass: p99 round trip < {args.p99_ms:g} ms, no drops, no underruns (jitter buffer "
            f"{args.jitter_buffer_ms:g} ms), every call up" + (f"; {args.runs} runs" if args.runs > 1 else "")
        )
    if args.pin:
        print(f"pinned: the server under test on CPU {sorted(args.server_cpus)}, the load generators on CPU {sorted(args.generator_cpus)}")
    for kind in args.server_list:
        print(f"{kind + ':':<12}" + " ".join(server_command(kind, 0, args.provider)[1:]).replace("--port 0", "--port P"))


def sweep(args, t_start: float, run: int | None) -> dict[str, list[dict]]:
    """One alternating N_max sweep of every server (echo row)."""
    servers = args.server_list
    results: dict[str, list[dict]] = {s: [] for s in servers}
    failed_at: dict[str, int | None] = {s: None for s in servers}
    out_of_time = False
    tag = f"run {run} " if run is not None else ""

    def over_budget() -> bool:
        return time.monotonic() - t_start > args.budget

    def show(kind, step, note=""):
        print(f"  [{time.monotonic() - t_start:5.0f} s] {tag}{kind:<10} {fmt_row(step)}{note}", flush=True)

    for i, n in enumerate(args.step_list):
        order = servers if i % 2 == 0 else servers[::-1]
        for kind in order:
            if failed_at[kind] is not None:
                continue
            if over_budget():
                out_of_time = True
                break
            for attempt in range(args.retries + 1):
                step = run_step(kind, n, args)
                results[kind].append(step)
                show(kind, step, "  (again)" if attempt else "")
                if step["passed"] or over_budget():
                    break
            if not step["passed"]:
                failed_at[kind] = n
        if all(failed_at[s] is not None for s in servers) or out_of_time:
            break
    if not args.no_refine:  # one midpoint between the last pass and the first failure
        for kind in servers:
            fail = failed_at[kind]
            passes = [s["calls"] for s in results[kind] if s["passed"]]
            last = max(passes) if passes else 0
            if fail is None or not last or fail - last < max(10, 0.15 * last) or over_budget():
                continue
            step = run_step(kind, int(round((last + fail) / 2 / 5) * 5), args)
            results[kind].append(step)
            show(kind, step, "  (midpoint)")
    return results


def talk_row(args, t_start: float) -> dict:
    """The talk row: engine-talk at each N, every run; the median CPU per call-second per N."""
    runs: list[list[dict]] = []
    for run in range(1, args.runs + 1):
        rows = []
        for n in args.step_list:
            rows.append(run_step("engine-talk", n, args))
            print(f"  [{time.monotonic() - t_start:5.0f} s] run {run} engine-talk {rows[-1]['calls']:>4} calls: "
                  f"{rows[-1]['cpu_ms_per_call_s']:.2f} ms/cs", flush=True)
        runs.append(rows)
    print(f"\nengine-talk ({describe('engine-talk', args.provider)}; caller: callengine load --traffic talk)")
    print(TALK_HEADER)
    for i, rows in enumerate(runs, 1):
        if args.runs > 1:
            print(f"  run {i}")
        for s in rows:
            print(fmt_talk_row(s))
    medians = {}
    for n in args.step_list:
        values = [s["cpu_ms_per_call_s"] for rows in runs for s in rows if s["calls"] == n]
        rss = [s["rss_per_call_kb"] for rows in runs for s in rows if s["calls"] == n]
        medians[str(n)] = {"cpu_ms_per_call_s": statistics.median(values), "rss_per_call_kb": statistics.median(rss)}
    print("\nsummary (talk row" + (f", medians over {args.runs} runs" if args.runs > 1 else "") + "): " + "; ".join(
        f"N={n}: {m['cpu_ms_per_call_s']:.2f} ms CPU per call-second, {m['rss_per_call_kb']:.0f} KiB per call" for n, m in medians.items()
    ))
    passed = all(s["passed"] for rows in runs for s in rows)
    print(f"  every step {'passed' if passed else 'did NOT pass'} (every call up, no engine underrun, no drop)")
    return {"runs": runs, "median": medians}


def main() -> int:
    args = parse_args()
    t_start = time.monotonic()
    print_header(args)
    out: dict = {"args": {k: v for k, v in vars(args).items() if k not in ("server_cpus", "generator_cpus")}}
    if args.traffic == "talk" and not args.profile_only:
        out["talk"] = talk_row(args, t_start)
    elif not args.profile_only:
        all_runs = []
        for run in range(1, args.runs + 1):
            results = sweep(args, time.monotonic(), run if args.runs > 1 else None)
            all_runs.append(results)
            print_tables(results, args.provider, run if args.runs > 1 else None)
        out["steps_per_run"] = all_runs
        out["summary"] = print_summary(all_runs, bench_servers.BASELINE_TREE)
    print(f"  load average at end {loadavg()}; wall {time.monotonic() - t_start:.0f} s")

    if args.profile:
        ramp = min(args.ramp, args.step_seconds / 2)
        for kind in args.server_list:
            path = args.profile_out.format(server=kind)
            Path(path).unlink(missing_ok=True)
            print(f"\nprofile of the {kind} server at {args.profile} calls (sampling at 1 kHz of its CPU time, steady window only)")
            step = run_step(kind, args.profile, args, profile=path)
            print(TALK_HEADER if args.traffic == "talk" else HEADER)
            print(fmt_talk_row(step) if args.traffic == "talk" else fmt_row(step))
            out.setdefault("profile", {})[kind] = step
            if Path(path).exists():
                window = args.step_seconds - ramp - PROFILE_MARGIN_S
                print_profile(path, step["cpu_ms_per_call_s"] * 1000 / 50, window)
            else:
                print("  no profile written (the server did not exit cleanly)")

    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
