"""``callengine serve --workers N``: N worker processes that share the call port.

The supervisor (this module, no Trio: a ``select`` loop over a signal wake-up socket and
one channel per worker) starts each worker as ``python -m callengine serve <the same
options> --port P --worker-of FD``. A fresh interpreter per worker, rather than a fork or
``multiprocessing``: nothing of the supervisor (threads, locks, a half-imported agent,
signal handlers) is copied into it, the worker runs exactly the code path of a single
``callengine serve`` (its drain, signals, exit codes and logging), it starts the same way
however the supervisor was started (the console script, ``python -m callengine``,
``scripts/run_engine.py``), and ``subprocess`` passes exactly the descriptors it needs and
no others.

* **The port.** With ``SO_REUSEPORT`` (Linux) each worker binds the port itself and the
  kernel spreads new connections over the workers; the supervisor keeps a bound socket
  that does not listen, which holds the port (``--port 0``: picks it) while workers come
  and go. Elsewhere (or with ``CALLENGINE_NO_REUSEPORT=1``) the supervisor listens and
  the workers inherit the listening sockets.
* **Channels.** Each worker gets one end of a socket pair: it writes ``ready`` once it
  listens (the supervisor prints the one listening line when every worker is ready), and
  it watches for end of file: a supervisor that is gone, even killed with SIGKILL, closes
  it, and the worker drains as on SIGUSR1 (:class:`WorkerChannel`), so no worker outlives
  it for longer than its drain.
* **Signals.** SIGTERM, SIGINT and SIGUSR1 are forwarded to every worker (each in its own
  process group, so a terminal's Ctrl-C reaches them once, through the supervisor); a
  second SIGTERM/SIGINT too, so they exit at once with 130/143. Once a stop signal came,
  the supervisor exits when every worker has, with the worst exit code (0 when all
  drained cleanly); a worker still running past its own shutdown deadline plus 5 s is
  killed (exit 3).
* **Restarts.** A worker that exits by itself is restarted, at most once a second per
  worker, and less often while it keeps dying young (the wait doubles up to 30 s); each
  restart is logged once. A worker that fails before the first start-up completed (a
  bad agent: 2, the port: 1) stops the server with its exit code.
* **Metrics.** A prometheus-client multiprocess directory, created and removed by the
  supervisor (:class:`callengine.metrics.SharedMetrics`), named with its pid so that the
  next supervisor removes one that a killed supervisor left; an exited worker's live
  gauges are removed (``mark_process_dead``), its counters stay in the totals.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs

from . import __version__
from .listen import HAS_REUSEPORT, bind_shared
from .shutdown import EXIT_LISTEN, EXIT_OK, EXIT_STUCK, EXIT_USAGE

__all__ = ["supervise", "WorkerChannel", "worker_argv", "worker_env", "next_wait", "SECRET_ENV"]

log = logging.getLogger("callengine.workers")
listen_log = logging.getLogger("callengine.listening")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
STOPS = (signal.SIGTERM, signal.SIGINT)
MIN_RESTART_S, MAX_RESTART_S = 1.0, 30.0
STOP_MARGIN_S = 5.0
METRICS_PREFIX = "callengine-metrics-"
#: options the supervisor sets itself for each worker
_OWN = {"workers", "worker_of", "listen_fd", "port", "help"}
#: options that reach a worker through its environment, never its command line (which
#: every user of the machine can read in ``ps``)
SECRET_ENV = {"token": "CALLENGINE_TOKEN"}


def worker_argv(args: argparse.Namespace) -> list[str]:
    """``serve``'s options as given, from the parsed ``args`` (whatever parsed them: the
    ``callengine`` command or scripts/run_engine.py), without the supervisor's own."""
    from .cli import add_serve_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_serve_arguments(parser)
    out: list[str] = []
    for action in parser._actions:
        if action.dest in _OWN or action.dest in SECRET_ENV or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if not action.option_strings:
            out.append(str(value))
            continue
        option = max(action.option_strings, key=len)
        if action.nargs == 0:  # a flag: given when the value is its constant, not the default
            if value == action.const and value != action.default:
                out.append(option)
        elif isinstance(value, list):  # repeatable
            out += [f"{option}={item}" for item in value]
        elif value is not None and value != action.default:
            out.append(f"{option}={value}")
    return out


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment entries that carry ``args``' secrets to a worker (see
    :data:`SECRET_ENV`); an unset secret is removed from the worker's environment, so the
    worker's default cannot differ from the supervisor's value."""
    return {env: getattr(args, dest, None) or "" for dest, env in SECRET_ENV.items()}


def next_wait(wait_s: float, lived: float) -> float:
    """The least time from a worker's start to its next restart: doubled (to 30 s) when it
    died sooner than that, back to 1 s once one lives 30 s."""
    if lived > MAX_RESTART_S:
        return MIN_RESTART_S
    return min(wait_s * 2, MAX_RESTART_S) if lived < wait_s else wait_s


def _code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by a signal: 128 + it


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


@attrs.define
class _Slot:
    index: int
    proc: subprocess.Popen | None = None
    channel: socket.socket | None = None
    started_at: float = 0.0
    ready: bool = False
    wait_s: float = MIN_RESTART_S
    start_at: float = 0.0


class Supervisor:
    def __init__(self, args: argparse.Namespace, config) -> None:
        self.args, self.config = args, config
        self.count: int = args.workers
        self.argv = worker_argv(args)
        self.secrets = worker_env(args)
        self.slots = [_Slot(i + 1) for i in range(self.count)]
        self.reuse_port = HAS_REUSEPORT and os.environ.get("CALLENGINE_NO_REUSEPORT", "") in ("", "0")
        self.sockets: list[socket.socket] = []
        self.port = 0
        self.metrics_dir = ""
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = float("inf")
        self.codes: list[int] = []
        self.abort_code: int | None = None
        self.announced = False

    # --- life of the workers -------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        mine, theirs = socket.socketpair()
        fds = [s.fileno() for s in self.sockets] if not self.reuse_port else []
        command = [sys.executable, "-m", "callengine", "serve", *self.argv, f"--port={self.port}", f"--worker-of={theirs.fileno()}"]
        command += [f"--listen-fd={fd}" for fd in fds]
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.metrics_dir)
        for name, value in self.secrets.items():
            if value:
                env[name] = value
            else:
                env.pop(name, None)
        try:
            # its own process group: a terminal's SIGINT reaches it once, through us
            slot.proc = subprocess.Popen(command, pass_fds=(theirs.fileno(), *fds), stdin=subprocess.DEVNULL, env=env, process_group=0)
        except OSError as exc:
            mine.close()
            log.error("worker %d could not be started: %s", slot.index, exc)
            slot.start_at = time.monotonic() + slot.wait_s
            return
        finally:
            theirs.close()
        slot.channel, slot.started_at, slot.ready = mine, time.monotonic(), False
        log.info("worker %d started: pid %d", slot.index, slot.proc.pid)

    def _reap(self, slot: _Slot) -> None:
        proc = slot.proc
        if proc is None or proc.poll() is None:
            return
        rc = proc.returncode
        slot.proc = None
        if slot.channel is not None:
            slot.channel.close()
            slot.channel = None
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(proc.pid, self.metrics_dir)
        except Exception as exc:  # metrics must not stop the supervisor
            log.warning("could not clear the metrics of pid %d: %r", proc.pid, exc)
        now = time.monotonic()
        lived = now - slot.started_at
        if self.stopping:
            self.codes.append(_code(rc))
            (log.info if rc == 0 else log.warning)("worker %d (pid %d) %s", slot.index, proc.pid, _how(rc))
        elif not self.announced:
            log.error("worker %d (pid %d) %s during start-up: stopping", slot.index, proc.pid, _how(rc))
            self.abort_code = _code(rc) or EXIT_LISTEN
            self._stop(signal.SIGTERM)
        else:
            slot.wait_s = next_wait(slot.wait_s, lived)
            slot.start_at = max(now, slot.started_at + slot.wait_s)
            log.warning("worker %d (pid %d) %s after %.1f s: restarting it in %.1f s", slot.index, proc.pid, _how(rc), lived, slot.start_at - now)

    def _stop(self, signum: int) -> None:
        if not self.stopping:
            self.stopping = True
            from .cli import shutdown_deadline_s

            self.stop_deadline = time.monotonic() + shutdown_deadline_s(self.config) + STOP_MARGIN_S
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                try:
                    slot.proc.send_signal(signum)
                except OSError:
                    pass

    def _on_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            if not self.stopping:
                log.info("received %s: forwarding it to %d worker(s), which drain", name, sum(s.proc is not None for s in self.slots))
                self._stop(signum)
            else:
                log.info("received %s: forwarding it to the workers", name)
                self._forward(signum)

    def _read_channel(self, slot: _Slot) -> None:
        assert slot.channel is not None
        try:
            data = slot.channel.recv(256)
        except OSError:
            data = b""
        if b"ready" in data:
            slot.ready = True
        elif not data:  # the worker is gone (or going): poll() reaps it
            slot.channel.close()
            slot.channel = None

    def _announce(self) -> None:
        self.announced = True
        cfg = self.config
        scheme = "wss" if cfg.certfile else "ws"
        listen_log.info(
            "callengine %s listening on %s://%s:%d (paths /awaaz, /knowlarity; %d workers, each max %d calls, %d pending handshakes; %s)",
            __version__, scheme, cfg.host, self.port, self.count, cfg.max_calls, cfg.max_pending_handshakes,
            "SO_REUSEPORT" if self.reuse_port else "one shared socket",
            extra={"fields": {"scheme": scheme, "host": cfg.host, "port": self.port, "workers": self.count}},
        )  # fmt: skip
        log.info("worker pids: %s", ", ".join(str(s.proc.pid) for s in self.slots if s.proc is not None))

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.sockets, self.port = bind_shared(self.config.host, self.config.port, reuse_port=self.reuse_port)
        except OSError as exc:
            print(f"callengine: error: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_LISTEN
        _remove_stale_metrics_dirs()
        self.metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {s: signal.getsignal(s) for s in (*FORWARDED, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for signum in FORWARDED:
            signal.signal(signum, lambda signum, frame: self.signals.append(signum))
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select
        try:
            return self._loop(wake_r)
        finally:
            for slot in self.slots:  # only reached with workers left on an error of our own
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for s in (*self.sockets, wake_r, wake_w):
                s.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _loop(self, wake: socket.socket) -> int:
        while True:
            self._on_signals()
            for slot in self.slots:
                self._reap(slot)
            now = time.monotonic()
            live = [s for s in self.slots if s.proc is not None]
            if self.stopping:
                if not live:
                    break
                if now > self.stop_deadline:
                    log.error("%d worker(s) still running past the shutdown deadline: killing them", len(live))
                    for slot in live:
                        assert slot.proc is not None
                        slot.proc.kill()
                        slot.proc.wait()
                        self.codes.append(EXIT_STUCK)
                        slot.proc = None
                    break
            else:
                first_up = self.announced or self.slots[0].ready
                for slot in self.slots:
                    if slot.proc is None and now >= slot.start_at and (slot.index == 1 or first_up):
                        self._start(slot)  # the first alone: a bad agent fails once, not N times
                if not self.announced and all(s.ready for s in self.slots):
                    self._announce()
            waits = [s.start_at - now for s in self.slots if s.proc is None and not self.stopping]
            timeout = max(0.0, min([1.0, *waits]))
            channels = {s.channel: s for s in self.slots if s.channel is not None}
            try:
                readable, _, _ = select.select([wake, *channels], [], [], timeout)
            except InterruptedError:
                continue
            for sock in readable:
                if sock is wake:
                    try:
                        while wake.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._read_channel(channels[sock])
        if self.abort_code is not None:
            return self.abort_code
        worst = max(self.codes, default=EXIT_OK)
        log.info("all workers exited: exit code %d", worst)
        return worst


def _remove_stale_metrics_dirs() -> None:
    """The metrics directories of supervisors that are gone (killed before they could
    remove theirs): named with their pid, removed once no process has it."""
    for path in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*-*"):
        pid = path.name[len(METRICS_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # alive (another user's)


def supervise(args: argparse.Namespace, config) -> int:
    """Run ``args.workers`` workers of ``callengine serve`` (see the module docstring)."""
    if args.workers < 1:
        print("callengine: error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    return Supervisor(args, config).run()


class WorkerChannel:
    """A worker's end of its supervisor's socket pair: :meth:`ready` says it listens; a
    thread waits for end of file (the supervisor is gone) and then starts the drain as
    SIGUSR1 does (ignored if one already runs: the drain goes on within its deadlines)."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)

    def ready(self) -> None:
        """Call once listening and the signal handlers are in place."""
        try:
            self.sock.sendall(b"ready\n")
        except OSError:
            pass
        threading.Thread(target=self._watch, name="callengine-supervisor-watch", daemon=True).start()

    def _watch(self) -> None:
        try:
            while self.sock.recv(256):
                pass
        except OSError:
            pass
        log.warning("the supervisor is gone: draining")
        os.kill(os.getpid(), signal.SIGUSR1)
