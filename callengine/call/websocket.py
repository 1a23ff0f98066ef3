"""The engine's own server-side WebSocket connection: wsproto driven from the call's tasks.

trio-websocket gives every connection a reader task that parses frames and hands each
message to the consumer through a memory channel, and a lock around every send. For a call
that is one extra task resumption and two channel operations per inbound 20 ms frame, and a
lock per outbound frame, a large share of the engine's work per call. Here the
session's reader task drives wsproto itself: ``get_message()`` reads the socket, feeds
wsproto and returns the next message, with no task or queue between. Sends take a
flag, not a lock: the writer task is the only sender of data (and of pings), and the rare
control frames the reader must answer (pong, the close reply) wait for the flag. On a plain
TCP stream the socket's descriptor is read and written directly (``sockio.py``).

:func:`read_upgrade_request` (``handshake.py``) reads the HTTP upgrade request from a trio
stream; the :class:`UpgradeRequest` it returns is accepted (101, optional sub-protocol) into
a :class:`WebSocketConnection`, which satisfies the transport seam (see ``transport.py``), or
rejected with an HTTP status and a body.

Semantics, matching what the session expects of any transport:

* messages that arrived before the peer's close are delivered before ``TransportClosed``;
  frames the client sent right behind its upgrade request are its first messages;
* the peer's close frame is answered, and its code and reason are reported; a reply that
  could not be sent (the reader was cancelled) is sent by ``aclose``;
* pings are answered, but only the latest of a batch (RFC 6455 5.5.3 allows it);
* a TCP close without a close frame reports code 1006;
* a message over ``max_message_size`` (counted across fragments, so a giant frame is never
  buffered whole; in bytes for binary messages, in characters for text ones, which wsproto
  hands over decoded: at most 4 bytes each) closes the connection with 1009 and reports 1009;
* a malformed frame closes with the code wsproto assigns (1002, 1007) and reports it;
* ``aclose(code, reason)`` sends the close frame, waits for the peer's reply, then closes
  TCP; if a send was cancelled part-way (a frame may be half written) it closes TCP only.

Fairness: one peer must not stall the event loop for every call. The reader consumes
wsproto's events lazily and yields to the scheduler once it has done ``EVENTS_BETWEEN_YIELDS``
units of work since it last yielded (an event processed, a message handed out, a read that
found data without waiting: ``READ_WORK``); the pings of one batch get one pong. A call's
reader that waits for its next frame yields there, so a 20 ms media frame per read costs no
extra trip through the scheduler.

For the writer's liveness check: :meth:`WebSocketConnection.send_ping`,
``ping_outstanding_since``, ``pongs_received`` and :meth:`WebSocketConnection.unsent_bytes`;
what the peer sent besides data is counted in :meth:`WebSocketConnection.statistics`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterator, Union

import trio
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError

from . import sockio
from .transport import TransportClosed, aclose_quietly

__all__ = ["HandshakeFailed", "UpgradeRequest", "WebSocketConnection", "read_upgrade_request"]

WireMessage = Union[str, bytes]

ABNORMAL_CLOSURE = 1006
MESSAGE_TOO_BIG = 1009
RECEIVE_SIZE = 65536
#: units of work (an event processed, a message handed out, a read) after which the
#: reader yields
EVENTS_BETWEEN_YIELDS = 64
#: a read that found data at once counts as this many units: a syscall and up to 64 KiB
#: for wsproto to unmask cost about as much as that many small events
READ_WORK = 8


class WebSocketConnection:
    """An open server-side WebSocket on a trio stream (see the module docstring).

    One task may call :meth:`get_message` and one other task :meth:`send_message` and
    :meth:`send_ping` at a time (the session's reader and writer); :meth:`aclose` once both
    are done. ``received``: bytes already read from the stream that belong to the
    WebSocket (what the client sent right behind its upgrade request).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: Connection,
        *,
        max_message_size: int = 256 * 1024,
        subprotocol: str | None = None,
        path: str = "/",
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        self._proto = proto
        self.max_message_size = max_message_size
        self.subprotocol = subprotocol
        self.path = path
        self._messages: deque[WireMessage] = deque()
        self._parts: list = []  # fragments of the message being received
        self._parts_size = 0
        self._events: Iterator[Any] | None = None  # wsproto's events generator, while it may hold more events
        self._work = 0  # units of work since the reader last yielded
        self._pong_due: bytes | None = None  # the payload of the latest ping not answered
        self._close_due: CloseConnection | None = None  # a close frame we owe, not yet sent
        self._closed: TransportClosed | None = None  # once set, the connection is closed
        self._lost = False  # the TCP connection is gone: nothing more can be sent or read
        self._send_broken = False  # a send was cancelled part-way: the byte stream is unusable
        self._parse_failed = False  # wsproto could not parse a frame: it parses nothing more
        self._sending = False
        self._send_idle: trio.Event | None = None
        self._aclosed = False
        # On a plain TCP stream the hot path reads and writes the socket's descriptor
        # directly (sockio.py); TLS and other streams use the stream API.
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._unsent_probe = None  # made on the first unsent_bytes() call
        self._pings: deque[tuple[int, float]] = deque()  # (counter, sent at), not yet answered
        self._ping_counter = 0
        self.messages_received = 0
        self.pings_received = 0
        self.pongs_received = 0
        self.close_frames_received = 0
        self.pongs_sent = 0
        self.pings_sent = 0
        if received:
            proto.receive_data(received)
            self._events = proto.events()

    @property
    def stream(self) -> trio.abc.Stream:
        return self._stream

    @property
    def closed(self) -> TransportClosed | None:
        """Why the connection is closed (code and reason), or None while it is open."""
        return self._closed

    def statistics(self) -> dict[str, int]:
        """Counters: data messages received; control frames received (pings, pongs, close
        frames); pings and pongs received and sent. A snapshot: a new dict each call."""
        return {
            "messages_received": self.messages_received,
            "control_frames_received": self.pings_received + self.pongs_received + self.close_frames_received,
            "pings_received": self.pings_received,
            "pongs_received": self.pongs_received,
            "pongs_sent": self.pongs_sent,
            "pings_sent": self.pings_sent,
        }

    def _closed_error(self) -> TransportClosed:
        """A fresh exception (each raise gets its own traceback) saying why it is closed."""
        closed = self._closed or TransportClosed(ABNORMAL_CLOSURE, "closed")
        return TransportClosed(closed.code, closed.reason)

    # --- receiving ----------------------------------------------------------------------

    async def get_message(self) -> WireMessage:
        messages = self._messages
        while not messages:
            if self._closed is not None:
                if self._close_due is not None:
                    await self._flush()  # a close reply a cancelled reader still owes
                raise self._closed_error()
            await self._fill()
        self._work += 1
        if self._work >= EVENTS_BETWEEN_YIELDS:
            await self._yield()
        return messages.popleft()

    async def _yield(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._work = 0
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _fill(self) -> None:
        """Process the next batch of wsproto's events (reading the socket once if it has
        none left), send what the batch owes the peer, and yield if the budget is spent.
        Cancellation loses nothing: unprocessed events and owed frames stay for the next call."""
        if self._events is None:
            sock = self._sock
            try:
                if sock is None:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                    self._work = READ_WORK  # a stream's receive is a checkpoint
                else:
                    data, waited = await sockio.receive_some(sock, RECEIVE_SIZE)
                    self._work = READ_WORK if waited else self._work + READ_WORK
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._connection_lost("connection lost")
                return
            if not data:
                self._connection_lost("closed without a close frame")
                return
            self._proto.receive_data(bytes(data))
            self._events = self._proto.events()
        self._process_events()
        if self._close_due is not None or self._pong_due is not None:
            await self._flush()
        if self._work >= EVENTS_BETWEEN_YIELDS:
            await self._yield()

    def _process_events(self) -> None:
        """Consume events up to what is left of the budget: messages into the queue; note
        the latest ping and the close frame owed (sent by :meth:`_flush`)."""
        budget = EVENTS_BETWEEN_YIELDS - self._work  # at least one event is processed
        n = 0
        limit = self.max_message_size
        events = self._events
        if events is None:
            return
        event: Any  # narrowed by type() checks below, which pyright cannot follow
        for event in events:
            n += 1
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self._closed is not None:
                    pass  # after we closed: the peer's late messages are dropped
                elif event.message_finished and not self._parts:
                    if len(event.data) > limit:
                        self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes")
                    else:
                        self._messages.append(event.data)
                        self.messages_received += 1
                else:
                    self._add_fragment(event, limit)
            elif kind is Ping:
                self.pings_received += 1
                self._pong_due = event.payload
            elif kind is Pong:
                self.pongs_received += 1
                self._pong_arrived(event.payload)
            elif kind is CloseConnection:
                self._close_frame(event)
            if n >= budget:
                break
        else:
            self._events = None
        self._work += n

    def _add_fragment(self, event, limit: int) -> None:
        self._parts.append(event.data)
        self._parts_size += len(event.data)
        if self._parts_size > limit:
            self._parts.clear()
            self._parts_size = 0
            self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes")
        elif event.message_finished:
            joiner = "" if type(event) is TextMessage else b""
            self._messages.append(joiner.join(self._parts))
            self.messages_received += 1
            self._parts.clear()
            self._parts_size = 0

    def _close_frame(self, event: CloseConnection) -> None:
        state = self._proto.state
        if state is ConnectionState.REMOTE_CLOSING:
            # the peer closes: answer (unless we owe a close of our own: it is the answer),
            # report its code
            self.close_frames_received += 1
            if self._close_due is None:
                self._close_due = event.response()
            if self._closed is None:
                self._closed = TransportClosed(event.code, event.reason)
        elif state is ConnectionState.OPEN:
            # wsproto could not parse a frame (1002, 1007): close with its code; the
            # peer's reply could not be parsed either, so it is not waited for
            self._parse_failed = True
            self._fail(event.code, event.reason or "protocol error")
        elif state is ConnectionState.LOCAL_CLOSING:
            self._parse_failed = True  # a parse failure while we wait for the close reply
        else:
            # the reply to a close we sent
            self.close_frames_received += 1
            if self._closed is None:
                self._closed = TransportClosed(event.code, event.reason)

    def _fail(self, code: int, reason: str) -> None:
        """Close from our side because of what the peer sent."""
        if self._closed is None:
            self._closed = TransportClosed(code, reason)
        if self._close_due is None:
            self._close_due = CloseConnection(code=code, reason=reason[:120])

    async def _flush(self) -> None:
        """Send what the batch owes: the close frame, else one pong, for the latest ping."""
        if self._close_due is not None:
            self._pong_due = None
            if not (self._lost or self._send_broken):
                try:
                    await self._send_event(self._close_due, control=True)
                except TransportClosed:
                    pass
            self._close_due = None
            return
        if self._closed is not None:
            self._pong_due = None
            return
        try:
            sent = await self._send_event(Pong(self._pong_due or b""), control=True)
        except TransportClosed:
            sent = False
        self._pong_due = None
        self.pongs_sent += sent

    def _connection_lost(self, reason: str) -> None:
        self._lost = True
        if self._closed is None:
            self._closed = TransportClosed(ABNORMAL_CLOSURE, reason)

    # --- liveness -------------------------------------------------------------------------

    async def send_ping(self) -> None:
        """Send a ping (payload: a counter in ASCII digits) and note when it was sent. For
        the writer task only: it takes the send flag, as :meth:`send_message` does, and a
        cancellation part-way breaks the stream the same way. Does nothing once the
        connection is closing or closed; raises TransportClosed if it is broken."""
        if self._closed is not None or self._proto.state is not ConnectionState.OPEN:
            await trio.lowlevel.checkpoint()
            return
        self._ping_counter += 1
        n = self._ping_counter
        if await self._send_event(Ping(str(n).encode()), control=True, ping=n):
            self.pings_sent += 1

    @property
    def ping_outstanding_since(self) -> float | None:
        """trio clock time at which the oldest ping not answered by a pong was sent, or
        None when every ping sent has been answered."""
        pings = self._pings
        return pings[0][1] if pings else None

    def _pong_arrived(self, payload: bytes) -> None:
        """A pong answers every ping up to the one whose counter it carries. One that
        carries none of ours (some peers answer with an empty payload) answers them all; one
        for a ping already answered, none."""
        pings = self._pings
        if not pings:
            return
        try:
            n = int(payload)
        except ValueError:
            n = 0
        if not 0 < n <= self._ping_counter:
            pings.clear()
            return
        while pings and pings[0][0] <= n:
            pings.popleft()

    def unsent_bytes(self) -> int | None:
        """Bytes the kernel holds for this socket and has not sent yet (Linux TCP; a TLS
        stream's underlying socket), or None where that is not known."""
        probe = self._unsent_probe
        if probe is None:
            probe = self._unsent_probe = sockio.unsent_bytes_probe(self._stream)
        return probe()

    # --- sending ------------------------------------------------------------------------

    async def send_message(self, message: WireMessage) -> None:
        if self._closed is not None:
            raise self._closed_error()
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        await self._send_event(Message(data=message))  # pyright: ignore[reportArgumentType]  # str or bytes, checked above

    async def _send_event(self, event, *, control: bool = False, ping: int = 0) -> bool:
        """Frame ``event`` and send it. The frame is made only once this task holds the
        send flag, so wsproto's state at that moment decides: nothing is framed after the
        close frame has been (no data frame can follow it on the wire). A control frame
        that no longer applies (a pong or a close reply once closed) is skipped: False.
        ``ping``: the counter of the ping being sent, recorded as outstanding once framed."""
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
                return False
            raise self._closed_error() from None
        if ping:
            self._pings.append((ping, trio.current_time()))
        self._sending = True
        try:
            if self._sock is None:
                await self._stream.send_all(data)
            else:
                await sockio.send_all(self._sock, data)
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
        return True

    # --- closing ------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``: send the close frame (or the reply to the peer's, or the
        close a failure called for, if not sent yet), wait for the peer's, close TCP.
        Idempotent; the caller bounds the time (a peer that never answers)."""
        if self._aclosed:
            await trio.lowlevel.checkpoint()
            return
        self._aclosed = True
        try:
            if self._closed is None:
                self._closed = TransportClosed(code, reason)
            if not self._lost and not self._send_broken:
                close = self._close_due
                if close is None and self._proto.state is ConnectionState.OPEN:
                    close = CloseConnection(code=code, reason=reason)
                if close is not None:
                    try:
                        await self._send_event(close, control=True)
                    except TransportClosed:
                        pass
                    self._close_due = None
            while (
                self._proto.state is ConnectionState.LOCAL_CLOSING
                and not (self._lost or self._send_broken or self._parse_failed)
            ):
                await self._fill()  # until the peer's close frame (its messages are dropped)
        finally:
            await aclose_quietly(self._stream)

    async def abort(self) -> None:
        """Drop the TCP connection without a close handshake (for fault tests)."""
        self._connection_lost("aborted")
        self._aclosed = True
        await aclose_quietly(self._stream)


# The HTTP upgrade lives in handshake.py; its names are importable from here too.
from .handshake import HandshakeFailed, UpgradeRequest, read_upgrade_request  # noqa: E402
