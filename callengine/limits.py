"""File descriptors: the process's limit, a cap on connections mid-handshake, and an accept
loop that survives running out of descriptors.

Every connection holds a descriptor from accept on. Without a cap on connections that
have not finished their upgrade request, a few hundred half-open connections (a port
scan, a slow client, an attack) can hold every descriptor for the handshake timeout; then
real calls cannot be accepted, and ``trio.serve_listeners`` logs an EMFILE traceback ten
times a second. Here:

* :class:`HandshakeGate` bounds the connections mid-handshake. Over the cap, the oldest of
  them is dropped if it has waited :data:`EVICT_AFTER_S` (a real provider's upgrade takes
  one round trip, so it is the half-open ones that go); otherwise the new connection is.
  Either way the one dropped gets a short ``HTTP/1.1 503`` and is closed at once.
* :func:`accept_loop` backs off when accept fails for want of descriptors or memory
  (EMFILE, ENFILE, ENOBUFS, ENOMEM) and logs one WARNING line per interval with a count.
* :func:`raise_fd_limit` raises the soft RLIMIT_NOFILE to the hard limit (the CLI does
  at start); :func:`default_max_pending_handshakes` sizes the cap from the limit.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from typing import Any, Awaitable, Callable

import trio

__all__ = [
    "CAPACITY_ERRNOS",
    "RESERVED_FDS",
    "EVICT_AFTER_S",
    "BUSY_RESPONSE",
    "fd_limits",
    "raise_fd_limit",
    "default_max_pending_handshakes",
    "RateLimitedLog",
    "HandshakeGate",
    "accept_loop",
]

log = logging.getLogger("callengine.server")

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: descriptors kept for the process itself (logs, the listeners, imports, agent clients)
RESERVED_FDS = 64
#: a pending handshake this old may be dropped to make room for a new connection
EVICT_AFTER_S = 1.0
#: how often the accept loop and the gate log what they refused
REPORT_INTERVAL_S = 5.0
ACCEPT_BACKOFF_MIN_S = 0.05
ACCEPT_BACKOFF_MAX_S = 1.0

BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 29\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b"too many pending connections\n"
)


# --- the process's limit ------------------------------------------------------------------


def fd_limits() -> tuple[int | None, int | None]:
    """(soft, hard) RLIMIT_NOFILE; None where unlimited or unknown (no ``resource``)."""
    try:
        import resource
    except ImportError:  # Windows
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    return (None if soft == inf else soft), (None if hard == inf else hard)


def raise_fd_limit() -> tuple[int | None, int | None]:
    """Raise the soft descriptor limit to the hard one where the system allows it.
    Returns the soft limit (before, after)."""
    before, hard = fd_limits()
    if before is None or before == hard:
        return before, before
    try:
        import resource

        target = hard if hard is not None else resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError):  # e.g. macOS refuses an unlimited soft limit
        return before, before
    return before, fd_limits()[0]


def default_max_pending_handshakes(limit: int | None = None) -> int:
    """A quarter of the descriptors beyond :data:`RESERVED_FDS`, between 8 and 1024: enough
    for any burst of real calls, and half-open connections can never take the descriptors
    live calls and their agents need. ``limit``: the soft RLIMIT_NOFILE (default: now)."""
    if limit is None:
        limit = fd_limits()[0] or 4096
    return max(8, min(1024, (limit - RESERVED_FDS) // 4))


# --- logging what was refused, boundedly ---------------------------------------------------


class RateLimitedLog:
    """At most one line per ``interval_s``, carrying how many events it stands for.

    The first event is logged at once; later ones are counted into the next line.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = REPORT_INTERVAL_S, level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.level = level
        self.clock = clock
        self.total = 0
        self._count = 0
        self._last = -math.inf

    def note(self, fmt: str, *args: Any) -> bool:
        """Count one event; log ``fmt % (count, *args)`` if the interval is over."""
        self.total += 1
        self._count += 1
        now = self.clock()
        if now - self._last < self.interval_s:
            return False
        count, self._count = self._count, 0
        self._last = now
        self.logger.log(self.level, fmt, count, *args)
        return True

    def reset(self) -> None:
        self._count = 0
        self._last = -math.inf


# --- connections mid-handshake ------------------------------------------------------------


class _Pending:
    __slots__ = ("since", "scope", "evicted")

    def __init__(self, since: float) -> None:
        self.since = since
        self.scope = trio.CancelScope()
        self.evicted = False


class HandshakeGate:
    """Bounds the connections whose upgrade request is not read yet (see the module doc).

    :meth:`enter` when a connection is accepted: None means refuse it. Run the handshake
    read inside ``entry.scope``; if it is cancelled and ``entry.evicted`` is set, the
    connection was dropped for a newer one. :meth:`leave` when the read is over.
    """

    def __init__(self, limit: int, evict_after_s: float = EVICT_AFTER_S) -> None:
        if limit < 1:
            raise ValueError(f"max_pending_handshakes must be at least 1, got {limit}")
        self.limit = limit
        self.evict_after_s = evict_after_s
        self._pending: dict[_Pending, None] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._pending)

    def enter(self) -> _Pending | None:
        now = trio.current_time()
        if len(self._pending) >= self.limit:
            oldest = next(iter(self._pending))
            if now - oldest.since < self.evict_after_s:
                return None
            del self._pending[oldest]
            oldest.evicted = True
            oldest.scope.cancel()
        entry = _Pending(now)
        self._pending[entry] = None
        return entry

    def leave(self, entry: _Pending) -> None:
        self._pending.pop(entry, None)


# --- accepting -----------------------------------------------------------------------------


async def accept_loop(
    listener: trio.SocketListener,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    nursery: trio.Nursery,
    *,
    logger: logging.Logger = log,
) -> None:
    """Accept connections on ``listener`` for ever, each handled in a task of ``nursery``.

    Unlike ``trio.serve_listeners``, running out of descriptors or buffers is not logged
    with a traceback ten times a second: the loop waits (50 ms doubling to 1 s, since
    every retry fails until a descriptor is freed), logs one line per interval with the
    count, and says once when accepting works again. Other errors propagate.
    """
    failures = RateLimitedLog(logger, REPORT_INTERVAL_S, clock=trio.current_time)
    failed = 0
    delay = 0.0
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in CAPACITY_ERRNOS:
                raise
            failed += 1
            delay = min(ACCEPT_BACKOFF_MAX_S, delay * 2 if delay else ACCEPT_BACKOFF_MIN_S)
            failures.note(
                "cannot accept connections: %d accept(s) failed since the last report (%s; descriptor limit %s); next try in %.2f s",
                os.strerror(exc.errno),
                fd_limits()[0] or "unlimited",
                delay,
            )
            await trio.sleep(delay)
            continue
        if failed:
            logger.warning("accepting connections again after %d failed accept(s)", failed)
            failed = 0
            delay = 0.0
            failures.reset()
        nursery.start_soon(handler, stream)
