"""The request reader shared by the local HTTP servers that stand in for vendors' APIs in
tests (h11 on a Trio stream)."""

from __future__ import annotations

import h11
import trio

__all__ = ["read_request"]


async def read_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[h11.Request | None, bytes]:
    """The next request on ``conn`` and its whole body, or ``(None, b"")`` once the client
    has gone (closed before a request, or the connection closed)."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data and request is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""
