"""The engine's own server-side WebSocket connection: wsproto driven from the call's tasks.

trio-websocket gives every connection a reader task that parses frames and hands each
message to the consumer through a memory channel, and a lock around every send. For a call
that is one extra task resumption and two channel operations per inbound 20 ms frame, and a
lock per outbound frame; at 40 echo calls that was a fifth of the engine's CPU. Here the
session's reader task drives wsproto itself: ``get_message()`` reads the socket, feeds
wsproto and returns the next message, with no task or queue between. Sends take a
flag, not a lock: the writer task is the only sender of data, and the rare control frames
the reader must answer (pong, the close reply) wait for the flag. On a plain TCP stream the
socket's descriptor is read and written directly (see "the socket" below), which spares two
trips through the scheduler per frame.

:func:`read_upgrade_request` reads the HTTP upgrade request from a trio stream; the
:class:`UpgradeRequest` it returns is accepted (101, optional sub-protocol) into a
:class:`WebSocketConnection`, which satisfies the transport seam (see ``transport.py``), or
rejected with an HTTP status and a body.

Semantics, matching what the session expects of any transport:

* messages that arrived before the peer's close are delivered before ``TransportClosed``;
* the peer's close frame is answered, and its code and reason are reported;
* a TCP close without a close frame reports code 1006;
* a message over ``max_message_size`` (counted across fragments, so a giant frame is never
  buffered whole; in bytes for binary messages, in characters for text ones, which wsproto
  hands over decoded: at most 4 bytes each) closes the connection with 1009 and reports 1009;
* a malformed frame closes with the code wsproto assigns (1002, 1007) and reports it;
* ``aclose(code, reason)`` sends the close frame, waits for the peer's reply, then closes
  TCP; if a send was cancelled part-way (a frame may be half written) it closes TCP only.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Union

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .transport import TransportClosed, aclose_quietly

__all__ = ["HandshakeFailed", "UpgradeRequest", "WebSocketConnection", "read_upgrade_request"]

WireMessage = Union[str, bytes]

ABNORMAL_CLOSURE = 1006
MESSAGE_TOO_BIG = 1009
RECEIVE_SIZE = 65536
#: reads that found data at once (no wait) before the reader yields to the scheduler anyway
READS_BETWEEN_YIELDS = 8


class HandshakeFailed(Exception):
    """The peer closed, or sent something that is not a WebSocket upgrade request."""


async def read_upgrade_request(stream: trio.abc.Stream) -> "UpgradeRequest":
    """Read the HTTP upgrade request from ``stream``.

    A request that is not a valid WebSocket upgrade (wrong method, missing headers, bad
    HTTP, an unfinished header block over h11's 16 KiB bound) is answered with the HTTP
    status wsproto suggests (400 or 426) and raises :class:`HandshakeFailed`, as does a peer
    that closes first. A complete request is at most one read (64 KiB) plus that bound. The
    caller bounds the time (a slowloris never completes the request). Bytes a client sends
    after its request but before our 101 are dropped (RFC 6455 clients wait for the 101).
    """
    handshake = H11Handshake(ConnectionType.SERVER)
    while True:
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise HandshakeFailed(f"connection lost during the upgrade request: {exc!r}") from None
        if not data:
            raise HandshakeFailed("connection closed before the upgrade request was complete")
        try:
            handshake.receive_data(data)
        except RemoteProtocolError as exc:
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
        proto = self._handshake.connection
        assert proto is not None
        return WebSocketConnection(self._stream, proto, max_message_size=max_message_size, subprotocol=subprotocol, path=self.path)

    async def reject(self, status: int, body: bytes = b"") -> None:
        """Answer with an HTTP error ``status`` and a plain-text ``body``."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        data = self._handshake.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        data += self._handshake.send(RejectData(data=body, body_finished=True))
        await self._stream.send_all(data)


class WebSocketConnection:
    """An open server-side WebSocket on a trio stream (see the module docstring).

    One task may call :meth:`get_message` and one other task :meth:`send_message` at a
    time (the session's reader and writer); :meth:`aclose` once both are done.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: Connection,
        *,
        max_message_size: int = 256 * 1024,
        subprotocol: str | None = None,
        path: str = "/",
    ) -> None:
        self._stream = stream
        self._proto = proto
        self.max_message_size = max_message_size
        self.subprotocol = subprotocol
        self.path = path
        self._messages: deque[WireMessage] = deque()
        self._parts: list = []  # fragments of the message being received
        self._parts_size = 0
        self._closed: TransportClosed | None = None  # once set, the connection is closed
        self._lost = False  # the TCP connection is gone: nothing more can be sent or read
        self._send_broken = False  # a send was cancelled part-way: the byte stream is unusable
        self._parse_failed = False  # wsproto could not parse a frame: it parses nothing more
        self._sending = False
        self._send_idle: trio.Event | None = None
        self._aclosed = False
        # On a plain TCP stream the hot path reads and writes the socket's descriptor
        # directly (see _recv_some, _send_all); TLS and other streams use the stream API.
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._reads_without_yield = 0

    @property
    def stream(self) -> trio.abc.Stream:
        return self._stream

    @property
    def closed(self) -> TransportClosed | None:
        """Why the connection is closed (code and reason), or None while it is open."""
        return self._closed

    def _closed_error(self) -> TransportClosed:
        """A fresh exception (each raise gets its own traceback) saying why it is closed."""
        closed = self._closed or TransportClosed(ABNORMAL_CLOSURE, "closed")
        return TransportClosed(closed.code, closed.reason)

    # --- receiving ----------------------------------------------------------------------

    async def get_message(self) -> WireMessage:
        messages = self._messages
        while not messages:
            if self._closed is not None:
                raise self._closed_error()
            await self._receive()
        return messages.popleft()

    async def _receive(self) -> None:
        """Read once from the socket and process what wsproto makes of it."""
        try:
            data = await self._recv_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._connection_lost("connection lost")
            return
        if not data:
            self._connection_lost("closed without a close frame")
            return
        self._proto.receive_data(data)
        replies = self._process_events()
        for reply in replies:
            try:
                await self._send_event(reply, control=True)
            except TransportClosed:
                return

    def _process_events(self) -> list:
        """Collect messages; return the control frames to send back (pong, close), as
        events: their bytes are made when they are sent (see :meth:`_send_event`)."""
        replies = []
        limit = self.max_message_size
        for event in self._proto.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self._closed is not None:
                    continue  # after we closed: the peer's late messages are dropped
                if event.message_finished and not self._parts:
                    if len(event.data) > limit:
                        replies.extend(self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes"))
                        continue
                    self._messages.append(event.data)
                    continue
                self._parts.append(event.data)
                self._parts_size += len(event.data)
                if self._parts_size > limit:
                    self._parts.clear()
                    self._parts_size = 0
                    replies.extend(self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes"))
                    continue
                if event.message_finished:
                    joiner = "" if kind is TextMessage else b""
                    self._messages.append(joiner.join(self._parts))
                    self._parts.clear()
                    self._parts_size = 0
            elif kind is Ping:
                replies.append(event.response())
            elif kind is CloseConnection:
                state = self._proto.state
                if state is ConnectionState.REMOTE_CLOSING:
                    # the peer closes: answer, report its code
                    replies.append(event.response())
                    if self._closed is None:
                        self._closed = TransportClosed(event.code, event.reason)
                elif state is ConnectionState.OPEN:
                    # wsproto could not parse a frame (1002, 1007): close with its code; the
                    # peer's reply could not be parsed either, so it is not waited for
                    self._parse_failed = True
                    replies.extend(self._fail(event.code, event.reason or "protocol error"))
                elif self._closed is None:
                    # the reply to a close we sent
                    self._closed = TransportClosed(event.code, event.reason)
        return replies

    def _fail(self, code: int, reason: str) -> list:
        """Close from our side because of what the peer sent."""
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
        return [CloseConnection(code=code, reason=reason[:120])]

    def _connection_lost(self, reason: str) -> None:
        self._lost = True
        if self._closed is None:
            self._closed = TransportClosed(ABNORMAL_CLOSURE, reason)

    # --- sending ------------------------------------------------------------------------

    async def send_message(self, message: WireMessage) -> None:
        if self._closed is not None:
            raise self._closed_error()
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        await self._send_event(Message(data=message))

    async def _send_event(self, event, *, control: bool = False) -> None:
        """Frame ``event`` and send it. The frame is made only once this task holds the
        send flag, so wsproto's state at that moment decides: nothing is framed after the
        close frame has been (no data frame can follow it on the wire). A control reply
        that no longer applies (a pong or a close reply once closed) is skipped."""
        while self._sending:  # another task is mid-send (rare: a pong during a frame)
            if self._send_idle is None:
                self._send_idle = trio.Event()
            await self._send_idle.wait()
        # Cancellation before any byte goes out leaves the stream clean; past this point a
        # cancelled send_all may have written part of a frame. No await from here to
        # send_all: nothing else can frame or send in between.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._lost or self._send_broken:
            raise TransportClosed(self._closed.code if self._closed else ABNORMAL_CLOSURE, "connection broken")
        try:
            data = self._proto.send(event)
        except LocalProtocolError:
            if control:
                return
            raise self._closed_error() from None
        self._sending = True
        try:
            await self._send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._connection_lost("connection broken")
            raise TransportClosed(ABNORMAL_CLOSURE, "connection broken") from None
        except BaseException:
            self._send_broken = True
            raise
        finally:
            self._sending = False
            if self._send_idle is not None:
                self._send_idle.set()
                self._send_idle = None

    # --- the socket -------------------------------------------------------------------

    # trio's SocketStream takes a trip through the scheduler after every successful recv
    # and send, and wraps each in a conflict detector and an async context manager: per
    # 20 ms frame that is two extra task resumptions and about as much Python as wsproto's
    # framing. Here a plain TCP stream's descriptor is read and written directly with the
    # same non-blocking pattern (try the call; on EAGAIN wait_readable / wait_writable), and
    # the task yields where it waits. The writer yields when it next waits for work; the
    # reader yields at least every READS_BETWEEN_YIELDS reads, so a flood cannot starve the
    # other tasks. The descriptor is looked up on every call (fileno() is -1 once the
    # stream is closed), never cached: a closed descriptor's number can be reused.

    async def _recv_some(self) -> bytes:
        sock = self._sock
        if sock is None:
            return await self._stream.receive_some(RECEIVE_SIZE)
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the stream was closed")
            try:
                data = os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                waited = True
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"receive failed: {exc!r}") from exc
            break
        if waited:
            self._reads_without_yield = 0
        else:
            self._reads_without_yield += 1
            if self._reads_without_yield >= READS_BETWEEN_YIELDS:
                self._reads_without_yield = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def _send_all(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the stream was closed")
            try:
                sent += os.write(fd, view[sent:])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc!r}") from exc

    # --- closing ------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``: send the close frame, wait for the peer's, close TCP.
        Idempotent; the caller bounds the time (a peer that never answers)."""
        if self._aclosed:
            await trio.lowlevel.checkpoint()
            return
        self._aclosed = True
        try:
            if self._closed is None:
                self._closed = TransportClosed(code, reason)
            if not self._lost and not self._send_broken and self._proto.state is ConnectionState.OPEN:
                try:
                    await self._send_event(CloseConnection(code=code, reason=reason), control=True)
                except TransportClosed:
                    pass
            while (
                self._proto.state is ConnectionState.LOCAL_CLOSING
                and not (self._lost or self._send_broken or self._parse_failed)
            ):
                await self._receive()  # until the peer's close frame (its messages are dropped)
        finally:
            await aclose_quietly(self._stream)

    async def abort(self) -> None:
        """Drop the TCP connection without a close handshake (for fault tests)."""
        self._connection_lost("aborted")
        self._aclosed = True
        await aclose_quietly(self._stream)
