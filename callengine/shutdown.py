"""How ``callengine serve`` ends, whatever its agents do (the CLI's side of shutdown).

The server drains with deadlines and reports the agents that did not exit
(:meth:`callengine.server.CallServer.drain`). But ``trio.run`` cannot return while a
task lingers, and an agent that shields an endless wait, or blocks the event loop, keeps
its task: the process itself must then end. :class:`ShutdownGuard`, armed when the drain
starts:

* makes a second SIGTERM or SIGINT end the process at once (exit 128 + signal number),
  from a plain signal handler, which runs even while the event loop is blocked; a drain
  started by SIGUSR1 (Kubernetes' preStop) takes the kubelet's SIGTERM as part of it;
* starts a watchdog thread that ends the process (exit :data:`EXIT_STUCK`) if the
  shutdown has not finished by its deadline (the server's own deadlines plus a margin).

Both flush the logging handlers first, then ``os._exit``: nothing else can stop a
process whose main thread will not return.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable, NoReturn

__all__ = ["EXIT_OK", "EXIT_LISTEN", "EXIT_USAGE", "EXIT_STUCK", "ShutdownGuard", "exit_now"]

log = logging.getLogger("callengine.cli")

EXIT_OK = 0  # drained: every agent exited
EXIT_LISTEN = 1  # cannot listen (port in use...)
EXIT_USAGE = 2  # bad arguments, agent or configuration
EXIT_STUCK = 3  # shutdown abandoned agents that would not exit


def exit_now(code: int) -> NoReturn:
    """Flush the logs and the standard streams, then end the process with ``code``."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


class ShutdownGuard:
    """See the module docstring. ``deadline_s``: from :meth:`arm` to the forced exit;
    ``describe``: what is still running, for the watchdog's log line (called from the
    watchdog thread: it must only read plain attributes)."""

    def __init__(self, deadline_s: float, describe: Callable[[], str] = lambda: "", signals=(signal.SIGTERM, signal.SIGINT)) -> None:
        self.deadline_s = deadline_s
        self.describe = describe
        self.signals = signals
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, *, by: int | None = None) -> None:
        """Call in the main thread when the drain starts. ``by``: the signal that started
        it. Started by SIGUSR1 (a Kubernetes preStop hook), the SIGTERM that the kubelet
        sends next continues the same drain; only a signal after that ends the process."""
        self._absorb = by == getattr(signal, "SIGUSR1", None)
        for signum in self.signals:
            signal.signal(signum, self._on_second_signal)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # already draining
        self._thread = threading.Thread(target=self._watch, name="callengine-shutdown-watchdog", daemon=True)
        self._thread.start()

    def disarm(self) -> None:
        """The shutdown finished: no forced exit."""
        self._done.set()

    def _on_second_signal(self, signum: int, frame) -> None:
        if getattr(self, "_absorb", False) and signum == signal.SIGTERM:
            self._absorb = False
            log.info("received SIGTERM during the drain SIGUSR1 started: draining on (a further signal stops at once)")
            return
        log.warning("received %s again: exiting now, without waiting for the calls", signal.Signals(signum).name)
        exit_now(128 + signum)

    def _watch(self) -> None:
        if self._done.wait(self.deadline_s):
            return
        try:
            running = self.describe()
        except Exception as exc:  # a diagnostic must not keep the process alive
            running = f"? ({exc!r})"
        log.error("shutdown did not finish within %.1f s: exiting with code %d%s", self.deadline_s, EXIT_STUCK, f" (still running: {running})" if running else "")
        exit_now(EXIT_STUCK)
