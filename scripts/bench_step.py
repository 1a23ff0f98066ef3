"""One step of bench_capacity.py: a fresh server, N calls of ``callengine load`` against it
for ``--step-seconds``, the server's CPU and RSS sampled from /proc over the load
generators' steady window, and the row printed for it.

With ``--row talk`` the load is ``callengine load --traffic talk`` against ``engine-talk``
(scripts/bench_agent.py); the step then also reads the engine's counters (``GET /metrics``:
underruns, starved, drops, barge-ins, marks, DTMF) and what the agent saw
(``BENCH_AGENT_STATS``: barge-ins, keys, marks reached) before stopping the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench_servers import (
    PY,
    ROOT,
    free_port,
    loadavg,
    machine_busy_s,
    pinned_to,
    proc_cpu_s,
    scrape_metrics,
    start_server,
    stop_server,
    tree_cpu_s,
    tree_pids,
    tree_rss_kb,
    wait_quiet,
)

#: how long after the load generators are started the profiler starts counting, beyond the
#: ramp: their own start-up (imports) before their clock's zero, with room to spare
PROFILE_MARGIN_S = 1.5


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
    import attrs

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
        out[key] = attrs.asdict(Stats.merge([r[key] for r in results]))
    out["wall_s"] = max(r["wall_s"] for r in results)
    out["window_start_unix"] = max(r["window_start_unix"] for r in results)
    out["window_end_unix"] = min(r["window_end_unix"] for r in results)
    out["first_error"] = next((r["first_error"] for r in results if r.get("first_error")), None)
    return out


def run_step(kind: str, n: int, args, profile: str | None = None) -> dict:
    """``args``: provider, traffic ("echo" or "talk"), step_seconds, ramp, generators,
    jitter_buffer_ms, p99_ms, wait_quiet, server_cpus, generator_cpus."""
    others_before = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else float("nan")
    port = free_port()
    talk = args.traffic == "talk"
    agent_stats = None
    env_extra = {}
    if talk:
        fd, agent_stats = tempfile.mkstemp(prefix="callengine-bench-agent-", suffix=".json")
        os.close(fd)
        env_extra["BENCH_AGENT_STATS"] = agent_stats
    server = start_server(kind, port, args.provider, profile, args.server_cpus, env_extra)
    k = max(1, min(args.generators, n))
    ramp = min(args.ramp, args.step_seconds / 2)
    metrics: dict[str, float] = {}
    try:
        time.sleep(0.3)
        tree = tree_pids(server.pid)  # the server, and its workers if it has any
        idle_rss = tree_rss_kb(tree) or 0
        loads = []
        spawned = time.monotonic()
        for i in range(k):
            calls = n // k + (1 if i < n % k else 0)
            cmd = [
                PY, "-m", "callengine", "load", f"ws://127.0.0.1:{port}/{args.provider}", "--provider", args.provider,
                "--calls", str(calls), "--seconds", str(args.step_seconds), "--ramp", str(ramp),
                "--jitter-buffer-ms", str(args.jitter_buffer_ms), "--json",
            ]
            if talk:
                cmd += ["--traffic", "talk"]
            loads.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    preexec_fn=pinned_to(args.generator_cpus),
                )
            )
        # the profiler's window: from the ramp's end (plus the generators' start-up) to the end of streaming
        gates = [spawned + ramp + PROFILE_MARGIN_S, spawned + args.step_seconds] if profile else []
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
            while gates and time.monotonic() >= gates[0]:
                gates.pop(0)
                server.send_signal(signal.SIGUSR2)
            if time.monotonic() > deadline:
                for load in loads:
                    load.kill()
                break
            time.sleep(0.2 if not gates else max(0.01, min(0.2, gates[0] - time.monotonic())))
        if len(gates) == 1:  # the generators ended before the window did: close it
            server.send_signal(signal.SIGUSR2)
        results = []
        for load in loads:
            out, err = load.communicate(timeout=10)
            try:
                results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise RuntimeError(f"load generator failed (rc {load.returncode}): {err[-2000:]}") from None
        result = merge_results(results)
        if talk:
            time.sleep(0.5)  # the calls' last statistics
            metrics = scrape_metrics(port)
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
    agent: dict = {}
    if agent_stats:
        try:
            agent = json.loads(Path(agent_stats).read_text() or "{}")
        except (OSError, ValueError):
            agent = {}
        Path(agent_stats).unlink(missing_ok=True)
    rtt = result["round_trip"]
    up = result["handshakes_failed"] == 0 and result["calls_cut"] == 0 and result["protocol_errors"] == 0
    if talk:
        passed = up and metrics.get("callengine_underruns_total", 0) == 0 and metrics.get("callengine_frames_dropped_total", 0) == 0
    else:
        passed = (
            up
            and result["frames_dropped"] == 0
            and result["calls_with_long_tail"] == 0
            and result["underruns"] == 0
            and rtt["count"] > 0
            and rtt["p99"] < args.p99_ms
        )
    return {
        "server": kind,
        "provider": args.provider,
        "traffic": args.traffic,
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
        "metrics": {k.removeprefix("callengine_").removesuffix("_total"): v for k, v in metrics.items() if k.endswith("_total")},
        "agent": agent,
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


def fmt_talk_row(s: dict) -> str:
    r, m, a, t = s["load"], s["metrics"], s["agent"], s["load"].get("talk", {})
    fails = r["handshakes_failed"] + r["calls_cut"] + r["protocol_errors"]
    return (
        f"{s['calls']:>5}  {'pass' if s['passed'] else 'FAIL':<4}  {100 * s['cpu']:5.1f}%  {s['cpu_ms_per_call_s']:6.2f}  "
        f"{(s['peak_rss_kb'] - s['idle_rss_kb']) / s['calls']:6.0f}  "
        f"{m.get('underruns', 0):5.0f} {m.get('starved', 0):7.0f} {m.get('frames_dropped', 0):6.0f} {fails:4}  "
        f"{t.get('utterances', 0):5} {t.get('barge_in_attempts', 0):5} {t.get('keys', 0):4}  "
        f"{m.get('barge_ins', 0):5.0f} {a.get('barge_ins', 0):5} {t.get('clears', 0):6}  "
        f"{m.get('dtmf', 0):4.0f} {a.get('keys', 0):4}  {m.get('marks', 0):5.0f} {a.get('marks_reached', 0):7} "
        f"{t.get('marks_echoed', 0):6}  {t.get('bot_audio_s', 0) / max(1, s['calls']):6.1f}  {100 * s['gen_cpu']:5.1f}%"
    )


TALK_HEADER = (
    "    N  ok    server  ms/cs  RSS/   under starved  drops fail  --- caller sent ---  "
    "--- barge-ins ---   -- DTMF -  ------ marks -------  bot s/  gen\n"
    "                 CPU        call                             utter  over  keys  "
    "engine agent clears  eng. agent placed reached echoed   call   CPU\n"
    "                            (KiB)"
)
