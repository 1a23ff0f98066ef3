"""The profile of bench_capacity.py (``--profile N``): where a server's CPU goes at N calls.

The sampler (bench_servers.SAMPLER, 1 kHz on the process's CPU clock) counts only the
steady window: from the end of the ramp (plus the load generators' start-up) to the end of
streaming, opened and closed by SIGUSR2 from the bench. Start-up (module imports), the
ramp and the teardown are discarded, so they do not show up as per-frame work.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_servers import ROOT


def _short(key: str) -> str:
    short = key.replace(str(ROOT) + "/", "")
    for marker in ("site-packages/", "lib/python3.11/", "lib/python3.12/", "lib/python3.13/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return short


def _area(key: str) -> str:
    filename = key.rsplit(":", 1)[0]
    if "callengine/" in filename:
        return "callengine/" + filename.split("callengine/", 1)[1]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/")[0]
    if "/scripts/" in filename:
        return "scripts/" + filename.split("/scripts/", 1)[1]
    return "stdlib " + Path(filename).name


_OURS = ("callengine/", "trio_websocket/", "wsproto/", "websockets/", "picows/", "/scripts/")


def print_profile(path: str, us_per_frame: float, window_s: float, top: int = 25) -> None:
    """Shares of the samples, and the same shares of the CPU per echoed frame measured from
    /proc (signals that arrive during a system call are merged and charged to the Python
    code that runs next, so sample counts undercount; their proportions are what counts)."""
    data = json.loads(Path(path).read_text())
    n = data["samples"]
    if not data.get("gated"):
        print("  the profiler's window never opened (no SIGUSR2 arrived): no samples counted")
        return
    print(
        f"  samples counted in the steady window only ({window_s:.1f} s: after the ramp and the load generators' start-up, "
        f"to the end of streaming); discarded: {data.get('before', 0)} before it (process start-up, imports, ramp), "
        f"{data.get('after', 0)} after it (teardown)"
    )
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
    print("\n  top functions by cumulative time (callengine, the WebSocket layer, the bench scripts):")
    shown = 0
    for key, c in sorted(data["cumulative"].items(), key=lambda kv: -kv[1]):
        if not any(m in key for m in _OURS):
            continue
        print(f"  {100 * c / n:5.1f}%  {c * per_frame:6.1f} us/frame  {_short(key)}")
        shown += 1
        if shown >= top:
            break
