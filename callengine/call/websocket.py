"""The engine's own server-side WebSocket connection: websockets' sans-I/O protocol driven
from the call's tasks.

trio-websocket gives every connection a reader task that parses frames and hands each
message to the consumer through a memory channel, and a lock around every send. For a call
that is one extra task resumption and two channel operations per inbound 20 ms frame, and a
lock per outbound frame, a large share of the engine's work per call. Here the session's
reader task drives the frame protocol itself: ``get_message()`` reads the socket, feeds the
protocol and returns the next message, with no task or queue between. Sends take a flag,
not a lock: the writer task is the only sender of data (and of pings), and the rare control
frames the reader must answer (pong, the close reply) wait for the flag. On a plain TCP
stream the socket's descriptor is read and written directly (``sockio.py``).

The framing is the ``websockets`` library's sans-I/O :class:`websockets.protocol.Protocol`
(its frame parser and its C masking speedup cost a fraction of wsproto's per frame); the
HTTP upgrade stays on wsproto and h11 (``handshake.py``).

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
* a message over ``max_message_size`` bytes (counted across fragments, and refused from the
  frame header, so a giant frame is never buffered whole) closes the connection with 1009
  and reports 1009;
* a malformed frame closes with the protocol's code (1002; 1007 for text that is not
  UTF-8) and reports it; nothing the peer sends after it is parsed (RFC 6455 7.1.7), so
  ``aclose`` does not wait for its reply;
* ``aclose(code, reason)`` sends the close frame, waits for the peer's reply, then closes
  TCP; if a send was cancelled part-way (a frame may be half written) it closes TCP only.

Fairness: one peer must not stall the event loop for every call. The protocol parses what
it is fed at once, so the reader feeds it at most ``FEED_SIZE`` bytes at a time, consumes
the frames lazily, and yields to the scheduler once it has done ``EVENTS_BETWEEN_YIELDS``
units of work since it last yielded (a frame processed, a message handed out, a feed:
``READ_WORK``); the pings of one batch get one pong. A call's reader that waits for its next
frame yields there, so a 20 ms media frame per read costs no extra trip through the
scheduler.

For the writer's liveness check: :meth:`WebSocketConnection.send_ping`,
``ping_outstanding_since``, ``pongs_received`` and :meth:`WebSocketConnection.unsent_bytes`;
what the peer sent besides data is counted in :meth:`WebSocketConnection.statistics`.
"""

from __future__ import annotations

import codecs
import logging
from collections import deque
from typing import Any, Callable, Union

import trio
from websockets.exceptions import InvalidState, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from . import sockio
from .transport import TransportClosed, aclose_quietly

__all__ = ["HandshakeFailed", "UpgradeRequest", "WebSocketConnection", "read_upgrade_request"]

WireMessage = Union[str, bytes]

