"""Direct descriptor I/O for the engine's WebSocket on a plain TCP stream, and the kernel's
count of unsent bytes.

trio's SocketStream takes a trip through the scheduler after every successful recv and
send, and wraps each in a conflict detector and an async context manager: per 20 ms frame
that is two extra task resumptions and about as much Python as wsproto's framing. Here the
descriptor is read and written with the same non-blocking pattern (try the call; on EAGAIN
wait_readable / wait_writable), and the task yields only where it waits; the caller decides
when else to yield (see ``WebSocketConnection``). The descriptor is looked up on every call
(``fileno()`` is -1 once the stream is closed), never cached: a closed descriptor's number
can be reused.
"""

from __future__ import annotations

import array
import os
from typing import Callable

import trio

try:
    import fcntl
except ImportError:  # not on this platform: unsent_bytes reports None
    fcntl = None

__all__ = ["receive_some", "send_all", "unsent_bytes_probe", "SIOCOUTQNSD"]

#: Linux: bytes in a socket's send queue not yet sent (SIOCOUTQ also counts unacknowledged)
SIOCOUTQNSD = 0x894B


async def receive_some(sock: trio.socket.SocketType, max_bytes: int) -> tuple[bytes, bool]:
    """Read up to ``max_bytes``: (data, whether the task waited for them, and so yielded)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    waited = False
    while True:
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the stream was closed")
        try:
            return os.read(fd, max_bytes), waited
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            waited = True
        except OSError as exc:
            raise trio.BrokenResourceError(f"receive failed: {exc!r}") from exc


async def send_all(sock: trio.socket.SocketType, data: bytes, blocked: Callable[[bool], None] | None = None) -> None:
    """Write all of ``data``. ``blocked`` (if given) is called with True before the first
    wait for the socket to take more, and with False once the write is over, only if it
    had to wait: the caller's send deadline then costs nothing when the kernel takes the
    bytes at once, which is nearly always."""
    view = memoryview(data)
    sent = 0
    waited = False
    try:
        while sent < len(view):
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the stream was closed")
            try:
                sent += os.write(fd, view[sent:])
            except BlockingIOError:
                if blocked is not None and not waited:
                    blocked(True)
                waited = True
                await trio.lowlevel.wait_writable(sock)
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc!r}") from exc
    finally:
        if waited and blocked is not None:
            blocked(False)


def _unavailable() -> None:
    return None


def _stream_socket(stream) -> trio.socket.SocketType | None:
    """The socket under ``stream``: a SocketStream's, or a TLS stream's transport's."""
    for _ in range(3):
        if isinstance(stream, trio.SocketStream):
            return stream.socket
        stream = getattr(stream, "transport_stream", None)
        if stream is None:
            return None
    return None


def unsent_bytes_probe(stream) -> Callable[[], int | None]:
    """A function returning the bytes the kernel has not yet sent on ``stream``'s socket,
    or None. Whether the ioctl works here (Linux TCP; not AF_UNIX, not other systems) is
    decided once, now: on the hot path each call is one ioctl into a reused buffer."""
    sock = _stream_socket(stream)
    if sock is None or fcntl is None:
        return _unavailable
    buf = array.array("i", [0])
    ioctl = fcntl.ioctl
    try:
        ioctl(sock.fileno(), SIOCOUTQNSD, buf, True)
    except (OSError, ValueError, OverflowError):
        return _unavailable

    def unsent_bytes() -> int | None:
        fd = sock.fileno()
        if fd < 0:
            return None
        try:
            ioctl(fd, SIOCOUTQNSD, buf, True)
        except OSError:
            return None
        return buf[0]

    return unsent_bytes
