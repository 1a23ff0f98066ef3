"""The servers bench_capacity.py measures: their commands, starting and stopping them, the
/proc readings of their CPU and memory, and the profiler that can run inside them.

Server kinds (``--servers``):

* ``engine``: ``callengine serve callengine.agents.echo --agent-rate R --no-barge-in``, R the
  wire rate (8000 Awaaz, 16000 Knowlarity), so the echo has no resampler;
* ``engine-wN``: the same with ``--workers N`` (CPU and RSS of the whole process tree);
* ``baseline``: the engine command run from another checkout (``--baseline-tree``);
* ``bare``: scripts/bare_echo_server.py (trio-websocket, the engine's own WebSocket library);
* ``websockets``: scripts/bare_echo_websockets.py (websockets' asyncio server);
* ``picows``: scripts/bare_echo_picows.py (picows);
* ``trio-floor``, ``trio-floor3``: scripts/bare_echo_trio_floor.py, the least Trio can spend
  per frame (direct descriptor I/O, websockets' sans-I/O frames), with one task per call and
  with the engine's reader, agent and writer tasks and nothing of its work;
* ``engine-talk``: ``callengine serve scripts.bench_agent:agent --agent-rate R`` (barge-in on,
  the engine's default), for the talk row.

The three bare servers share scripts/echo_handling.py: they differ only in the WebSocket library.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

BARE_SCRIPTS = {
    "bare": "bare_echo_server.py",
    "websockets": "bare_echo_websockets.py",
    "picows": "bare_echo_picows.py",
    "trio-floor": "bare_echo_trio_floor.py",
    "trio-floor3": "bare_echo_trio_floor.py",
}
#: a bare server's arguments beyond --port
BARE_ARGS = {"trio-floor": ["--tasks", "1"], "trio-floor3": ["--tasks", "3"]}
WIRE_RATE = {"awaaz": 8000, "knowlarity": 16000}
#: another checkout whose engine runs as the "baseline" server (--baseline-tree)
BASELINE_TREE: Path | None = None


def valid_kind(kind: str) -> bool:
    return kind in ("engine", "baseline", "engine-talk", *BARE_SCRIPTS) or (
        kind.startswith("engine-w") and kind[len("engine-w") :].isdigit()
    )


def describe(kind: str, provider: str) -> str:
    rate = WIRE_RATE[provider]
    if kind in BARE_SCRIPTS:
        return " ".join([f"scripts/{BARE_SCRIPTS[kind]}", *BARE_ARGS.get(kind, [])])
    if kind == "baseline":
        return f"callengine serve echo, agent rate {rate}, from {BASELINE_TREE}"
    if kind == "engine-talk":
        return f"callengine serve scripts.bench_agent:agent, agent rate {rate}, barge-in on"
    workers = f", --workers {kind[len('engine-w'):]}" if kind.startswith("engine-w") else ""
    return f"callengine serve echo, agent rate {rate}{workers}"


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


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the profiler -------------------------------------------------------------------------

# A statistical profiler on the process's CPU clock (ITIMER_PROF, 1 kHz): each SIGPROF
# records the Python stack the main thread is executing. Far lighter than cProfile (which
# slows a trio server several-fold and so changes what it measures); time in C (numpy, the
# socket calls) is charged to the Python function that called it. It counts nothing until
# the first SIGUSR2 and nothing after the second: the bench sends them at the start and the
# end of the steady window, so start-up (module imports), the ramp and the teardown are
# not counted as per-frame work. ``before``/``after``: the samples it discarded.
SAMPLER = """\
import collections, json, runpy, signal, sys
_self = collections.Counter()
_cum = collections.Counter()
_n = [0, 0, 0]  # counted, before the window, after it
_on = [0]
def _gate(signum, frame):
    _on[0] += 1
def _sample(signum, frame):
    if _on[0] != 1:
        _n[1 if _on[0] == 0 else 2] += 1
        return
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
        json.dump({"samples": _n[0], "before": _n[1], "after": _n[2], "gated": _on[0] >= 1,
                   "interval_s": 0.001, "self": _self, "cumulative": _cum}, f)
signal.signal(signal.SIGUSR2, _gate)
signal.signal(signal.SIGPROF, _sample)
signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
"""


# --- commands -----------------------------------------------------------------------------


def server_command(kind: str, port: int, provider: str = "awaaz", profile: str | None = None) -> list[str]:
    rate = WIRE_RATE[provider]
    if kind in BARE_SCRIPTS:
        argv = [str(ROOT / "scripts" / BARE_SCRIPTS[kind]), "--port", str(port), *BARE_ARGS.get(kind, [])]
        if not profile:
            return [PY, *argv]
        run = f"sys.argv = {argv!r}\nsys.path.insert(0, {str(ROOT / 'scripts')!r})\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        return [PY, "-c", SAMPLER + run + f"finally:\n    dump({profile!r})\n"]
    agent = "scripts.bench_agent:agent" if kind == "engine-talk" else "callengine.agents.echo"
    serve = [
        "serve", agent, "--agent-rate", str(rate), "--port", str(port),
        "--log-level", "warning", "--max-calls", "2000", "--drain-grace", "2",
    ]
    if kind != "engine-talk":
        serve.append("--no-barge-in")
    if kind.startswith("engine-w"):
        serve += ["--workers", kind[len("engine-w") :]]
    if profile:
        run = f"from callengine.cli import main\ntry:\n    main({serve!r})\n"
        return [PY, "-c", SAMPLER + run + f"finally:\n    dump({profile!r})\n"]
    return [PY, "-m", "callengine", *serve]


def pinned_to(cpus: set[int] | None):
    """A preexec_fn that pins the child process to ``cpus`` (None: no pinning)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(
    kind: str, port: int, provider: str = "awaaz", profile: str | None = None, cpus: set[int] | None = None,
    env_extra: dict | None = None,
) -> subprocess.Popen:
    cwd, env = ROOT, dict(os.environ)
    # scripts.bench_agent (engine-talk) imports from the checkout's root
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH", "")) if x)
    if kind == "baseline":
        assert BASELINE_TREE is not None
        # the same command, importing callengine from the other checkout
        cwd, env["PYTHONPATH"] = BASELINE_TREE, str(BASELINE_TREE)
    env.update(env_extra or {})
    engine = kind not in BARE_SCRIPTS
    proc = subprocess.Popen(
        server_command(kind, port, provider, profile), cwd=cwd, env=env,
        stdout=subprocess.PIPE if engine else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=pinned_to(cpus),
    )
    deadline = time.monotonic() + 20
    if proc.stdout is not None:
        # the engine's one listening line: with --workers, printed once every worker listens
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        if not ready or "listening" not in proc.stdout.readline():
            stop_server(proc)
            raise RuntimeError(f"{kind} server printed no listening line: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited at start: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
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
    return proc.stderr.read() if proc.stderr else ""


def scrape_metrics(port: int, prefix: str = "callengine_") -> dict[str, float]:
    """The engine's counters from ``GET /metrics``, summed over their labels."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.startswith(prefix) or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out