ABNORMAL_CLOSURE = 1006
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
RECEIVE_SIZE = 65536
#: bytes fed to the frame parser at a time (it parses all it is fed before returning)
FEED_SIZE = 4096
#: units of work (a frame processed, a message handed out, a feed) after which the reader
#: yields
EVENTS_BETWEEN_YIELDS = 64
#: a feed of up to FEED_SIZE bytes counts as this many units: parsing and unmasking them
#: cost about as much as that many small frames
READ_WORK = 8

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PING, _PONG, _CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
_OPEN = State.OPEN
_PONG_FIRST_BYTE = 0x8A  # FIN + pong: how a server's (unmasked) pong frame starts
_CLOSE_FIRST_BYTE = 0x88
_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# The protocol logs every frame at DEBUG, payload excerpts included. Those lines would flood
# a server run with --log-level debug and could carry what a provider puts in its messages,
# so its logger is kept at INFO whatever the root level.
_frames_log = logging.getLogger("callengine.call.wsframes")
_frames_log.setLevel(logging.INFO)


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
        *,
        max_message_size: int = 256 * 1024,
        subprotocol: str | None = None,
        path: str = "/",
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        self._proto = Protocol(Side.SERVER, state=State.OPEN, max_size=max_message_size, logger=_frames_log)
        self.max_message_size = max_message_size
        self.subprotocol = subprotocol
        self.path = path
        self._messages: deque[WireMessage] = deque()
        self._parts: list = []  # fragments of the message being received
        self._decoder: Any = None  # for a fragmented text message
        self._frames: list[Frame] = []  # parsed, not yet processed
        self._frame_i = 0
        self._unfed: memoryview | None = None  # read, not yet fed to the parser
        self._work = 0  # units of work since the reader last yielded
        self._pong_due: bytes | None = None  # the pong frame for the latest ping not answered
        self._close_due: bytes | None = None  # a close frame we owe, not yet sent
        self._closed: TransportClosed | None = None  # once set, the connection is closed
        self._lost = False  # the TCP connection is gone: nothing more can be sent or read
        self._send_broken = False  # a send was cancelled part-way: the byte stream is unusable
        self._parse_failed = False  # the connection was failed: nothing more is parsed
        self._failure: TransportClosed | None = None  # why, once the frames before it are processed
        self._sending = False
        self._send_idle: trio.Event | None = None
        self._aclosed = False
        # On a plain TCP stream the hot path reads and writes the socket's descriptor
        # directly (sockio.py); TLS and other streams use the stream API.
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._unsent_probe = None  # made on the first unsent_bytes() call
        self._send_blocked: Callable[[bool], None] | None = None
        self._pings: deque[tuple[int, float]] = deque()  # (counter, sent at), not yet answered
        self._ping_counter = 0
        self.messages_received = 0
        self.pings_received = 0
        self.pongs_received = 0
        self.close_frames_received = 0
        self.pongs_sent = 0
        self.pings_sent = 0
        if received:
            self._unfed = memoryview(bytes(received))

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
        """Process the next batch of frames (feeding the parser, reading the socket once
        if nothing is left to feed), send what the batch owes the peer, and yield if the
        budget is spent. Cancellation loses nothing: unprocessed frames, unfed bytes and
        owed frames stay for the next call."""
        if self._frame_i >= len(self._frames):
            if self._unfed is None:
                sock = self._sock
                try:
                    if sock is None:
                        data = await self._stream.receive_some(RECEIVE_SIZE)
                        self._work = 0  # a stream's receive is a checkpoint
                    else:
                        data, waited = await sockio.receive_some(sock, RECEIVE_SIZE)
                        if waited:
                            self._work = 0
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._connection_lost("connection lost")
                    return
                if not data:
                    self._connection_lost("closed without a close frame")
                    return
                self._feed(data if len(data) <= FEED_SIZE else memoryview(data))
            else:
                self._feed(self._unfed)
        self._process_frames()
        if self._close_due is not None or self._pong_due is not None:
            await self._flush()
        if self._work >= EVENTS_BETWEEN_YIELDS:
            await self._yield()

    def _feed(self, data: "bytes | bytearray | memoryview") -> None:
        """Feed the parser up to FEED_SIZE bytes of ``data``; keep the rest for later."""
        if len(data) > FEED_SIZE:
            self._unfed = data[FEED_SIZE:]  # type: ignore[assignment]
            data = data[:FEED_SIZE]
        else:
            self._unfed = None
        self._work += READ_WORK
        if self._parse_failed:
            return  # RFC 6455 7.1.7: nothing more is processed
        proto = self._proto
        proto.receive_data(data if type(data) is bytes else bytes(data))  # a memoryview: a long read's piece
        self._frames = proto.events_received()  # type: ignore[assignment]  # frames, on this protocol
        self._frame_i = 0
        self._take_writes()
        if proto.parser_exc is not None:
            self._failed_by_protocol()

    def _take_writes(self) -> None:
        """Collect what the protocol wants sent after parsing: pongs (the latest one of a
        batch is kept) and the close frame (its reply to the peer's, or its own on a
        failure). The end-of-stream marker is the TCP close, which ``aclose`` does."""
        for data in self._proto.data_to_send():
            if not data:
                continue
            first = data[0]
            if first == _PONG_FIRST_BYTE:
                self._pong_due = data
            elif first == _CLOSE_FIRST_BYTE:
                self._close_due = data

    def _failed_by_protocol(self) -> None:
        """The parser refused what the peer sent (a malformed frame, a message over the
        limit): the protocol has failed the connection with its close code. The frames
        parsed before the bad one are processed first (their messages are delivered)."""
        self._parse_failed = True
        sent = self._proto.close_sent
        code = sent.code if sent is not None else 1002
        reason = (sent.reason if sent is not None else "") or "protocol error"
        if code == MESSAGE_TOO_BIG:
            reason = f"message over {self.max_message_size} bytes"
        self._failure = TransportClosed(int(code), reason)
        if not self._frames:
            self._apply_failure()

    def _apply_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None and self._closed is None:
            self._closed = failure

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection because of what the peer sent (text that is not UTF-8)."""
        proto = self._proto
        if proto.state is _OPEN:  # else a close frame is already out or queued
            proto.fail(code, reason[:120])
            self._take_writes()
        self._parse_failed = True
        self._frames = []
        self._frame_i = 0
        if self._closed is None:
            self._closed = TransportClosed(code, reason)

    def _process_frames(self) -> None:
        """Consume frames up to what is left of the budget: messages into the queue; note
        the latest ping and the close frame owed (sent by :meth:`_flush`)."""
        budget = EVENTS_BETWEEN_YIELDS - self._work  # at least one frame is processed
        frames = self._frames
        i = self._frame_i
        end = min(len(frames), i + max(1, budget))
        n = end - i
        while i < end:
            frame = frames[i]
            i += 1
            op = frame.opcode
            if op is _TEXT or op is _BINARY:
                if self._closed is not None:
                    continue  # after we closed: the peer's late messages are dropped
                if frame.fin:
                    data = frame.data  # bytes, as the parser makes it
                    if op is _TEXT:
                        try:
                            message: WireMessage = str(data, "utf-8")
                        except UnicodeDecodeError:
                            self._fail(INVALID_PAYLOAD, "invalid UTF-8 in a text message")
                            break
                    else:
                        message = data if type(data) is bytes else bytes(data)
                    self._messages.append(message)
                    self.messages_received += 1
                else:
                    self._decoder = _utf8_decoder() if op is _TEXT else None
                    if not self._fragment(frame):
                        break
            elif op is _CONT:
                if self._closed is None and not self._fragment(frame):
                    break
            elif op is _PING:
                self.pings_received += 1
            elif op is _PONG:
                self.pongs_received += 1
                self._pong_arrived(bytes(frame.data))
            elif op is _CLOSE:
                self._close_frame()
        self._frame_i = i
        if i >= len(self._frames):
            self._frames = []
            self._frame_i = 0
            if self._failure is not None:
                self._apply_failure()
        self._work += n

    def _fragment(self, frame: Frame) -> bool:
        """Add a fragment of the message being received; False if the connection failed."""
        decoder = self._decoder
        if decoder is not None:
            try:
                self._parts.append(decoder.decode(frame.data, frame.fin))
            except UnicodeDecodeError:
                self._parts.clear()
                self._fail(INVALID_PAYLOAD, "invalid UTF-8 in a text message")
                return False
        else:
            self._parts.append(frame.data)
        if frame.fin:
            joiner = "" if decoder is not None else b""
            self._messages.append(joiner.join(self._parts))
            self.messages_received += 1
            self._parts.clear()
            self._decoder = None
        return True

    def _close_frame(self) -> None:
        """The peer's close frame: the first (the protocol has queued the reply) or the
        reply to ours."""
        self.close_frames_received += 1
        received = self._proto.close_rcvd
        if self._closed is None and received is not None:
            self._closed = TransportClosed(int(received.code), received.reason)

    async def _flush(self) -> None:
        """Send what the batch owes: the close frame, else one pong, for the latest ping."""
        if self._close_due is not None:
            self._pong_due = None
            if not (self._lost or self._send_broken):
                try:
                    await self._send_frame(self._close_due)
                except TransportClosed:
                    pass
            self._close_due = None
            return
        if self._closed is not None:
            self._pong_due = None
            return
        pong, self._pong_due = self._pong_due, None
        try:
            sent = await self._send_frame(pong)
        except TransportClosed:
            sent = False
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
        if self._closed is not None or self._proto.state is not _OPEN:
            await trio.lowlevel.checkpoint()
            return
        self._ping_counter += 1
        n = self._ping_counter
        if await self._send_frame(None, _PING, str(n).encode(), ping=n, blocked=self._send_blocked):
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

    def watch_send_blocking(self, blocked: Callable[[bool], None]) -> bool:
        """Have ``blocked(True)`` called when a :meth:`send_message` or :meth:`send_ping`
        has to wait (for the socket to take more, or for the reader's pong to finish), and
        ``blocked(False)`` when it is over. True if this connection can (a plain TCP
        socket); otherwise the caller has to bound every send itself."""
        if self._sock is None:
            return False
        self._send_blocked = blocked
        return True

    async def send_message(self, message: WireMessage) -> None:
        if self._closed is not None:
            raise self._closed_error()
        blocked = self._send_blocked
        if type(message) is str:
            await self._send_frame(None, _TEXT, message.encode(), blocked=blocked)
        elif isinstance(message, bytes):
            await self._send_frame(None, _BINARY, message, blocked=blocked)
        else:
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")

    def _make(self, opcode: Opcode, payload: bytes) -> bytes | None:
        """Frame ``payload``; None if the protocol's state no longer allows it (a close
        frame has been sent or queued: no data frame can follow it on the wire)."""
        proto = self._proto
        try:
            if opcode is _TEXT:
                proto.send_text(payload)
            elif opcode is _BINARY:
                proto.send_binary(payload)
            elif proto.state is _OPEN:
                proto.send_ping(payload)
            else:
                return None
        except (InvalidState, ProtocolError):
            return None
        return b"".join(proto.data_to_send())

    async def _send_frame(
        self,
        frame: bytes | None,
        opcode: Opcode = _TEXT,
        payload: bytes = b"",
        *,
        ping: int = 0,
        blocked: Callable[[bool], None] | None = None,
    ) -> bool:
        """Send ``frame`` (made already: a pong, a close) or frame ``payload`` as ``opcode``
        and send it. A frame is made only once this task holds the send flag, so the
        protocol's state at that moment decides. A ping that no longer applies is skipped
        (False); data raises TransportClosed. ``ping``: the counter of the ping being sent,
        recorded as outstanding once framed. ``blocked``: told when the send has to wait
        (see :meth:`watch_send_blocking`)."""
        if self._sending:  # another task is mid-send (rare: a pong during a frame)
            if blocked is not None:
                blocked(True)
            try:
                while self._sending:
                    if self._send_idle is None:
                        self._send_idle = trio.Event()
                    await self._send_idle.wait()
            finally:
                if blocked is not None:
                    blocked(False)
        # Cancellation before any byte goes out leaves the stream clean; past this point a
        # cancelled send_all may have written part of a frame. No await from here to
        # send_all: nothing else can frame or send in between.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._lost or self._send_broken:
            raise TransportClosed(self._closed.code if self._closed else ABNORMAL_CLOSURE, "connection broken")
        data = frame
        if data is None:
            data = self._make(opcode, payload)
            if data is None:
                if ping:
                    return False
                raise self._closed_error()
        if ping:
            self._pings.append((ping, trio.current_time()))
        self._sending = True
        try:
            if self._sock is None:
                await self._stream.send_all(data)
            else:
                await sockio.send_all(self._sock, data, blocked)
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

    def _own_close(self, code: int, reason: str | None) -> bytes:
        """Our close frame (the protocol then expects the peer's reply). A code that may
        not be sent on the wire (1005, 1006, out of range) goes out as 1011."""
        proto = self._proto
        text = (reason or "").encode()[:123].decode("utf-8", "ignore")  # a close reason's limit
        try:
            proto.send_close(code, text)
        except ProtocolError:
            proto.send_close(1011, text)
        return b"".join(proto.data_to_send())

    # --- closing ------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``: send the close frame (or the reply to the peer's, or the
        close a failure called for, if not sent yet), wait for the peer's, close TCP.
        Idempotent; the caller bounds the time (a peer that never answers)."""
        if self._aclosed:
            await trio.lowlevel.checkpoint()
            return
        self._aclosed = True
        proto = self._proto
        try:
            if self._closed is None:
                self._closed = TransportClosed(code, reason)
            if not self._lost and not self._send_broken:
                close = self._close_due
                if close is None and proto.state is _OPEN:
                    close = self._own_close(code, reason)
                if close is not None:
                    try:
                        await self._send_frame(close)
                    except TransportClosed:
                        pass
                    self._close_due = None
            while proto.close_rcvd is None and not (self._lost or self._send_broken or self._parse_failed):
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
