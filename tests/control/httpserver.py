"""A small real HTTP/1.1 server on 127.0.0.1 (trio + h11) that plays a provider's REST API.

Tests script the answers per (method, path) and read back every request exactly as it
arrived: method, target, headers and body. Nothing here touches the network beyond
loopback.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from typing import Any

import attrs
import h11
import trio

from callengine.testing._http import read_request


@attrs.frozen
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers.get("content-type")
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        assert self.headers.get("content-type") == "application/x-www-form-urlencoded", self.headers.get("content-type")
        pairs = urllib.parse.parse_qsl(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        out = dict(pairs)
        assert len(out) == len(pairs), f"repeated form fields: {pairs}"
        return out


@attrs.frozen
class Reply:
    status: int = 200
    body: Any = None  # JSON-encodable, or bytes sent as they are
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0  # answer late (timeouts)
    drop: bool = False  # close the connection without answering (transport errors)


class FakeAPI:
    """Serve scripted replies; ``requests`` is every request received, in order."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in turn; the last one repeats."""
        assert replies
        self._routes[(method, path)] = list(replies)

    def _next_reply(self, method: str, path: str) -> Reply:
        queue = self._routes.get((method, path))
        if not queue:
            return Reply(599, {"message": f"no route for {method} {path}"})
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def start(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return self.base_url

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(30):  # no test connection lives longer
                while True:
                    request, body = await read_request(conn, stream)
                    if request is None:
                        return
                    headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                    recorded = Recorded(request.method.decode(), request.target.decode(), headers, body)
                    self.requests.append(recorded)
                    reply = self._next_reply(recorded.method, recorded.path)
                    if reply.delay_s:
                        await trio.sleep(reply.delay_s)
                    if reply.drop:
                        return
                    await self._send_reply(conn, stream, reply)
                    if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _send_reply(self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> None:
        if reply.body is None:
            payload, ctype = b"", None
        elif isinstance(reply.body, bytes):
            payload, ctype = reply.body, "text/plain"
        else:
            payload, ctype = json.dumps(reply.body).encode(), "application/json"
        headers = [("content-length", str(len(payload)))] + list(reply.headers)
        if ctype and reply.status != 204:
            headers.append(("content-type", ctype))
        if reply.status == 204:
            payload, headers = b"", [h for h in headers if h[0] != "content-length"]
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)) or b"")
        if payload:
            await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
