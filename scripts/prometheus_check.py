"""Prove /metrics against the real consumer: start `callengine serve echo`, a real
Prometheus server (Debian's `prometheus` package: `apt-get install prometheus`) scraping it
every second on 127.0.0.1, run simulated calls with `callengine load`, then query
Prometheus's HTTP API for the series and check them. Everything stays on loopback and
stops by itself.

    python scripts/prometheus_check.py [--calls 40] [--rounds 5] [--seconds 3]

`--rounds` batches of `--calls` concurrent calls each (200 calls by default), so the label
sets can be seen to stay bounded as calls come and go. Prints the queried values and exits
non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(prom: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed: apt-get install prometheus", file=sys.stderr)
        return 2
    engine_port, prom_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="callengine-prom-"))
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: callengine\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{engine_port}']\n"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    py = [sys.executable, "-m", "callengine"]
    procs: list[subprocess.Popen] = []
    failures: list[str] = []
    try:
        engine = subprocess.Popen(py + ["serve", "echo", "--port", str(engine_port), "--agent-rate", "8000", "--log-level", "warning"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(engine)
        prom = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(prom)
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/healthz", timeout=2).status == 200, 30, "the engine")
        wait_for(lambda: query(prom_port, 'up{job="callengine"}') and query(prom_port, 'up{job="callengine"}')[0]["value"][1] == "1", 60, "Prometheus to scrape the engine")
        print(f"engine on 127.0.0.1:{engine_port}, Prometheus on 127.0.0.1:{prom_port}, scraping every 1 s")
        for round_no in range(args.rounds):
            load = subprocess.run(
                py + ["load", f"ws://127.0.0.1:{engine_port}/awaaz", "--provider", "awaaz", "--calls", str(args.calls), "--seconds", str(args.seconds), "--ramp", "1"],
                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if load.returncode != 0:
                failures.append(f"load round {round_no} exited {load.returncode}: {load.stderr[-300:]}")
        total = args.calls * args.rounds
        time.sleep(3)  # two more scrapes after the last call ended

        def value(expr: str) -> float:
            result = query(prom_port, expr)
            return float(result[0]["value"][1]) if result else float("nan")

        checks = {
            'sum(callengine_calls_started_total{job="callengine"})': lambda v: v == total,
            'sum(callengine_calls_ended_total{job="callengine"})': lambda v: v == total,
            'sum(callengine_calls_active{job="callengine"})': lambda v: v == 0,
            'max_over_time(sum(callengine_calls_active{job="callengine"})[5m:1s])': lambda v: 1 <= v <= args.calls,
            'sum(callengine_audio_frames_in_total{job="callengine"})': lambda v: v > total * 50 * (args.seconds - 1) * 0.8,
            'sum(callengine_call_duration_seconds_count{job="callengine"})': lambda v: v == total,
            'histogram_quantile(0.99, sum(rate(callengine_event_loop_lag_seconds_bucket[1m])) by (le))': lambda v: v == v and v < 0.5,
            'count({job="callengine", __name__=~"callengine_.*"})': lambda v: v < 200,
        }
        for expr, ok in checks.items():
            got = value(expr)
            print(f"{'ok ' if ok(got) else 'BAD'} {got:>12g}  {expr}")
            if not ok(got):
                failures.append(expr)
        labels = query(prom_port, 'count by (__name__, provider, end_cause, reason) ({job="callengine", __name__=~"callengine_.*"})')
        values = {k: v for series in labels for k, v in series["metric"].items() if k in ("provider", "end_cause", "reason")}
        print(f"label values seen: {sorted(set(values.values()))}")
        if any(v.startswith(("sim", "MZ", "CA", "load-")) for v in values.values()):
            failures.append("a label value names a call")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"Prometheus scraped {args.calls * args.rounds} calls; every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
