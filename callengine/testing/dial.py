"""Dial a callengine server (or any agent endpoint) as a simulated provider over a real
WebSocket, the way Awaaz or Knowlarity would."""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from typing import AsyncIterator

import trio
from trio_websocket import HandshakeError, wrap_client_stream

from ..call.transport import WebSocketTransport, aclose_quietly
from .provider import SimulatedProvider

__all__ = ["open_dialed_call", "DialError"]

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"


class DialError(Exception):
    """The server refused or failed the WebSocket handshake."""


@contextlib.asynccontextmanager
async def open_dialed_call(
    url: str,
    provider: str = "awaaz",
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **provider_options,
) -> AsyncIterator[SimulatedProvider]:
    """Connect to ``url`` and run a :class:`SimulatedProvider` call on it.

    The provider starts the call (start message, then the microphone stream) before the
    block runs. Leaving the block hangs up as the provider would (``stop``) unless the call
    already ended; the context manager returns when the connection is closed.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("ws", "wss"):
        raise DialError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parsed.scheme == "wss"
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if secure else 80)
    resource = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    subprotocols = [KNOWLARITY_SUBPROTOCOL] if provider == "knowlarity" else None
    # We open and own the TCP stream so that it is closed on every path, a refused
    # handshake included.
    try:
        with trio.fail_after(connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise DialError(f"cannot connect to {url}: {exc!r}") from exc
    try:
        if secure:
            stream = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
        failed: BaseException | None = None
        handshake_done = False
        try:
            async with trio.open_nursery() as ws_nursery:  # holds the websocket's reader task
                try:
                    with trio.fail_after(connect_timeout):
                        ws = await wrap_client_stream(
                            ws_nursery,
                            stream,
                            host,
                            resource,
                            subprotocols=subprotocols,
                            extra_headers=extra_headers,
                            message_queue_size=64,
                        )
                except (HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
                    failed = exc  # raised below, outside the nursery, so callers see DialError itself
                    ws_nursery.cancel_scope.cancel()
                if failed is None:
                    handshake_done = True
                    sim = SimulatedProvider(WebSocketTransport(ws), provider, **provider_options)
                    try:
                        async with trio.open_nursery() as nursery:
                            await nursery.start(sim.run)
                            try:
                                yield sim
                                if not sim.closed.is_set():
                                    await sim.stop()
                            finally:
                                with trio.move_on_after(5, shield=True):
                                    await sim.closed.wait()
                                nursery.cancel_scope.cancel()
                    finally:
                        with trio.move_on_after(2, shield=True):
                            await ws.aclose()
                        ws_nursery.cancel_scope.cancel()
        except* HandshakeError as group:
            # trio-websocket's client reader task raises the rejection into its nursery
            if handshake_done:
                raise
            failed = group.exceptions[0]
        if failed is not None:
            raise DialError(f"handshake with {url} failed: {failed!r}") from failed
    finally:
        await aclose_quietly(stream)
