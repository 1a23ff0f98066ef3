"""Helpers shared by the benchmark scripts: machine facts, /proc readings, percentiles.

The scripts run as ``python scripts/NAME.py``, so this module is importable beside them.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import trio

ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    import trio_websocket

    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {mem}, {platform.system()} {platform.release()}, load average {Path('/proc/loadavg').read_text().split()[:3]}\n"
        f"python {platform.python_version()}, trio {trio.__version__}, trio-websocket {trio_websocket.__version__}, numpy {np.__version__}"
    )


def source_info() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "callengine"], capture_output=True, text=True).stdout.split("\n")
    except OSError:
        return "source: ?"
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    return f"source: {rev}" + (f" (uncommitted engine files: {', '.join(dirty)})" if dirty else "")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    v = list(map(int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]))
    return sum(v) - v[3] - v[4], sum(v)


def busy_cores(a: tuple[int, int], b: tuple[int, int]) -> float:
    return (os.cpu_count() or 1) * (b[0] - a[0]) / max(1, b[1] - a[1])


def wait_quiet(max_s: float, below: float = 0.3, run_s: int = 3) -> str:
    """Wait (at most ``max_s``) until the machine has been busy < ``below`` cores for
    ``run_s`` consecutive seconds: other work on a shared machine skews every timing."""
    t0 = time.monotonic()
    quiet = 0
    last = busy = machine_busy()
    while time.monotonic() - t0 < max_s:
        time.sleep(1.0)
        now = machine_busy()
        busy = busy_cores(last, now)
        last = now
        quiet = quiet + 1 if busy < below else 0
        if quiet >= run_s:
            return f"machine quiet after {time.monotonic() - t0:.0f} s"
    return f"machine NOT quiet after {max_s:.0f} s (last second: {busy:.2f} cores busy); measuring anyway"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def callengine_command() -> list[str]:
    exe = Path(sys.executable).parent / "callengine"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("callengine")
    return [found] if found else [sys.executable, "-m", "callengine"]


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan
