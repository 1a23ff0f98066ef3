#!/usr/bin/env python
"""How many concurrent calls one engine process carries, next to a bare trio-websocket echo.

Sweeps N concurrent Awaaz echo calls against two servers, each in its own process, in the
same run, alternating at every step:

* engine: ``callengine serve callengine.agents.echo --agent-rate 8000 --no-barge-in``
  (agent rate = wire rate, so the echo path has no resampler and the round trip is the
  engine's own work: WebSocket, codec, queues, the four call tasks, pacing, ledger, VAD);
* bare: ``scripts/bare_echo_server.py`` (parse, base64-decode, WAV-wrap, re-encode, send
  back; nothing else).

Each step starts a fresh server process, runs ``callengine load`` (``--generators``
processes, 2 by default, the N calls split between them; their percentiles are merged from
2 %-wide histograms) for ``--step-seconds`` (calls ramp up over ``--ramp`` seconds;
statistics cover the steady state after the ramp), samples the server's CPU (utime+stime
from /proc/PID/stat) and RSS (VmRSS from /proc/PID/status) every 0.2 s, and stops the
server. Both servers run with the same garbage-collector settings
(callengine.cli.tune_gc_for_serving). The CPU the load generators and any other process
on the machine used over the same window is printed beside it ("gen CPU", "others CPU"):
the generators cost about as much per call as the bare server, so on two cores the bare
server's N_max is usually where the generators saturate, not where it does.

Columns: rtt = round trip (provider send -> echoed audio back), jit99 = p99 of the outbound
pacing jitter, under = modelled underruns, fail = handshake failures + calls cut short,
server CPU = fraction of one core, ms/cs = server CPU milliseconds per call-second (one
call-second = 50 frames echoed), late99 = p99 of the generators' own lateness.

A step passes when every call connected and stayed up, the round trip p99 is under
``--p99-ms`` (20 ms), no frame was dropped and the modelled caller heard no underrun (see
callengine/testing/load.py for the playout model). Per server, N_max is the largest N that
passed with every smaller step passing too; after the first failure one midpoint is tried.

Definitions printed in the summary:

* CPU = server CPU seconds / wall seconds over the steady window (1.00 = one core busy).
* calls per core = N_max / CPU at N_max: how many such calls one fully used core would
  carry at the per-call cost measured at N_max. It normalises away what the server could
  not use because it shares two cores with the load generator (and with anything else
  running on the machine).
* ratio = engine calls per core / bare calls per core (the target is >= 0.6). Because the
  bare server's N_max on two shared cores is often set by the load generators rather than
  by the server, the summary also compares CPU per call at each N both servers carried
  (bare ms / engine ms = the same ratio, measured at equal load).
* RSS per call = (peak RSS during the step - RSS of the idle server before it) / N.

    python scripts/bench_capacity.py            # full sweep, under 10 minutes on 2 cores
    python scripts/bench_capacity.py --quick    # a short sanity run (~1 minute)
    python scripts/bench_capacity.py --profile 50    # also profile both servers at 50 calls
    python scripts/bench_capacity.py --pin           # server on CPU 0, load generators on the rest
    python scripts/bench_capacity.py --servers engine,baseline --baseline-tree /tmp/old
                                                     # this tree's engine against another checkout's
    python scripts/bench_capacity.py --servers engine,engine-w2
                                                     # one process against `serve --workers 2`

``engine-wN`` is the engine command with ``--workers N``: its CPU and RSS are those of the
supervisor and its workers together (the process tree, as it was once every worker listened).

By default the three processes share the two cores as the scheduler pleases, so a step can
fail because the server waited for a core a load generator held. ``--pin`` gives the server
under test a core of its own (both servers alike); its N_max is then where the server's own
core runs out, or where the generators on the other core do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL_STEPS = (10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 700)
QUICK_STEPS = (10, 50, 100)


# --- /proc --------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a scan of /proc: the children files may be absent)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def tree_cpu_s(pids: list[int]) -> float | None:
    values = [proc_cpu_s(p) for p in pids]
    return None if values[0] is None else sum(v for v in values if v is not None)


def tree_rss_kb(pids: list[int]) -> int | None:
    values = [proc_rss_kb(p) for p in pids]
    return None if values[0] is None else sum(v for v in values if v is not None)


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def others_cpu(seconds: float = 1.0) -> float:
    """CPU (in cores) used by processes other than this one over ``seconds``."""
    b0, c0 = machine_busy_s(), proc_cpu_s(os.getpid())
    time.sleep(seconds)
    b1, c1 = machine_busy_s(), proc_cpu_s(os.getpid())
    if None in (b0, b1, c0, c1):
        return 0.0
    return max(0.0, (b1 - b0) - (c1 - c0)) / seconds


def wait_quiet(max_wait: float, limit: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``limit`` of a core;
    return what they used in the last second."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = others_cpu(1.0)
        if busy < limit or time.monotonic() >= deadline:
            return busy


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers ------------------------------------------------------------------------------


def server_command(kind: str, port: int, profile: str | None = None) -> list[str]:
    bare = [str(ROOT / "scripts" / "bare_echo_server.py"), "--port", str(port)]
    serve = [
        "serve", "callengine.agents.echo", "--agent-rate", "8000", "--port", str(port), "--no-barge-in",
        "--log-level", "warning", "--max-calls", "2000", "--drain-grace", "2",
    ]
    if profile:
        run = (
            f"sys.argv = {bare!r}\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            if kind == "bare"
            else f"from callengine.cli import main\ntry:\n    main({serve!r})\n"
        )
        code = SAMPLER + run + f"finally:\n    dump({profile!r})\n"
        return [PY, "-c", code]
    if kind == "bare":
        return [PY, *bare]
    if kind.startswith("engine-w"):
        serve += ["--workers", kind[len("engine-w") :]]
    return [PY, "-m", "callengine", *serve]


# A statistical profiler on the process's CPU clock (ITIMER_PROF, 1 kHz): each SIGPROF
# records the Python stack the main thread is executing. Far lighter than cProfile (which
# slows a trio server several-fold and so changes what it measures); time in C (numpy, the
# socket calls) is charged to the Python function that called it.
SAMPLER = """\
import collections, json, runpy, signal, sys
_self = collections.Counter()
_cum = collections.Counter()
_n = [0]
def _sample(signum, frame):
    _n[0] += 1
    seen = set()
    first = True
    while frame is not None:
        code = frame.f_code
        key = f"{code.co_filename}:{code.co_firstlineno}({code.co_name})"
        if first:
            _self[key] += 1
            first = False
        if key not in seen:
            seen.add(key)
            _cum[key] += 1
        frame = frame.f_back
