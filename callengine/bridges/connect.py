"""The model-connection seam of the bridges, and its default: a trio-websocket client."""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from typing import AsyncContextManager, AsyncIterator, Callable, Sequence

import trio
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError

from ..call.transport import Transport, WebSocketTransport, aclose_quietly

__all__ = ["Connect", "ModelConnectError", "websocket_connect"]

#: The model-connection seam: ``connect(url, headers)`` is an async context manager giving a
#: :class:`~callengine.call.transport.Transport` (text or binary messages). The default,
#: :func:`websocket_connect`, opens a real WebSocket; tests pass a fake's in-memory one.
Connect = Callable[[str, Sequence[tuple[str, str]]], AsyncContextManager[Transport]]


class ModelConnectError(Exception):
    """The model's WebSocket could not be opened (refused, unreachable, timed out)."""


@contextlib.asynccontextmanager
async def websocket_connect(
    url: str, headers: Sequence[tuple[str, str]], *, connect_timeout: float = 10.0, close_timeout: float = 2.0
) -> AsyncIterator[Transport]:
    """A trio-websocket client connection to ``url`` (``ws://`` or ``wss://``) with
    ``headers``, as a Transport. Raises :class:`ModelConnectError` if it cannot be opened.

    It opens and owns the TCP stream, so that the stream is closed on every path, a refused
    handshake included (trio-websocket's own opener leaves it to the garbage collector)."""
    from trio_websocket import ConnectionRejected, HandshakeError, wrap_client_stream

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ModelConnectError(f"not a ws:// or wss:// URL: {parsed.scheme}://{parsed.netloc}{parsed.path}")
    secure = parsed.scheme == "wss"
    host, port = parsed.hostname, parsed.port or (443 if secure else 80)
    resource = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    try:
        with trio.fail_after(connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise ModelConnectError(f"cannot connect to the model at {host}:{port}: {exc!r}") from None
    failed: str | None = None
    try:
        if secure:
            stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=host, https_compatible=True)
        try:
            async with trio.open_nursery() as ws_nursery:  # holds the websocket's reader task
                ws = None
                try:
                    with trio.fail_after(connect_timeout):
                        ws = await wrap_client_stream(
                            ws_nursery,
                            stream,
                            host,
                            resource,
                            extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                            message_queue_size=256,
                            max_message_size=16 * 1024 * 1024,
                        )
                except ConnectionRejected as exc:
                    failed = f"the model refused the connection: HTTP {exc.status_code}"
                except (HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
                    failed = f"the WebSocket handshake with the model failed: {exc!r}"
                if failed is not None or ws is None:
                    ws_nursery.cancel_scope.cancel()
                else:
                    try:
                        yield WebSocketTransport(ws)
                    finally:
                        with trio.move_on_after(close_timeout, shield=True):
                            await ws.aclose()
                        ws_nursery.cancel_scope.cancel()
        except* ConnectionRejected as group:  # the client's reader task raises a rejection there
            rejected = group.exceptions[0]
            status = getattr(rejected, "status_code", "?")
            failed = failed or f"the model refused the connection: HTTP {status}"
        except* HandshakeError as group:
            failed = failed or f"the WebSocket handshake with the model failed: {group.exceptions[0]!r}"
        except* WsLocalProtocolError as group:
            # trio-websocket's reader answers a ping that came after our close frame, which
            # wsproto refuses ("... in state LOCAL_CLOSING"): the connection is over anyway
            if not all("CLOSING" in str(exc) for exc in group.exceptions):
                raise
    finally:
        await aclose_quietly(stream)
    if failed is not None:
        raise ModelConnectError(failed)
