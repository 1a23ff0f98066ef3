"""The call port's listening sockets, for one process or for several that share the port.

* :func:`open_listeners`: what a server listens on. By default what
  ``trio.open_tcp_listeners`` opens; with ``reuse_port`` the same, with ``SO_REUSEPORT`` set
  before the bind, so that several processes (``callengine serve --workers N``) each bind
  the port and the kernel spreads new connections over them; or sockets already listening,
  inherited from the supervisor as descriptors (where the OS has no ``SO_REUSEPORT``).
* :func:`bind_shared`: the supervisor's side: sockets bound on every address of the host
  (``--port 0``: one free port for all of them), which keep the port while workers come
  and go. With ``reuse_port`` they never listen (a bound socket that does not listen takes
  no connection, but holds the port against any process that does not set
  ``SO_REUSEPORT`` as well); without it they listen, and the workers inherit them.
"""

from __future__ import annotations

import socket
import sys
from typing import Sequence

import trio

__all__ = ["HAS_REUSEPORT", "open_listeners", "bind_shared"]

#: the kernel spreads connections over sockets bound with SO_REUSEPORT (Linux 3.9+; the
#: BSDs' SO_REUSEPORT does not balance, so only Linux counts)
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")

BACKLOG = 0xFFFF  # as trio: the kernel caps it at net.core.somaxconn


def _bound(family: int, type_: int, proto: int, sockaddr, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    try:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_all(host: str | None, port: int, *, reuse_port: bool, listen: bool) -> list[socket.socket]:
    """Sockets bound on every address of ``host`` (as trio's, an IPv6 address that cannot
    be bound is left out if another one works). ``port`` 0: the first bind picks a free
    port and the other addresses take the same one."""
    sockets: list[socket.socket] = []
    skipped: OSError | None = None
    try:
        for family, type_, proto, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            if sockets and port == 0:
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            try:
                sock = _bound(family, type_, proto, sockaddr, reuse_port=reuse_port)
            except OSError as exc:
                if family != socket.AF_INET6:
                    raise
                skipped = exc
                continue
            sockets.append(sock)
            if listen:
                sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise skipped or OSError(f"no address to listen on for {host!r}")
    return sockets


def bind_shared(host: str | None, port: int, *, reuse_port: bool) -> tuple[list[socket.socket], int]:
    """(sockets bound on every address of ``host``, the port), for the workers to share:
    listening only without ``reuse_port`` (then the workers inherit them). Raises OSError."""
    sockets = _bind_all(host, port, reuse_port=reuse_port, listen=not reuse_port)
    return sockets, sockets[0].getsockname()[1]


async def open_listeners(host: str | None, port: int, *, reuse_port: bool = False, fds: Sequence[int] = ()) -> list[trio.SocketListener]:
    """The server's listeners: ``fds`` (listening sockets inherited from a supervisor), or
    sockets bound on every address of ``host``, with ``SO_REUSEPORT`` if ``reuse_port``."""
    if fds:
        return [trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=fd))) for fd in fds]
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host)
    if not HAS_REUSEPORT:
        raise OSError("SO_REUSEPORT is not available on this system")
    # getaddrinfo of the configured host, once at start (no call is waiting yet)
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in _bind_all(host, port, reuse_port=True, listen=True)]
