"""The HTTP side of a WebSocket connection: read the upgrade request, then accept it (101)
into a :class:`~callengine.call.websocket.WebSocketConnection` or reject it with an HTTP
status and a body. The names are importable from ``callengine.call.websocket`` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11
import trio
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["HandshakeFailed", "PlainRequest", "UpgradeRequest", "read_request", "read_upgrade_request"]

RECEIVE_SIZE = 65536


class HandshakeFailed(Exception):
    """The peer closed, or sent something that is not a WebSocket upgrade request."""


async def read_upgrade_request(stream: trio.abc.Stream) -> "UpgradeRequest":
    """Read the HTTP upgrade request from ``stream``.

    A request that is not a valid WebSocket upgrade (wrong method, missing headers, bad
    HTTP, an unfinished header block over h11's 16 KiB bound) is answered with the HTTP
    status wsproto suggests (400 or 426) and raises :class:`HandshakeFailed`, as does a peer
    that closes first. A complete request is at most one read (64 KiB) plus that bound. The
    caller bounds the time (a slowloris never completes the request). Bytes read after the
    request (a client that did not wait for our 101) are kept: they are its first frames.
    """
    request = await read_request(stream)
    assert isinstance(request, UpgradeRequest)
    return request


async def read_request(stream: trio.abc.Stream, plain_paths: "frozenset[str] | set[str]" = frozenset()) -> "UpgradeRequest | PlainRequest":
    """As :func:`read_upgrade_request`, except that a plain ``GET`` or ``HEAD`` (no upgrade)
    of a path in ``plain_paths`` (the query string aside) comes back as a
    :class:`PlainRequest` for the caller to answer: health checks and metrics scrapes
    share the call port."""
    handshake = H11Handshake(ConnectionType.SERVER)
    received = bytearray()
    while True:
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise HandshakeFailed(f"connection lost during the upgrade request: {exc!r}") from None
        if not data:
            raise HandshakeFailed("connection closed before the upgrade request was complete")
        if plain_paths and len(received) < _PLAIN_LIMIT:
            received += data
        try:
            handshake.receive_data(bytes(data))
        except RemoteProtocolError as exc:
            plain = _plain_request(stream, bytes(received), plain_paths) if plain_paths else None
            if plain is not None:
                return plain
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                try:
                    await stream.send_all(handshake.send(hint))
                except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                    pass
            raise HandshakeFailed(f"not a WebSocket upgrade: {exc}") from None
        for event in handshake.events():
            if isinstance(event, Request):
                return UpgradeRequest(stream, handshake, event)


# a plain request's head is small: anything longer is not a health check
_PLAIN_LIMIT = 16384


def _plain_request(stream: trio.abc.Stream, data: bytes, plain_paths: "frozenset[str] | set[str]") -> "PlainRequest | None":
    """The request in ``data`` if it is a plain GET/HEAD of one of ``plain_paths``."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_PLAIN_LIMIT)
    try:
        conn.receive_data(data)
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request) or event.method not in (b"GET", b"HEAD"):
        return None
    target = event.target.decode("latin-1")
    if target.split("?", 1)[0] not in plain_paths:
        return None
    headers = [(bytes(k), bytes(v)) for k, v in event.headers]
    return PlainRequest(stream, conn, event.method.decode(), target, headers)


class PlainRequest:
    """A plain HTTP request (a health check or a metrics scrape) on the call port."""

    def __init__(self, stream: trio.abc.Stream, conn: "h11.Connection", method: str, target: str, headers: list[tuple[bytes, bytes]]) -> None:
        self._stream = stream
        self._conn = conn
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.headers = headers

    async def respond(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        """Answer and end the exchange (the connection is closed after it)."""
        conn = self._conn
        headers = [("content-type", content_type), ("content-length", str(len(body))), ("connection", "close")]
        data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        if self.method != "HEAD":
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await self._stream.send_all(data)


def _bytes_after_request(handshake: H11Handshake) -> bytes:
    """What the client sent after its request. wsproto's server side does not hand these
    bytes to the Connection it makes on accept (its client side does), and has no public
    accessor: they are still in the h11 connection's receive buffer."""
    trailing = getattr(getattr(handshake, "_h11_connection", None), "trailing_data", None)
    return bytes(trailing[0]) if trailing else b""

if TYPE_CHECKING:
    from .websocket import WebSocketConnection


class UpgradeRequest:
    """A WebSocket upgrade request, not yet answered: :meth:`accept` or :meth:`reject`."""

    def __init__(self, stream: trio.abc.Stream, handshake: H11Handshake, request: Request) -> None:
        self._stream = stream
        self._handshake = handshake
        self.path: str = request.target
        self.host: str = request.host
        #: the request's headers as (lower-case name, value) bytes pairs; Host,
        #: Sec-WebSocket-Protocol and Sec-WebSocket-Extensions are parsed out by wsproto
        #: (see ``host`` and ``proposed_subprotocols``)
        self.headers: list[tuple[bytes, bytes]] = [(bytes(k), bytes(v)) for k, v in request.extra_headers]
        self.proposed_subprotocols: tuple[str, ...] = tuple(request.subprotocols)

    async def accept(self, *, subprotocol: str | None = None, max_message_size: int = 256 * 1024) -> "WebSocketConnection":
        """Answer 101 Switching Protocols and return the open connection."""
        data = self._handshake.send(AcceptConnection(subprotocol=subprotocol))
        await self._stream.send_all(data)
        from .websocket import WebSocketConnection  # websocket.py imports this module

        return WebSocketConnection(
            self._stream,
            max_message_size=max_message_size,
            subprotocol=subprotocol,
            path=self.path,
            received=_bytes_after_request(self._handshake),
        )

    async def reject(self, status: int, body: bytes = b"") -> None:
        """Answer with an HTTP error ``status`` and a plain-text ``body``."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        data = self._handshake.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        data += self._handshake.send(RejectData(data=body, body_finished=True))
        await self._stream.send_all(data)