def dump(path):
    signal.setitimer(signal.ITIMER_PROF, 0)
    with open(path, "w") as f:
        json.dump({"samples": _n[0], "interval_s": 0.001, "self": _self, "cumulative": _cum}, f)
signal.signal(signal.SIGPROF, _sample)
signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
"""


def pinned_to(cpus: set[int] | None):
    """A preexec_fn that pins the child process to ``cpus`` (None: no pinning)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


#: another checkout whose engine runs as the "baseline" server (--baseline-tree)
BASELINE_TREE: Path | None = None


def start_server(kind: str, port: int, profile: str | None = None, cpus: set[int] | None = None) -> subprocess.Popen:
    cwd, env = ROOT, None
    if kind == "baseline":
        assert BASELINE_TREE is not None
        # the same command, importing callengine from the other checkout
        cwd, env = BASELINE_TREE, dict(os.environ, PYTHONPATH=str(BASELINE_TREE))
    proc = subprocess.Popen(
        server_command(kind, port, profile), cwd=cwd, env=env, stdout=subprocess.PIPE if kind != "bare" else subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, preexec_fn=pinned_to(cpus),
    )
    deadline = time.monotonic() + 20
    if proc.stdout is not None:
        # the engine's one listening line: with --workers, printed once every worker listens
        import select

        ready, _, _ = select.select([proc.stdout], [], [], 20)
        if not ready or "listening" not in proc.stdout.readline():
            stop_server(proc)
            raise RuntimeError(f"{kind} server printed no listening line: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited at start: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"{kind} server did not listen on {port} within 20 s")


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    err = proc.stderr.read() if proc.stderr else ""
    return err


# --- one step -----------------------------------------------------------------------------


def _interp(samples: list[tuple[float, float]], t: float) -> float:
    """Cumulative value at time t, linearly interpolated between samples."""
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def merge_results(results: list[dict]) -> dict:
    """One result from those of several generator processes (sums; merged percentiles)."""
    from callengine.testing.load import Stats

    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    for key, value in results[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in (
            "seconds", "ramp", "warmup", "jitter_buffer_ms", "wall_s", "window_start_unix", "window_end_unix",
            "loadgen_cpu_fraction",
        ):
            out[key] = sum(r[key] for r in results)
        elif isinstance(value, dict) and "hist" not in value:
            merged: dict = {}
            for r in results:
                for k, v in r[key].items():
                    merged[k] = merged.get(k, 0) + v
            out[key] = merged
    for key in ("round_trip", "pacing_jitter", "send_late"):
        import attrs

        out[key] = attrs.asdict(Stats.merge([r[key] for r in results]))
    out["wall_s"] = max(r["wall_s"] for r in results)
    out["window_start_unix"] = max(r["window_start_unix"] for r in results)
    out["window_end_unix"] = min(r["window_end_unix"] for r in results)
    out["first_error"] = next((r["first_error"] for r in results if r.get("first_error")), None)
    return out


def run_step(kind: str, n: int, args, profile: str | None = None) -> dict:
    others_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else float("nan")
    port = free_port()
    server = start_server(kind, port, profile, args.server_cpus)
    k = max(1, min(args.generators, n))
    try:
        time.sleep(0.3)
        tree = tree_pids(server.pid)  # the server, and its workers if it has any
        idle_rss = tree_rss_kb(tree) or 0
        loads = []
        for i in range(k):
            calls = n // k + (1 if i < n % k else 0)
            cmd = [
                PY, "-m", "callengine", "load", f"ws://127.0.0.1:{port}/awaaz", "--provider", "awaaz",
                "--calls", str(calls), "--seconds", str(args.step_seconds), "--ramp", str(min(args.ramp, args.step_seconds / 2)),
                "--jitter-buffer-ms", str(args.jitter_buffer_ms), "--json",
            ]
            loads.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    preexec_fn=pinned_to(args.generator_cpus),
                )
            )
        cpu_samples: list[tuple[float, float]] = []
        gen_samples: list[tuple[float, float]] = []
        all_samples: list[tuple[float, float]] = []
        bench_samples: list[tuple[float, float]] = []
        peak_rss = idle_rss
        deadline = time.monotonic() + args.step_seconds + 40
        while any(load.poll() is None for load in loads):
            now = time.time()
            c = tree_cpu_s(tree)
            g = [proc_cpu_s(load.pid) for load in loads]
            r = tree_rss_kb(tree)
            m = machine_busy_s()
            b = proc_cpu_s(os.getpid())
            if m is not None and b is not None:
                all_samples.append((now, m))
                bench_samples.append((now, b))
            if c is not None:
                cpu_samples.append((now, c))
            if None not in g:
                gen_samples.append((now, sum(g)))  # type: ignore[arg-type]
            if r is not None:
                peak_rss = max(peak_rss, r)
            if time.monotonic() > deadline:
                for load in loads:
                    load.kill()
                break
            time.sleep(0.2)
        results = []
        for load in loads:
            out, err = load.communicate(timeout=10)
            try:
                results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise RuntimeError(f"load generator failed (rc {load.returncode}): {err[-2000:]}") from None
        result = merge_results(results)
        w0, w1 = result["window_start_unix"], result["window_end_unix"]
        span = max(w1 - w0, 1e-9)
        cpu = (_interp(cpu_samples, w1) - _interp(cpu_samples, w0)) / span if cpu_samples else float("nan")
        gen = (_interp(gen_samples, w1) - _interp(gen_samples, w0)) / span if len(gen_samples) > 1 else float("nan")
        others = float("nan")
        if all_samples:
            machine = (_interp(all_samples, w1) - _interp(all_samples, w0)) / span
            mine = (_interp(bench_samples, w1) - _interp(bench_samples, w0)) / span
            others = max(0.0, machine - cpu - gen - mine)
    finally:
        server_err = stop_server(server)
    rtt = result["round_trip"]
    passed = (
        result["handshakes_failed"] == 0
        and result["calls_cut"] == 0
        and result["protocol_errors"] == 0
        and result["frames_dropped"] == 0
        and result["calls_with_long_tail"] == 0
        and result["underruns"] == 0
        and rtt["count"] > 0
        and rtt["p99"] < args.p99_ms
    )
    return {
        "server": kind,
        "calls": n,
        "passed": passed,
        "cpu": cpu,
        "cpu_ms_per_call_s": 1000 * cpu / n if n else float("nan"),
        "idle_rss_kb": idle_rss,
        "peak_rss_kb": peak_rss,
        "rss_per_call_kb": (peak_rss - idle_rss) / n,
        "gen_cpu": gen,
        "generators": k,
        "others_cpu": others,
        "others_before": others_before,
        "loadavg": loadavg(),
        "server_errors": [line for line in server_err.splitlines() if "ERROR" in line][:3],
        "load": result,
    }


