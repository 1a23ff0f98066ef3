"""The narrow seam between a call session and its connection.

A transport has three coroutines: ``get_message()``, ``send_message(message)`` and
``aclose(code, reason)``. The server's own wsproto connection
(:class:`callengine.call.websocket.WebSocketConnection`) satisfies it directly; a
trio-websocket connection (the dialer's client side) through :class:`WebSocketTransport`;
:func:`memory_transport_pair` gives two connected in-memory ends for tests and for the
in-process simulated provider.
"""

from __future__ import annotations

import math
import weakref
from typing import Protocol, Union, runtime_checkable

import trio

__all__ = [
    "Transport",
    "TransportClosed",
    "MemoryTransport",
    "memory_transport_pair",
    "WebSocketTransport",
    "aclose_quietly",
]

WireMessage = Union[str, bytes]


class TransportClosed(Exception):
    """The connection is closed; ``code`` and ``reason`` say how, when known."""

    def __init__(self, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


@runtime_checkable
class Transport(Protocol):
    async def get_message(self) -> WireMessage:
        """Wait for the next message. Raises TransportClosed when the connection is closed."""
        ...

    async def send_message(self, message: WireMessage) -> None:
        """Send one message. Raises TransportClosed when the connection is closed."""
        ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection (idempotent)."""
        ...


class MemoryTransport:
    """One end of an in-memory message connection (see :func:`memory_transport_pair`).

    Messages are delivered in order. Closing either end with a code makes the other end's
    ``get_message`` raise :class:`TransportClosed` with that code, after the messages sent
    before the close have been read, as a WebSocket close handshake would. ``abort()``
    simulates a dropped TCP connection: no close code, and unread messages are lost.
    """

    def __init__(self, name: str, buffer: float) -> None:
        self.name = name
        self._buffer = buffer
        self._peer_ref: weakref.ref[MemoryTransport] | None = None  # weak: no cycle between the ends
        self._send_chan: trio.MemorySendChannel[WireMessage] | None = None
        self._recv_chan: trio.MemoryReceiveChannel[WireMessage] | None = None
        self.close_code: int | None = None  # the code this end closed with (or received)
        self.close_reason: str | None = None
        self.closed = False
        self.sent: list[WireMessage] = []  # what this end sent, for tests

    @property
    def _peer(self) -> MemoryTransport | None:
        return self._peer_ref() if self._peer_ref is not None else None

    def _closed_error(self) -> TransportClosed:
        return TransportClosed(self.close_code, self.close_reason)

    async def get_message(self) -> WireMessage:
        if self._recv_chan is None or self.closed:
            raise self._closed_error()
        try:
            return await self._recv_chan.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            peer = self._peer
            if peer is not None and peer.closed and not self.closed:
                # the peer's close: answer it, completing the close handshake
                self.closed = True
                self.close_code, self.close_reason = peer.close_code, peer.close_reason
                if self._send_chan is not None:
                    self._send_chan.close()
            raise self._closed_error() from None

    async def send_message(self, message: WireMessage) -> None:
        if self.closed or self._send_chan is None:
            raise self._closed_error()
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        try:
            await self._send_chan.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed_error() from None
        self.sent.append(message)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason = code, reason
        if self._send_chan is not None:
            self._send_chan.close()  # the peer reads what was sent, then the close
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        """Drop the connection without a close handshake (like a TCP reset)."""
        self.closed = True
        self.close_code, self.close_reason = None, "aborted"
        for chan in (self._send_chan, self._recv_chan):
            if chan is not None:
                chan.close()
        peer = self._peer
        if peer is not None and not peer.closed:
            peer.closed = True
            peer.close_code, peer.close_reason = None, "aborted"
            if peer._recv_chan is not None:
                peer._recv_chan.close()


def memory_transport_pair(buffer: float = math.inf) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports: (engine side, provider side).

    ``buffer`` bounds each direction's queue; the default is unbounded, so a sender never
    blocks (a real socket buffers too). Use a small buffer to model a peer that stops reading.
    """
    a, b = MemoryTransport("engine", buffer), MemoryTransport("provider", buffer)
    a_to_b_send, a_to_b_recv = trio.open_memory_channel[WireMessage](buffer)
    b_to_a_send, b_to_a_recv = trio.open_memory_channel[WireMessage](buffer)
    a._send_chan, b._recv_chan = a_to_b_send, a_to_b_recv
    b._send_chan, a._recv_chan = b_to_a_send, b_to_a_recv
    a._peer_ref, b._peer_ref = weakref.ref(b), weakref.ref(a)
    return a, b


class WebSocketTransport:
    """Adapts a ``trio_websocket.WebSocketConnection`` to the transport seam."""

    def __init__(self, ws) -> None:  # ws: trio_websocket.WebSocketConnection
        from trio_websocket import ConnectionClosed

        self._ws = ws
        self._closed_exc = ConnectionClosed

    @property
    def websocket(self):
        return self._ws

    def _translate(self, exc) -> TransportClosed:
        reason = getattr(exc, "reason", None)
        return TransportClosed(getattr(reason, "code", None), getattr(reason, "reason", None))

    async def get_message(self) -> WireMessage:
        try:
            return await self._ws.get_message()
        except self._closed_exc as exc:
            raise self._translate(exc) from None

    async def send_message(self, message: WireMessage) -> None:
        try:
            await self._ws.send_message(message)
        except self._closed_exc as exc:
            raise self._translate(exc) from None
        except trio.BrokenResourceError:
            raise TransportClosed(None, "connection broken") from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        try:
            await self._ws.aclose(code, reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def abort(self) -> None:
        """Drop the TCP connection without a close handshake (for fault tests)."""
        stream = getattr(self._ws, "_stream", None)
        if stream is not None:
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def aclose_quietly(resource: trio.abc.AsyncResource, timeout: float = 1.0) -> None:
    """Close ``resource`` in a shielded, bounded scope and swallow any error: the last step
    of a connection's teardown must not raise, whatever ended the connection (a broken
    socket, a failed TLS shutdown...)."""
    with trio.move_on_after(timeout, shield=True):
        try:
            await resource.aclose()
        except Exception:
            pass
