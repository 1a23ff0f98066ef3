#!/usr/bin/env python3
"""Teardown: 2,000 calls in waves, ended by every cause; teardown time, and no growth.

    python scripts/bench_teardown.py [--waves 20] [--calls 100] [--seed 1]

Real clock, loopback only. ``callengine serve bench_agents:agent`` (scripts/bench_agents.py)
runs in its own process (free port, ``--log-format json --log-level info``: one JSON
summary line per call on stderr, with ``end_cause`` and ``teardown_s``). This process dials
``--calls`` concurrent simulated provider calls per wave (open_dialed_call, real
WebSockets), ``--waves`` times. Each call is ended by one of these causes, round robin:

  Awaaz and Knowlarity   provider stop, abrupt drop (TCP closed, no close handshake),
                         agent returns, agent hangs up, agent raises
  Knowlarity             transfer

The agent's behaviour is chosen by the call's custom parameters (``bench``, ``after``: a
random 0.05-0.6 s into a 1 s tone the agent plays, so most calls end with audio in flight).

Between waves, with no call live, a probe call asks the engine process (bench_agents'
``probe``) for its live trio tasks (walking the task tree from
``trio.lowlevel.current_root_task()``) and live engine objects after a garbage collection
(CallSession, WebSocketConnection, ...), and this process reads the engine's RSS
(/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd) and CPU time. The probe call
is live while it counts: its own tasks are in every count, the same in each.

Teardown time is the engine's own figure (CallReport.teardown_s: from the moment the call's
end was decided to the socket closed and every playback and mark settled). The end cause of
every call is checked against the cause that was asked for.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import callengine_command, cpu_seconds, machine_busy, machine_info, pct, rss_mib, source_info, wait_quiet  # noqa: E402
from callengine.testing.dial import DialError, open_dialed_call  # noqa: E402
from callengine.testing.provider import default_start  # noqa: E402

COMBOS = [
    ("awaaz", "stop"),
    ("awaaz", "drop"),
    ("awaaz", "return"),
    ("awaaz", "hangup"),
    ("awaaz", "raise"),
    ("knowlarity", "stop"),
    ("knowlarity", "drop"),
    ("knowlarity", "return"),
    ("knowlarity", "hangup"),
    ("knowlarity", "raise"),
    ("knowlarity", "transfer"),
]
EXPECTED_CAUSE = {
    "stop": "provider_stop",
    "drop": "disconnected",
    "return": "agent_returned",
    "hangup": "hangup",
    "raise": "agent_error",
    "transfer": "transfer",
}
AFTER_S = (0.05, 0.6)


# --- machine and the engine process ------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Engine:
    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bench-teardown-engine-", suffix=".jsonl", delete=False)
        self.argv = callengine_command() + ["serve", "bench_agents:agent", "--port", "0", "--log-format", "json", "--log-level", "info"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "scripts"), env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self._reader = open(self.log.name)
        self._partial = ""
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
        raise SystemExit(f"the engine did not start: {line!r}; see {self.log.name}")

    def new_records(self) -> list[dict]:
        """JSON log records written since the last call."""
        text = self._partial + self._reader.read()
        lines = text.split("\n")
        self._partial = lines.pop()
        out = []
        for ln in lines:
            if ln.strip():
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    out.append({"level": "?", "message": ln})
        return out

    def stop(self) -> float:
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t0


# --- calls ----------------------------------------------------------------------------------


async def one_call(url: str, provider: str, behaviour: str, call_id: str, after: float, client: dict) -> None:
    agent_mode = "listen" if behaviour in ("stop", "drop") else behaviour
    start = default_start(provider, call_id=call_id, bench=agent_mode, after=f"{after:.3f}")
    t0 = trio.current_time()
    try:
        async with open_dialed_call(f"{url}/{provider}", provider, start=start) as sim:
            if behaviour in ("stop", "drop"):
                await trio.sleep(after)
                if behaviour == "stop":
                    await sim.stop()
                else:
                    await sim.drop()
            with trio.move_on_after(20) as scope:
                await sim.closed.wait()
            if scope.cancelled_caught:
                client["not_closed"] += 1
        client["ok"] += 1
        client["durations"].append(trio.current_time() - t0)
    except DialError as exc:
        client["dial_errors"] += 1
        client["errors"].append(f"{call_id}: {exc}")
    except Exception as exc:  # counted and shown, never fatal for the others
        client["other_errors"] += 1
        client["errors"].append(f"{call_id}: {exc!r}")


async def probe(url: str, name: str) -> None:
    start = default_start("awaaz", call_id=name, bench="probe")
    async with open_dialed_call(f"{url}/awaaz", "awaaz", start=start) as sim:
        with trio.move_on_after(10):
            await sim.closed.wait()


async def run(engine: Engine, args) -> dict:
    url = f"ws://127.0.0.1:{engine.port}"
    pid = engine.proc.pid
    rng = np.random.default_rng(args.seed)
    summaries: dict[str, dict] = {}
    probes: dict[str, dict] = {}
    other_records: list[dict] = []

    def absorb() -> None:
        for rec in engine.new_records():
            if rec.get("event") == "call_ended":
                summaries[rec["call_id"]] = rec
            elif rec.get("logger") == "bench_agents":
                try:
                    data = json.loads(rec["message"])
                    probes[data["probe"]] = data
                except (ValueError, KeyError):
                    other_records.append(rec)
            else:
                other_records.append(rec)

    async def wait_for(pred, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while True:
                absorb()
                if pred():
                    return True
                await trio.sleep(0.05)
        return False

    async def sample(name: str) -> dict:
        await probe(url, name)
        await wait_for(lambda: name in probes and name in summaries, 10)
        await trio.sleep(0.1)  # the probe's socket closes
        p = probes.get(name, {})
        return {"rss": rss_mib(pid), "fds": open_fds(pid), "tasks": p.get("tasks"), "task_names": p.get("task_names", {}), "objects": p.get("objects", {})}

    client = {"ok": 0, "not_closed": 0, "dial_errors": 0, "other_errors": 0, "errors": [], "durations": []}
    waves = []
    before = await sample("probe-000")
    initial = before
    index = 0
    t_begin = time.monotonic()
    for w in range(args.waves):
        c0, s0, m0, w0 = cpu_seconds(pid), cpu_seconds(os.getpid()), machine_busy(), time.monotonic()
        ids = []
        async with trio.open_nursery() as nursery:
            for _ in range(args.calls):
                provider, behaviour = COMBOS[index % len(COMBOS)]
                call_id = f"w{w + 1:02d}-{index:05d}-{provider[0]}-{behaviour}"
                after = float(rng.uniform(*AFTER_S))
                nursery.start_soon(one_call, url, provider, behaviour, call_id, after, client)
                ids.append(call_id)
                index += 1
                await trio.sleep(args.stagger)
        got = await wait_for(lambda: all(i in summaries for i in ids), 15)
        c1, s1, m1, w1 = cpu_seconds(pid), cpu_seconds(os.getpid()), machine_busy(), time.monotonic()
        after_sample = await sample(f"probe-{w + 1:03d}")
        reports = [summaries[i] for i in ids if i in summaries]
        td = [1000 * r["teardown_s"] for r in reports]
        mism = sum(1 for i in ids if i in summaries and summaries[i]["end_cause"] != EXPECTED_CAUSE[i.rsplit("-", 1)[1]])
        wall = w1 - w0
        waves.append(
            {
                "wave": w + 1,
                "calls": len(ids),
                "reported": len(reports),
                "complete": got,
                "mismatched": mism,
                "wall": wall,
                "engine_cpu": (c1 - c0) / wall,
                "client_cpu": (s1 - s0) / wall,
                "machine_busy": os.cpu_count() * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
                "td50": pct(td, 50),
                "td99": pct(td, 99),
                "tdmax": max(td) if td else math.nan,
                "before": before,
                "after": after_sample,
            }
        )
        row = waves[-1]
        print(
            f"  wave {w + 1:2d}: {len(reports):3d}/{len(ids)} reported, {mism} unexpected causes, {wall:4.1f} s, "
            f"teardown p50 {row['td50']:5.1f} p99 {row['td99']:6.1f} ms | RSS {before['rss']:6.1f} -> {after_sample['rss']:6.1f} MiB, "
            f"fds {before['fds']} -> {after_sample['fds']}, tasks {before['tasks']} -> {after_sample['tasks']}, "
            f"CallSession alive {before['objects'].get('CallSession', 0)} -> {after_sample['objects'].get('CallSession', 0)} | "
            f"cpu: engine {100 * row['engine_cpu']:.0f}%, client {100 * row['client_cpu']:.0f}%, "
            f"other processes {max(0.0, row['machine_busy'] - row['engine_cpu'] - row['client_cpu']):.2f} cores",
            flush=True,
        )
        before = after_sample
        if time.monotonic() - t_begin > args.time_limit:
            print(f"  time limit ({args.time_limit:.0f} s) reached after wave {w + 1}", flush=True)
            break
    absorb()
    return {"waves": waves, "summaries": summaries, "client": client, "initial": initial, "final": before, "other": other_records, "probes": probes}


# --- report ------------------------------------------------------------------------------------


def report(result: dict, stop_s: float, stopped: dict | None) -> None:
    waves = result["waves"]
    summaries = {k: v for k, v in result["summaries"].items() if not k.startswith("probe")}
    client = result["client"]
    print()
    print(f"calls: {len(summaries)} reported by the engine; client: {client['ok']} ended cleanly, {client['dial_errors']} dial errors, "
          f"{client['other_errors']} other errors, {client['not_closed']} not closed within 20 s")
    for e in client["errors"][:5]:
        print("   ", e)

    # end causes and teardown per provider x behaviour
    print()
    print("teardown time (CallReport.teardown_s), ms, and end causes")
    head = f"{'provider':<11}{'asked':<10}{'n':>5} | {'p50':>6}{'p99':>7}{'max':>7} | end causes (expected first)"
    print(head)
    print("-" * (len(head) + 30))
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for cid, rec in summaries.items():
        behaviour = cid.rsplit("-", 1)[1]
        groups[(rec["provider"], behaviour)].append(rec)
    for provider, behaviour in COMBOS:
        recs = groups.get((provider, behaviour), [])
        td = [1000 * r["teardown_s"] for r in recs]
        causes = collections.Counter(r["end_cause"] for r in recs)
        expected = EXPECTED_CAUSE[behaviour]
        parts = [f"{expected} {causes.pop(expected, 0)}"] + [f"UNEXPECTED {c} {n}" for c, n in causes.most_common()]
        print(f"{provider:<11}{behaviour:<10}{len(recs):>5} | {pct(td, 50):6.1f}{pct(td, 99):7.1f}{(max(td) if td else math.nan):7.1f} | {', '.join(parts)}")
    td_all = [1000 * r["teardown_s"] for r in summaries.values()]
    print(f"{'all':<21}{len(td_all):>5} | {pct(td_all, 50):6.1f}{pct(td_all, 99):7.1f}{(max(td_all) if td_all else math.nan):7.1f} |")
    codes = collections.Counter((r["end_cause"], r.get("close_code")) for r in summaries.values())
    print("close codes by cause: " + ", ".join(f"{c}:{code} x{n}" for (c, code), n in sorted(codes.items(), key=lambda x: (x[0][0], str(x[0][1])))))

    # growth
    first, last = waves[0], waves[-1]
    init, final = result["initial"], result["final"]
    print()
    print("engine process between waves (no call live but the probe)")
    print(f"{'':<28}{'RSS MiB':>9}{'fds':>6}{'tasks':>7}{'CallSession':>12}{'WebSocketConnection':>20}{'Nursery':>9}{'gc objects':>12}")

    def line(label: str, s: dict) -> None:
        o = s["objects"]
        print(f"{label:<28}{s['rss']:9.1f}{s['fds']:6d}{s['tasks'] if s['tasks'] is not None else '?':>7}{o.get('CallSession', 0):12d}"
              f"{o.get('WebSocketConnection', 0):20d}{o.get('Nursery', 0):9d}{o.get('gc_objects', 0):12d}")

    line("before wave 1", init)
    line("after wave 1", first["after"])
    if len(waves) > 3:
        mid = waves[len(waves) // 2 - 1]
        line(f"after wave {mid['wave']}", mid["after"])
    line(f"after wave {last['wave']} (end)", final)
    n_calls = sum(w["calls"] for w in waves)
    d_rss = final["rss"] - first["after"]["rss"]
    print(f"growth from after wave 1 to after wave {last['wave']} ({n_calls - first['calls']} more calls): RSS {d_rss:+.1f} MiB "
          f"({1024 * d_rss / max(1, n_calls - first['calls']):+.2f} KiB/call), fds {final['fds'] - first['after']['fds']:+d}, "
          f"tasks {(final['tasks'] or 0) - (first['after']['tasks'] or 0):+d}, "
          f"CallSession {final['objects'].get('CallSession', 0) - first['after']['objects'].get('CallSession', 0):+d}")
    if len(waves) >= 20:
        # CallServer.reports keeps the last 1,000 call reports: memory may grow until it is full
        w10 = waves[9]["after"]
        n10 = sum(w["calls"] for w in waves[10:])
        print(f"growth from after wave 10 (the server's bounded list of 1,000 reports is full) to after wave {last['wave']} ({n10} calls): "
              f"RSS {final['rss'] - w10['rss']:+.1f} MiB, gc objects {final['objects'].get('gc_objects', 0) - w10['objects'].get('gc_objects', 0):+d}, "
              f"fds {final['fds'] - w10['fds']:+d}, tasks {(final['tasks'] or 0) - (w10['tasks'] or 0):+d}")
    rss_after = [w["after"]["rss"] for w in waves]
    print("gc objects after each wave: " + " ".join(str(w["after"]["objects"].get("gc_objects", 0)) for w in waves))
    print(f"RSS after each wave: min {min(rss_after):.1f}, max {max(rss_after):.1f} MiB; per wave: " + " ".join(f"{x:.1f}" for x in rss_after))
    tasks_after = [w["after"]["tasks"] for w in waves]
    print("live tasks after each wave: " + " ".join(str(x) for x in tasks_after))
    print("fds after each wave: " + " ".join(str(w["after"]["fds"]) for w in waves))
    tn0, tn1 = init["task_names"], final["task_names"]
    diff = {k: tn1.get(k, 0) - tn0.get(k, 0) for k in set(tn0) | set(tn1) if tn1.get(k, 0) != tn0.get(k, 0)}
    print(f"task names at the end vs before wave 1: {diff or 'identical'}  (live tasks then: {tn1})")
    print(f"teardown p50/p99 first wave {first['td50']:.1f}/{first['td99']:.1f} ms, last wave {last['td50']:.1f}/{last['td99']:.1f} ms")
    other = [max(0.0, w["machine_busy"] - w["engine_cpu"] - w["client_cpu"]) for w in waves]
    print(f"cpu during the waves: engine {np.mean([w['engine_cpu'] for w in waves]):.2f} cores, this client {np.mean([w['client_cpu'] for w in waves]):.2f}, "
          f"other processes on the machine {np.mean(other):.2f} mean, {max(other):.2f} max")
    if max(other) > 0.3:
        print("WARNING: other processes used > 0.3 cores during some waves (shared machine): teardown times include CPU contention")

    # engine log
    levels = collections.Counter(r.get("level") for r in result["other"])
    print()
    print(f"engine log outside call summaries: {dict(levels)}")
    msgs = collections.Counter()
    for r in result["other"]:
        if r.get("level") in ("warning", "error", "critical"):
            m = re.sub(r"(knowlarity|awaaz):w\d+-\d+-\w-\w+", r"\1:<call>", str(r.get("message", "")))
            m = re.sub(r"\d+(\.\d+)?", "N", m)
            msgs[(r.get("level"), m[:150])] += 1
    for (lvl, m), n in msgs.most_common(12):
        print(f"  {n:5d} x {lvl}: {m}")
    print(f"engine stopped (SIGTERM, drain) in {stop_s:.2f} s; its final counters: {json.dumps(stopped) if stopped else '?'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--waves", type=int, default=20)
    p.add_argument("--calls", type=int, default=100, help="concurrent calls per wave (default 100)")
    p.add_argument("--stagger", type=float, default=0.002, help="seconds between call starts within a wave")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=420.0, help="stop starting waves after this many seconds")
    p.add_argument("--wait-quiet", type=float, default=60.0, help="first wait up to this long for the machine to be idle (0: don't)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(machine_info())
    print(source_info())
    if args.wait_quiet:
        print(wait_quiet(args.wait_quiet), flush=True)
    engine = Engine()
    print("engine:  PYTHONPATH=scripts " + " ".join(engine.argv) + f"  (pid {engine.proc.pid}, port {engine.port}); engine log {engine.log.name}")
    print(f"{args.waves} waves x {args.calls} concurrent calls, causes round robin over {len(COMBOS)} (provider, cause) pairs", flush=True)
    try:
        result = trio.run(run, engine, args)
    finally:
        stop_s = engine.stop()
    stopped = None
    for rec in engine.new_records():
        msg = str(rec.get("message", ""))
        if msg.startswith("callengine stopped: "):
            stopped = json.loads(msg[len("callengine stopped: "):])
        elif rec.get("event") == "call_ended":
            result["summaries"][rec["call_id"]] = rec
        else:
            result["other"].append(rec)
    report(result, stop_s, stopped)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