def fmt_row(s: dict) -> str:
    r = s["load"]
    rt, jit, late = r["round_trip"], r["pacing_jitter"], r["send_late"]
    fails = r["handshakes_failed"] + r["calls_cut"]
    return (
        f"{s['calls']:>5}  {'pass' if s['passed'] else 'FAIL':<4}  {rt['p50']:7.2f} {rt['p99']:7.2f} {rt['max']:8.2f}  "
        f"{jit['p99']:6.2f}  {r['underruns']:>5}  {r['frames_dropped']:>6}  {fails:>4}  "
        f"{100 * s['cpu']:5.1f}%  {s['cpu_ms_per_call_s']:6.2f}  "
        f"{s['idle_rss_kb'] / 1024:6.1f} {s['peak_rss_kb'] / 1024:7.1f}  {100 * s['gen_cpu']:5.1f}% {late['p99']:7.2f}  {100 * s['others_cpu']:5.1f}%"
    )


HEADER = (
    "    N  ok    rtt p50     p99      max  jit99  under  dropped fail  server  ms/cs  "
    "rss idle   peak  gen CPU  late99  others\n"
    "                  (ms)                 (ms)                          CPU            (MiB)               (ms)    CPU"
)


# --- profile ------------------------------------------------------------------------------


def _short(key: str) -> str:
    short = key.replace(str(ROOT) + "/", "")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return short


def _area(key: str) -> str:
    filename = key.rsplit(":", 1)[0]
    if "callengine/" in filename:
        return "callengine/" + filename.split("callengine/", 1)[1]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/")[0]
    if "bare_echo_server" in filename:
        return "scripts/bare_echo_server.py"
    return "stdlib " + Path(filename).name


def print_profile(path: str, us_per_frame: float, top: int = 25) -> None:
    """Shares of the samples, and the same shares of the CPU per echoed frame measured from
    /proc (signals that arrive during a system call are merged and charged to the Python
    code that runs next, so sample counts undercount; their proportions are what counts)."""
    data = json.loads(Path(path).read_text())
    n = data["samples"]
    if not n:
        print("  no samples")
        return
    per_frame = us_per_frame / n
    print(f"  {n} samples; {us_per_frame:.0f} us of server CPU per echoed frame (from /proc), shared out below")
    print("\n  self time by area (a function's own Python code and the C calls it makes):")
    areas: dict[str, int] = {}
    for key, c in data["self"].items():
        areas[_area(key)] = areas.get(_area(key), 0) + c
    for area, c in sorted(areas.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {100 * c / n:5.1f}%  {c * per_frame:6.1f} us/frame  {area}")
    print(f"\n  top {top} functions by self time:")
    for key, c in sorted(data["self"].items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * c / n:5.1f}%  {c * per_frame:6.1f} us/frame  {_short(key)}")
    print("\n  top functions by cumulative time (callengine and the WebSocket layer):")
    shown = 0
    for key, c in sorted(data["cumulative"].items(), key=lambda kv: -kv[1]):
        if not any(m in key for m in ("callengine/", "trio_websocket/", "wsproto/", "bare_echo_server")):
            continue
        print(f"  {100 * c / n:5.1f}%  {c * per_frame:6.1f} us/frame  {_short(key)}")
        shown += 1
        if shown >= top:
            break


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run: N in 10, 50, 100; 5 s steps")
    p.add_argument("--steps", help="comma-separated N values (default: %s)" % ",".join(map(str, FULL_STEPS)))
    p.add_argument("--step-seconds", type=float, help="length of each step (default 9; 5 with --quick)")
    p.add_argument("--ramp", type=float, default=2.0, help="spread call starts over this long (default 2 s)")
    p.add_argument("--p99-ms", type=float, default=20.0, help="round-trip p99 limit (default 20 ms)")
    p.add_argument("--jitter-buffer-ms", type=float, default=40.0, help="modelled provider playout buffer (default 40)")
    p.add_argument("--generators", type=int, default=2, help="load generator processes per step, the calls split between them (default 2)")
    p.add_argument(
        "--pin", action="store_true",
        help="pin the server under test to the first CPU and the load generators to the others, so that the "
        "server never waits for a core the generators hold (it then measures the server, not the scheduler)",
    )
    p.add_argument("--servers", default="engine,bare", help="which servers to sweep: engine, bare, baseline, engine-wN (the engine with --workers N) (default engine,bare)")
    p.add_argument("--baseline-tree", help="a checkout of another commit: its engine runs as the 'baseline' server, with this tree's load generator")
    p.add_argument("--wait-quiet", type=float, default=10.0, help="before each step, wait up to this long for other processes to go under 25%% of a core (default 10 s; 0: never wait)")
    p.add_argument("--budget", type=float, default=540.0, help="stop starting steps after this many seconds (default 540)")
    p.add_argument("--no-refine", action="store_true", help="skip the midpoint step after the first failure")
    p.add_argument("--retries", type=int, default=0, help="run a failing step again up to this many times, for a machine shared with other work: it passes if one try does (default 0)")
    p.add_argument("--profile", type=int, metavar="N", help="also profile the servers (a 1 kHz CPU-clock sampler) at N calls and print where their time goes")
    p.add_argument("--profile-only", action="store_true", help="skip the sweep (with --profile)")
    p.add_argument("--profile-out", default="/tmp/callengine-bench-{server}.json")
    p.add_argument("--json", metavar="PATH", help="also write every step's figures to this JSON file")
    args = p.parse_args()
    args.server_cpus = args.generator_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            p.error("--pin needs at least 2 CPUs")
        args.server_cpus, args.generator_cpus = {cpus[0]}, set(cpus[1:])
    steps = tuple(int(x) for x in args.steps.split(",")) if args.steps else (QUICK_STEPS if args.quick else FULL_STEPS)
    if args.step_seconds is None:
        args.step_seconds = 5.0 if args.quick else 9.0
    if args.quick:
        args.no_refine = True
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in ("engine", "bare", "baseline") and not (s.startswith("engine-w") and s[len("engine-w") :].isdigit()):
            p.error(f"unknown server {s!r}")
    if "baseline" in servers:
        if not args.baseline_tree:
            p.error("--servers baseline needs --baseline-tree")
        global BASELINE_TREE
        BASELINE_TREE = Path(args.baseline_tree).resolve()
    if max(steps) > 2000:
        p.error("the load generator carries at most 2000 calls")

    import trio
    import trio_websocket
    import wsproto

    t_start = time.monotonic()
    print("command: " + " ".join([Path(PY).name, *sys.argv]))
    print(
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}; "
        f"Python {platform.python_version()}, trio {trio.__version__}, trio-websocket {trio_websocket.__version__}, "
        f"wsproto {wsproto.__version__}; load average at start {loadavg()}"
    )
    print(
        f"steps: N in {', '.join(map(str, steps))}; {args.step_seconds:g} s each (ramp {min(args.ramp, args.step_seconds / 2):g} s); "
        f"pass: p99 round trip < {args.p99_ms:g} ms, no drops, no underruns (jitter buffer {args.jitter_buffer_ms:g} ms), "
        "every call up"
    )
    if args.pin:
        print(f"pinned: the server under test on CPU {sorted(args.server_cpus)}, the load generators on CPU {sorted(args.generator_cpus)}")
    print("engine: " + " ".join(server_command("engine", 0)[1:]).replace("--port 0", "--port P"))
    print("bare:   " + " ".join(server_command("bare", 0)[1:]).replace("--port 0", "--port P"))

    results: dict[str, list[dict]] = {s: [] for s in servers}
    failed_at: dict[str, int | None] = {s: None for s in servers}
    out_of_time = False

    def over_budget() -> bool:
        return time.monotonic() - t_start > args.budget

    if not args.profile_only:
        for i, n in enumerate(steps):
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
                    print(f"  [{time.monotonic() - t_start:5.0f} s] {kind:<6} {fmt_row(step)}{'  (again)' if attempt else ''}", flush=True)
                    if step["passed"] or over_budget():
                        break
                if not step["passed"]:
                    failed_at[kind] = n
            if all(failed_at[s] is not None for s in servers) or out_of_time:
                break
        # one midpoint between the last pass and the first failure
        if not args.no_refine:
            for kind in servers:
                fail = failed_at[kind]
                passes = [s["calls"] for s in results[kind] if s["passed"]]
                last = max(passes) if passes else 0
                if fail is None or not last or fail - last < max(10, 0.15 * last) or over_budget():
                    continue
                mid = int(round((last + fail) / 2 / 5) * 5)
                step = run_step(kind, mid, args)
                results[kind].append(step)
                print(f"  [{time.monotonic() - t_start:5.0f} s] {kind:<6} {fmt_row(step)}  (midpoint)", flush=True)

    summary: dict[str, dict] = {}
    for kind in servers:
        rows = sorted(results[kind], key=lambda s: s["calls"])
        if not rows:
            continue
        described = {"engine": "callengine serve echo, agent rate 8000", "baseline": f"the same, from {BASELINE_TREE}", "bare": "scripts/bare_echo_server.py"}
        print(f"\n{kind} server ({described.get(kind, 'callengine serve echo, agent rate 8000, --workers ' + kind[len('engine-w'):])})")
        print(HEADER)
        for s in rows:
            print(fmt_row(s))
        carried = {s["calls"] for s in rows if s["passed"]}  # with --retries: one try passed
        first_fail = min((s["calls"] for s in rows if s["calls"] not in carried), default=None)
        ok_rows = [s for s in rows if s["passed"] and (first_fail is None or s["calls"] < first_fail)]
        if not ok_rows:
            summary[kind] = {"n_max": 0}
            continue
        best = max(ok_rows, key=lambda s: s["calls"])
        summary[kind] = {
            "n_max": best["calls"],
            "capped_by_steps": first_fail is None,
            "cpu_at_n_max": best["cpu"],
            "calls_per_core": best["calls"] / best["cpu"] if best["cpu"] > 0 else float("nan"),
            "cpu_ms_per_call_s": best["cpu_ms_per_call_s"],
            "rss_per_call_kb": best["rss_per_call_kb"],
            "gen_cpu_at_n_max": best["gen_cpu"],
            "first_fail": first_fail,
        }

    print("\nsummary")
    for kind, s in summary.items():
        if not s.get("n_max"):
            print(f"  {kind:<6} carried no step")
            continue
        more = " (the sweep's largest step: the real limit is higher)" if s["capped_by_steps"] else f" (failed at {s['first_fail']})"
        print(
            f"  {kind:<6} N_max {s['n_max']}{more}; CPU at N_max {100 * s['cpu_at_n_max']:.0f}% of one core "
            f"= {s['cpu_ms_per_call_s']:.2f} ms CPU per call-second; calls per core {s['calls_per_core']:.0f}; "
            f"RSS per call {s['rss_per_call_kb']:.0f} KiB; load generators at {100 * s['gen_cpu_at_n_max']:.0f}% of a core in all"
        )
    if "engine" in summary and "bare" in summary and summary["engine"].get("n_max") and summary["bare"].get("n_max"):
        e, b = summary["engine"], summary["bare"]
        ratio = e["calls_per_core"] / b["calls_per_core"]
        print(
            f"  engine / bare: calls per core {e['calls_per_core']:.0f} / {b['calls_per_core']:.0f} = {ratio:.2f} "
            f"(target >= 0.6: {'met' if ratio >= 0.6 else 'NOT met'}); N_max {e['n_max']} / {b['n_max']} = {e['n_max'] / b['n_max']:.2f}"
        )
        summary["ratio_calls_per_core"] = {"value": ratio}
        # the same comparison at equal load: CPU per call at every N that both carried
        both = sorted(
            {s["calls"] for s in results["engine"] if s["passed"]} & {s["calls"] for s in results["bare"] if s["passed"]}
        )
        if both:
            pairs = []
            for n in both:
                ec = min(s["cpu_ms_per_call_s"] for s in results["engine"] if s["calls"] == n and s["passed"])
                bc = min(s["cpu_ms_per_call_s"] for s in results["bare"] if s["calls"] == n and s["passed"])
                pairs.append((n, ec, bc))
            print(
                "  at equal load (CPU per call-second, engine vs bare; bare/engine = the engine's share of the bare "
                "server's calls per core): "
                + "; ".join(f"N={n}: {ec:.2f} vs {bc:.2f} ms = {bc / ec:.2f}" for n, ec, bc in pairs)
            )
            summary["ratio_at_equal_load"] = {str(n): bc / ec for n, ec, bc in pairs}
    if "engine" in results and "baseline" in results:
        both = sorted(
            {s["calls"] for s in results["engine"] if s["passed"]} & {s["calls"] for s in results["baseline"] if s["passed"]}
        )
        pairs = []
        for n in both:
            ec = min(s["cpu_ms_per_call_s"] for s in results["engine"] if s["calls"] == n and s["passed"])
            oc = min(s["cpu_ms_per_call_s"] for s in results["baseline"] if s["calls"] == n and s["passed"])
            pairs.append((n, ec, oc))
        if pairs:
            print(
                f"  engine vs baseline ({BASELINE_TREE}) at equal load, CPU per call-second (baseline/engine > 1: this tree is cheaper): "
                + "; ".join(f"N={n}: {ec:.2f} vs {oc:.2f} ms = {oc / ec:.2f}" for n, ec, oc in pairs)
            )
            summary["engine_vs_baseline_at_equal_load"] = {str(n): oc / ec for n, ec, oc in pairs}
    for kind in [k for k in results if k.startswith("engine-w")]:
        if "engine" not in results or not summary.get(kind, {}).get("n_max") or not summary.get("engine", {}).get("n_max"):
            continue
        w, e = summary[kind], summary["engine"]
        both = sorted({s["calls"] for s in results["engine"] if s["passed"]} & {s["calls"] for s in results[kind] if s["passed"]})
        equal = "; ".join(
            f"N={n}: {min(s['cpu_ms_per_call_s'] for s in results['engine'] if s['calls'] == n and s['passed']):.2f} vs "
            f"{min(s['cpu_ms_per_call_s'] for s in results[kind] if s['calls'] == n and s['passed']):.2f} ms"
            for n in both
        )
        print(f"  engine / {kind}: N_max {e['n_max']} / {w['n_max']} = {w['n_max'] / e['n_max']:.2f}x with {kind[len('engine-w'):]} workers; CPU per call-second at equal load, 1 process vs workers: {equal}")
    gen_busy = [s for rows in results.values() for s in rows if not s["passed"] and s["gen_cpu"] / s["generators"] > 0.85]
    if gen_busy:
        print(
            "  note: the load generators were above 85% of a core each at a failing step "
            f"({', '.join(str(s['server']) + '@' + str(s['calls']) for s in gen_busy)}); those failures may be partly its own"
        )
    print(f"  load average at end {loadavg()}; wall {time.monotonic() - t_start:.0f} s")

    if args.profile:
        for kind in servers:
            out = args.profile_out.format(server=kind)
            Path(out).unlink(missing_ok=True)
            print(f"\nprofile of the {kind} server at {args.profile} calls (sampling at 1 kHz of its CPU time)")
            step = run_step(kind, args.profile, args, profile=out)
            print(HEADER)
            print(fmt_row(step))
            if Path(out).exists():
                print_profile(out, step["cpu_ms_per_call_s"] * 1000 / 50)
            else:
                print("  no profile written (the server did not exit cleanly)")

    if args.json:
        Path(args.json).write_text(json.dumps({"steps": results, "summary": summary}, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
