"""The engine's own server-side WebSocket (``callengine/call/websocket.py``), driven over
in-memory byte streams against a wsproto client written by hand in each test.

``memory_stream_pair`` never blocks a sender and hands the receiver everything buffered in
one chunk; ``lockstep_stream_pair`` blocks each ``send_all`` until the other side has read
it all, which is how a test holds a send in progress or feeds the server tiny chunks.
Anything involving time runs on pytest-trio's ``autojump_clock``.
"""

from __future__ import annotations

import struct
from collections import deque

import pytest
import trio
from trio.testing import lockstep_stream_pair, memory_stream_pair, wait_all_tasks_blocked
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from callengine.call import websocket as websocket_module
from callengine.call.transport import TransportClosed
from callengine.call.websocket import HandshakeFailed, UpgradeRequest, WebSocketConnection, read_upgrade_request

HOST = "engine.example"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
EOF = "EOF"  # what Client.next_event returns once the server has closed the stream


# --- the hand-written client ------------------------------------------------------------


class Client:
    """The peer: a wsproto client on the other end of the server's byte stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque = deque()
        self.raw = bytearray()  # every byte the server sent, for tests that check the wire

    async def send(self, *events) -> None:
        """Send ``events`` in one write (so they reach the server as one chunk)."""
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next_event(self):
        """The next wsproto event from the server, or ``EOF`` once the stream is closed."""
        while not self.pending:
            data = await self.stream.receive_some(65536)
            if not data:
                return EOF
            self.raw += data
            self.ws.receive_data(bytes(data))
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def next_message(self) -> str | bytes:
        """The next whole data message (wsproto hands large frames over in parts)."""
        parts = []
        while True:
            event = await self.next_event()
            assert isinstance(event, (TextMessage, BytesMessage)), event
            parts.append(event.data)
            if event.message_finished:
                return ("" if isinstance(event, TextMessage) else b"").join(parts)

    async def read_to_eof(self) -> bytes:
        """Every remaining byte up to EOF, not parsed."""
        data = bytearray()
        while chunk := await self.stream.receive_some(65536):
            data += chunk
        return bytes(data)


def request_event(target: str = "/awaaz", headers=(), subprotocols=()) -> Request:
    return Request(host=HOST, target=target, extra_headers=list(headers), subprotocols=list(subprotocols))


async def upgrade(server_stream, client: Client, request: Request | None = None) -> UpgradeRequest:
    """The client sends its upgrade request; the server reads it."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, request or request_event())  # lockstep: blocks until read
        return await read_upgrade_request(server_stream)


async def accept(upgrade_request: UpgradeRequest, client: Client, **kwargs) -> tuple[WebSocketConnection, AcceptConnection]:
    """The server accepts; the client reads the 101."""
    answer = []

    async def client_side():
        answer.append(await client.next_event())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        conn = await upgrade_request.accept(**kwargs)
    assert isinstance(answer[0], AcceptConnection), answer
    return conn, answer[0]


async def open_ws(pair=memory_stream_pair, **accept_kwargs) -> tuple[WebSocketConnection, Client]:
    """An open connection and its client, on a fresh stream pair."""
    server_stream, client_stream = pair()
    client = Client(client_stream)
    conn, _ = await accept(await upgrade(server_stream, client), client, **accept_kwargs)
    return conn, client


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool = True) -> bytes:
    """A client frame built by hand (for what wsproto's own client refuses to send)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if not mask:
        return header + payload
    key = b"\x11\x22\x33\x44"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked frame as the server writes it (payloads under 126 bytes)."""
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload


class StallingStream(trio.abc.Stream):
    """The server's end of a memory stream pair that can stall like a socket whose peer
    stopped reading: after ``stall_after(n)``, the next ``send_all`` writes its first ``n``
    bytes and then blocks until cancelled (a frame is left half written)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self._budget: int | None = None

    def stall_after(self, n: int) -> None:
        self._budget = n

    async def send_all(self, data) -> None:
        if self._budget is None:
            await self.inner.send_all(data)
            return
        n, self._budget = self._budget, None
        await self.inner.send_all(data[:n])
        await trio.sleep_forever()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def open_stalling_ws() -> tuple[WebSocketConnection, Client, StallingStream]:
    server_stream, client_stream = memory_stream_pair()
    stalling = StallingStream(server_stream)
    client = Client(client_stream)
    conn, _ = await accept(await upgrade(stalling, client), client)
    return conn, client, stalling


class EagerPipe(trio.abc.ReceiveStream):
    """Client-to-server bytes whose ``receive_some`` hands over what is already there with
    no schedule point. A socket read yields, and trio then runs the tasks it woke in either
    order, at random; this stream pins the order one race needs."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._arrived = trio.Event()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._arrived.set()

    def close_sender(self) -> None:
        self._eof = True
        self._arrived.set()

    async def receive_some(self, max_bytes=None):
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._buffer and not self._eof:
            self._arrived = trio.Event()
            await self._arrived.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class EagerPipeFeeder(trio.abc.SendStream):
    """The client's end of an :class:`EagerPipe`: the bytes are there before it yields."""

    def __init__(self, pipe: EagerPipe) -> None:
        self.pipe = pipe

    async def send_all(self, data) -> None:
        self.pipe.feed(bytes(data))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.pipe.close_sender()
        await trio.lowlevel.checkpoint()


def eager_stream_pair() -> tuple[trio.StapledStream, trio.StapledStream]:
    """(server, client): lockstep from the server to the client, an EagerPipe back."""
    to_client, from_server = trio.testing.lockstep_stream_one_way_pair()
    pipe = EagerPipe()
    return trio.StapledStream(to_client, pipe), trio.StapledStream(EagerPipeFeeder(pipe), from_server)


def http_status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response
    return int(response.split(b" ", 2)[1])


def http_headers(response: bytes) -> dict[bytes, bytes]:
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, value in (line.split(b":", 1) for line in head)}


async def raw_handshake_failure(raw: bytes) -> bytes:
    """Send ``raw`` as the upgrade request: HandshakeFailed, and what the server answered."""
    server_stream, client_stream = memory_stream_pair()
    await client_stream.send_all(raw)
    with pytest.raises(HandshakeFailed):
        await read_upgrade_request(server_stream)
    await server_stream.aclose()
    return await Client(client_stream).read_to_eof()


def raw_request(method: bytes = b"GET", *, headers: dict[bytes, bytes] | None = None, drop=()) -> bytes:
    fields = {
        b"Host": HOST.encode(),
        b"Upgrade": b"websocket",
        b"Connection": b"Upgrade",
        b"Sec-WebSocket-Key": KEY,
        b"Sec-WebSocket-Version": b"13",
        **(headers or {}),
    }
    lines = [method + b" /awaaz HTTP/1.1"] + [k + b": " + v for k, v in fields.items() if k not in drop]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --- 1. the handshake -------------------------------------------------------------------


async def test_upgrade_request_exposes_path_query_headers_and_subprotocols():
    server_stream, client_stream = memory_stream_pair()
    client = Client(client_stream)
    req = await upgrade(
        server_stream,
        client,
        request_event(
            "/knowlarity/call?token=s3cret&x=1",
            headers=[(b"Authorization", b"Bearer t0k"), (b"X-Callengine-Token", b"abc")],
            subprotocols=["knowlarity-v1", "other"],
        ),
    )
    assert req.path == "/knowlarity/call?token=s3cret&x=1"
    assert req.host == HOST
    assert (b"authorization", b"Bearer t0k") in req.headers
    assert (b"x-callengine-token", b"abc") in req.headers
    names = [name for name, _ in req.headers]
    assert all(name == name.lower() for name in names)
    assert b"host" not in names
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in req.headers)
    assert req.proposed_subprotocols == ("knowlarity-v1", "other")


async def test_accept_answers_101_with_the_chosen_subprotocol():
    server_stream, client_stream = memory_stream_pair()
    client = Client(client_stream)
    req = await upgrade(server_stream, client, request_event("/k?a=b", subprotocols=["knowlarity-v1", "other"]))
    conn, answer = await accept(req, client, subprotocol="knowlarity-v1")
    assert answer.subprotocol == "knowlarity-v1"
    assert conn.subprotocol == "knowlarity-v1"
    assert conn.path == "/k?a=b"
    assert conn.closed is None
    assert conn.stream is server_stream


async def test_accept_without_a_subprotocol_answers_101_without_one():
    server_stream, client_stream = memory_stream_pair()
    client = Client(client_stream)
    req = await upgrade(server_stream, client, request_event(subprotocols=["knowlarity-v1"]))
    conn, answer = await accept(req, client)
    assert answer.subprotocol is None
    assert conn.subprotocol is None
    assert b"\r\nsec-websocket-protocol:" not in bytes(client.raw).lower()


async def test_accept_declines_a_proposed_extension():
    """permessage-deflate is never negotiated: the 101 carries no extension header."""
    server_stream, client_stream = memory_stream_pair()
    await client_stream.send_all(raw_request(headers={b"Sec-WebSocket-Extensions": b"permessage-deflate"}))
    req = await read_upgrade_request(server_stream)
    await req.accept()
    response = bytes(await client_stream.receive_some(65536))
    assert http_status(response) == 101
    assert b"sec-websocket-extensions" not in http_headers(response)


async def test_reject_answers_the_status_with_the_body_and_its_length():
    server_stream, client_stream = memory_stream_pair()
    client = Client(client_stream)
    req = await upgrade(server_stream, client)
    await req.reject(404, b"unknown path '/x'\n")
    rejection = await client.next_event()
    assert isinstance(rejection, RejectConnection)
    assert rejection.status_code == 404
    headers = dict(rejection.headers)
    assert headers[b"content-length"] == str(len(b"unknown path '/x'\n")).encode()
    assert headers[b"content-type"].startswith(b"text/plain")
    body = b""
    while True:
        data = await client.next_event()
        assert isinstance(data, RejectData)
        body += data.data
        if data.body_finished:
            break
    assert body == b"unknown path '/x'\n"


async def test_reject_with_an_empty_body_says_content_length_0():
    server_stream, client_stream = memory_stream_pair()
    req = await upgrade(server_stream, Client(client_stream))
    await req.reject(503)
    await server_stream.aclose()
    response = await Client(client_stream).read_to_eof()
    assert http_status(response) == 503
    assert http_headers(response)[b"content-length"] == b"0"
    assert response.endswith(b"\r\n\r\n")


async def test_a_request_split_into_tiny_chunks_is_read_whole():
    server_stream, client_stream = lockstep_stream_pair()
    raw = raw_request()

    async def dribble():
        for i in range(len(raw)):
            await client_stream.send_all(raw[i : i + 1])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dribble)
        req = await read_upgrade_request(server_stream)
    assert req.path == "/awaaz"


async def test_a_post_is_answered_400():
    response = await raw_handshake_failure(raw_request(b"POST", headers={b"Content-Length": b"0"}))
    assert http_status(response) == 400


@pytest.mark.parametrize("missing", [b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"Host"])
async def test_a_request_missing_an_upgrade_header_is_answered_400(missing):
    response = await raw_handshake_failure(raw_request(drop=[missing]))
    assert http_status(response) == 400


async def test_a_plain_http_get_is_answered_400():
    response = await raw_handshake_failure(b"GET / HTTP/1.1\r\nHost: engine.example\r\n\r\n")
    assert http_status(response) == 400


async def test_a_bad_websocket_version_is_answered_426_with_the_supported_version():
    response = await raw_handshake_failure(raw_request(headers={b"Sec-WebSocket-Version": b"8"}))
    assert http_status(response) == 426
    assert http_headers(response)[b"sec-websocket-version"] == b"13"


async def test_garbage_is_answered_400():
    response = await raw_handshake_failure(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
    assert http_status(response) == 400


async def test_an_unfinished_header_block_over_h11s_bound_is_answered_400():
    response = await raw_handshake_failure(raw_request(headers={b"X-Big": b"a" * 20000})[:-4])
    assert http_status(response) == 400


async def test_peer_closing_mid_request_is_handshake_failed():
    server_stream, client_stream = memory_stream_pair()
    await client_stream.send_all(raw_request()[:40])
    await client_stream.aclose()
    with pytest.raises(HandshakeFailed, match="closed before"):
        await read_upgrade_request(server_stream)


async def test_peer_closing_before_sending_anything_is_handshake_failed():
    server_stream, client_stream = memory_stream_pair()
    await client_stream.aclose()
    with pytest.raises(HandshakeFailed):
        await read_upgrade_request(server_stream)


async def test_a_broken_stream_during_the_request_is_handshake_failed():
    server_stream, client_stream = memory_stream_pair()
    await server_stream.aclose()  # receive_some now raises ClosedResourceError
    with pytest.raises(HandshakeFailed, match="connection lost"):
        await read_upgrade_request(server_stream)


# --- 2. messages ------------------------------------------------------------------------


async def test_text_and_bytes_messages_arrive_as_str_and_bytes_in_order():
    conn, client = await open_ws()
    sent = ["hello", b"\x00\x01\xff", "wörld ✓", b"", ""]
    for message in sent:
        await client.send(TextMessage(message) if isinstance(message, str) else BytesMessage(message))
    got = [await conn.get_message() for _ in sent]
    assert got == sent
    assert [type(m) for m in got] == [type(m) for m in sent]


async def test_several_frames_in_one_chunk_are_all_delivered_in_order():
    conn, client = await open_ws()
    await client.send(TextMessage("one"), BytesMessage(b"two"), TextMessage("three"))
    assert [await conn.get_message() for _ in range(3)] == ["one", b"two", "three"]


async def test_a_fragmented_message_is_reassembled():
    conn, client = await open_ws()
    await client.send(
        TextMessage("frag", message_finished=False),
        TextMessage("men", message_finished=False),
        TextMessage("ted ✓", message_finished=True),
        BytesMessage(b"\x01", message_finished=False),
        BytesMessage(b"\x02\x03", message_finished=True),
    )
    assert await conn.get_message() == "fragmented ✓"
    assert await conn.get_message() == b"\x01\x02\x03"


async def test_a_message_fed_byte_by_byte_is_reassembled():
    conn, client = await open_ws(lockstep_stream_pair)
    wire = client.ws.send(TextMessage("byte by byte é✓")) + client.ws.send(BytesMessage(bytes(range(200))))

    async def dribble():
        for i in range(len(wire)):
            await client.send_raw(wire[i : i + 1])  # lockstep: each byte is its own receive

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dribble)
        assert await conn.get_message() == "byte by byte é✓"
        assert await conn.get_message() == bytes(range(200))


async def test_a_large_message_across_many_receives_is_delivered_whole():
    conn, client = await open_ws(max_message_size=1 << 20)
    payload = bytes(range(256)) * 1024  # 256 KiB: several 64 KiB receives
    await client.send(BytesMessage(payload))
    assert await conn.get_message() == payload


# --- 3. the size limit ------------------------------------------------------------------


async def test_a_message_over_the_limit_closes_with_1009():
    conn, client = await open_ws(max_message_size=1000)
    await client.send(BytesMessage(b"x" * 1001))
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1009
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1009
    assert conn.closed is not None and conn.closed.code == 1009
    with pytest.raises(TransportClosed) as exc:  # and it stays closed
        await conn.get_message()
    assert exc.value.code == 1009


async def test_a_message_exactly_at_the_limit_is_delivered():
    conn, client = await open_ws(max_message_size=1000)
    await client.send(BytesMessage(b"x" * 1000), TextMessage("y" * 1000))
    assert await conn.get_message() == b"x" * 1000
    assert await conn.get_message() == "y" * 1000


async def test_a_fragmented_message_exactly_at_the_limit_is_delivered():
    conn, client = await open_ws(max_message_size=1000)
    await client.send(*[BytesMessage(b"x" * 250, message_finished=i == 3) for i in range(4)])
    assert await conn.get_message() == b"x" * 1000


async def test_a_fragmented_message_over_the_limit_closes_with_1009_before_its_last_fragment():
    """Fragments that together pass the limit close the connection as soon as they do:
    the final fragment is never sent, so the server cannot have waited to hold it whole."""
    conn, client = await open_ws(max_message_size=1000)
    await client.send(*[BytesMessage(b"x" * 400, message_finished=False) for _ in range(3)])
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1009
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1009


async def test_a_giant_frame_closes_with_1009_before_it_has_all_arrived():
    """A frame announcing 1 MiB, of which only 3000 bytes ever come: 1009 all the same."""
    conn, client = await open_ws(max_message_size=1000)
    wire = client.ws.send(BytesMessage(b"x" * (1 << 20)))
    await client.send_raw(wire[:3000])
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1009


async def test_messages_before_an_oversized_one_are_delivered_first():
    conn, client = await open_ws(max_message_size=1000)
    await client.send(TextMessage("small"), BytesMessage(b"x" * 5000), TextMessage("dropped"))
    assert await conn.get_message() == "small"
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1009


async def test_aclose_after_1009_completes_on_the_clients_close_reply(autojump_clock):
    conn, client = await open_ws(max_message_size=1000)
    await client.send(BytesMessage(b"x" * 5000))
    with pytest.raises(TransportClosed):
        await conn.get_message()
    close = await client.next_event()
    await client.send(close.response())
    with trio.move_on_after(30) as scope:
        await conn.aclose()
    assert not scope.cancelled_caught
    assert await client.next_event() == EOF


# --- 4. ping ----------------------------------------------------------------------------


async def test_a_ping_is_answered_with_a_pong_with_its_payload_and_messages_go_on():
    conn, client = await open_ws()
    await client.send(TextMessage("before"), Ping(b"payload-123"), TextMessage("after"))
    assert await conn.get_message() == "before"
    assert await conn.get_message() == "after"
    pong = await client.next_event()
    assert isinstance(pong, Pong) and pong.payload == b"payload-123"


async def test_a_ping_between_fragments_is_answered_and_the_message_reassembled():
    conn, client = await open_ws()
    await client.send(TextMessage("ab", message_finished=False), Ping(b"p"), TextMessage("cd"))
    assert await conn.get_message() == "abcd"
    pong = await client.next_event()
    assert isinstance(pong, Pong) and pong.payload == b"p"


async def test_an_unsolicited_pong_is_ignored():
    conn, client = await open_ws()
    await client.send(Pong(b"hb"), TextMessage("x"))
    assert await conn.get_message() == "x"


# --- 5. the client closes ---------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (4000, "call ended ✓"), (1001, "")])
async def test_client_close_delivers_earlier_messages_then_reports_its_code_and_reason(code, reason):
    conn, client = await open_ws()
    await client.send(TextMessage("a"), BytesMessage(b"b"), CloseConnection(code=code, reason=reason))
    assert await conn.get_message() == "a"
    assert await conn.get_message() == b"b"
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert (exc.value.code, exc.value.reason) == (code, reason)
    assert (conn.closed.code, conn.closed.reason) == (code, reason)
    reply = await client.next_event()
    assert isinstance(reply, CloseConnection)
    assert (reply.code, reply.reason) == (code, reason)


async def test_client_close_without_a_code_reports_1005():
    conn, client = await open_ws()
    await client.send_raw(masked_frame(0x8, b""))
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1005
    assert isinstance(await client.next_event(), CloseConnection)


async def test_send_after_the_clients_close_raises_transport_closed():
    conn, client = await open_ws()
    await client.send(CloseConnection(code=4000, reason="done"))
    with pytest.raises(TransportClosed):
        await conn.get_message()
    with pytest.raises(TransportClosed) as exc:
        await conn.send_message("too late")
    assert exc.value.code == 4000
    assert isinstance(await client.next_event(), CloseConnection)
    await conn.aclose()
    assert await client.next_event() == EOF  # the reply, then nothing but EOF


async def test_messages_after_the_clients_close_frame_are_ignored():
    conn, client = await open_ws()
    close = client.ws.send(CloseConnection(code=1000))
    await client.send_raw(close + masked_frame(0x1, b"late"))
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1000


# --- 6. the server closes ---------------------------------------------------------------


async def test_aclose_sends_the_code_and_reason_and_returns_on_the_clients_reply(autojump_clock):
    conn, client = await open_ws()
    seen = []

    async def client_side():
        close = await client.next_event()
        seen.append(close)
        await client.send(close.response())
        seen.append(await client.next_event())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        await conn.aclose(1011, "x")
    assert isinstance(seen[0], CloseConnection)
    assert (seen[0].code, seen[0].reason) == (1011, "x")
    assert seen[1] == EOF  # the stream was closed after the reply
    assert trio.current_time() == 0  # no timeout was involved
    assert (conn.closed.code, conn.closed.reason) == (1011, "x")
    with pytest.raises(TransportClosed):
        await conn.get_message()
    with pytest.raises(TransportClosed):
        await conn.send_message("x")


async def test_aclose_drops_what_the_client_sends_before_its_close_reply():
    conn, client = await open_ws()

    async def client_side():
        close = await client.next_event()
        late = masked_frame(0x1, b"late") + masked_frame(0x9, b"late")  # wsproto would refuse them now
        await client.send_raw(late + client.ws.send(close.response()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        await conn.aclose(1000)
    assert await client.next_event() == EOF  # no pong: the connection was closing


async def test_aclose_is_idempotent():
    conn, client = await open_ws()

    async def client_side():
        close = await client.next_event()
        await client.send(close.response())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        await conn.aclose(1000, "bye")
    await conn.aclose(1011, "again")
    await conn.aclose()
    assert await client.next_event() == EOF
    assert (conn.closed.code, conn.closed.reason) == (1000, "bye")


async def test_aclose_returns_at_the_callers_timeout_when_the_client_never_replies(autojump_clock):
    conn, client = await open_ws()
    with trio.move_on_after(5) as scope:
        await conn.aclose(1011, "x")
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1011
    assert await client.next_event() == EOF  # closed all the same


async def test_aclose_returns_when_the_client_drops_tcp_instead_of_replying(autojump_clock):
    conn, client = await open_ws()

    async def client_side():
        assert isinstance(await client.next_event(), CloseConnection)
        await client.stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        await conn.aclose(1000)
    assert trio.current_time() == 0


async def test_aclose_after_the_client_vanished_does_not_wait(autojump_clock):
    conn, client = await open_ws()
    await client.stream.aclose()
    with pytest.raises(TransportClosed):
        await conn.get_message()
    await conn.aclose(1000)
    assert trio.current_time() == 0


# --- 7. TCP closed without a close frame ------------------------------------------------


async def test_tcp_close_without_a_close_frame_reports_1006_after_earlier_messages():
    conn, client = await open_ws()
    await client.send(TextMessage("last words"))
    await client.stream.aclose()
    assert await conn.get_message() == "last words"
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1006
    with pytest.raises(TransportClosed) as exc:
        await conn.send_message("x")
    assert exc.value.code == 1006


# --- 8. malformed frames ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(masked_frame(0x1, b"hi", mask=False), 1002, id="unmasked"),
        pytest.param(masked_frame(0x3, b"?"), 1002, id="reserved-opcode"),
        pytest.param(masked_frame(0x1, b"hi", rsv1=True), 1002, id="rsv1-without-extension"),
        pytest.param(masked_frame(0x0, b"hi"), 1002, id="continuation-without-start"),
        pytest.param(masked_frame(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(masked_frame(0x8, struct.pack("!H", 999)), 1002, id="bad-close-code"),
        pytest.param(masked_frame(0x1, b"\xff\xfe"), 1007, id="invalid-utf8"),
    ],
)
async def test_a_malformed_frame_closes_with_the_protocol_code(frame, code):
    conn, client = await open_ws()
    await client.send_raw(masked_frame(0x1, b"fine") + frame)
    assert await conn.get_message() == "fine"
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == code
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == code


async def test_aclose_after_a_protocol_error_does_not_wait_for_an_unparseable_reply(autojump_clock):
    conn, client = await open_ws()
    await client.send_raw(masked_frame(0x1, b"hi", mask=False))
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1002
    close = await client.next_event()
    await client.send(close.response())  # the client answers promptly, as RFC 6455 asks
    with trio.move_on_after(30) as scope:
        await conn.aclose()
    assert not scope.cancelled_caught, f"aclose() waited {trio.current_time()} s for the caller's timeout"


# --- 9. sending -------------------------------------------------------------------------


async def test_send_message_sends_text_and_binary_frames():
    conn, client = await open_ws()
    big = bytes(range(256)) * 400  # over 64 KiB: a 64-bit length
    for message in ["hello ✓", b"\x00\xffbin", "", b"", "x" * 300, big]:
        await conn.send_message(message)
        got = await client.next_message()
        assert got == message and type(got) is type(message)


async def test_server_frames_are_unmasked():
    conn, client = await open_ws()
    client.raw.clear()
    await conn.send_message("hi")
    await conn.send_message(b"\x01")
    await client.next_message()
    await client.next_message()
    assert bytes(client.raw) == server_frame(0x1, b"hi") + server_frame(0x2, b"\x01")


@pytest.mark.parametrize("message", [bytearray(b"x"), memoryview(b"x"), 42, None, ["x"]])
async def test_send_message_refuses_other_types(message):
    conn, client = await open_ws()
    with pytest.raises(TypeError):
        await conn.send_message(message)
    await conn.send_message("still open")
    assert await client.next_message() == "still open"


# --- 10. a pong during a send -----------------------------------------------------------


async def test_a_pong_waits_for_the_send_in_progress_and_both_arrive_intact():
    conn, client = await open_ws(lockstep_stream_pair)
    big = bytes(range(256)) * 800  # 200 KiB
    got = []

    async def reader():
        got.append(await conn.get_message())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.send_message, big)  # blocks: the client is not reading
        await wait_all_tasks_blocked()
        nursery.start_soon(reader)
        await client.send(Ping(b"are you there"))  # lockstep: returns once the server has it
        await wait_all_tasks_blocked()  # the reader now waits to send the pong
        assert await client.next_message() == big
        pong = await client.next_event()
        assert isinstance(pong, Pong) and pong.payload == b"are you there"
        await client.send(TextMessage("after"))
    assert got == ["after"]
    async with trio.open_nursery() as nursery:  # the stream is still in step
        nursery.start_soon(conn.send_message, "and on")
        assert await client.next_message() == "and on"


async def test_a_send_waits_for_a_pong_in_progress():
    conn, client = await open_ws(lockstep_stream_pair)
    payload = b"p" * 125  # the largest ping

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.get_message)
        await client.send(Ping(payload), TextMessage("end"))
        await wait_all_tasks_blocked()  # the reader is sending the pong; the client is not reading
        nursery.start_soon(conn.send_message, "queued")
        await wait_all_tasks_blocked()
        pong = await client.next_event()
        assert isinstance(pong, Pong) and pong.payload == payload
        assert await client.next_message() == "queued"


async def test_no_data_frame_follows_the_close_reply(autojump_clock):
    conn, client = await open_ws(eager_stream_pair)

    async def reader():
        with pytest.raises(TransportClosed):
            while True:
                await conn.get_message()

    async def writer():
        try:
            await conn.send_message("late")
        except TransportClosed:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await client.send(Ping(b"p"))
        await wait_all_tasks_blocked()  # the reader is sending the pong; the client is not reading
        nursery.start_soon(writer)  # its frame is made now, while open; it waits for the flag
        await wait_all_tasks_blocked()
        assert isinstance(await client.next_event(), Pong)
        await client.send(CloseConnection(code=1000, reason="bye"))  # there before the reader resumes
        reply = await client.next_event()
        assert isinstance(reply, CloseConnection) and reply.code == 1000
        after = b""
        with trio.move_on_after(1):
            after = bytes(await client.stream.receive_some(65536))
        nursery.cancel_scope.cancel()
    assert after == b"", f"the server sent {after!r} after its close frame"


# --- 11. a send cancelled part-way ------------------------------------------------------


async def test_a_send_cancelled_part_way_breaks_the_stream_and_aclose_sends_nothing_more(autojump_clock):
    conn, client, stalling = await open_stalling_ws()
    frame = server_frame(0x2, b"z" * 100)
    stalling.stall_after(10)
    with trio.move_on_after(1) as scope:
        await conn.send_message(b"z" * 100)
    assert scope.cancelled_caught
    with pytest.raises(TransportClosed):
        await conn.send_message("not into a half-written frame")
    await conn.aclose(1011, "x")
    assert trio.current_time() == 1  # aclose did not wait for a close reply
    assert await client.read_to_eof() == frame[:10]  # the half frame, then EOF: no close frame


async def test_a_send_cancelled_before_it_starts_leaves_the_stream_usable():
    conn, client = await open_ws()
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.send_message("never sent")
    assert scope.cancelled_caught
    await conn.send_message("sent")
    assert await client.next_message() == "sent"


async def test_a_send_queued_behind_a_cancelled_pong_does_not_write_into_the_broken_stream(autojump_clock):
    conn, client, stalling = await open_stalling_ws()
    await client.send(Ping(b"p"))
    stalling.stall_after(1)  # the pong: one byte out, then stuck
    async with trio.open_nursery() as nursery:
        reader_scope = trio.CancelScope()

        async def reader():
            with reader_scope:
                await conn.get_message()

        nursery.start_soon(reader)
        await wait_all_tasks_blocked()  # the reader is stuck in the pong
        writer_result = []

        async def writer():
            try:
                await conn.send_message("x")
                writer_result.append("sent")
            except TransportClosed:
                writer_result.append("TransportClosed")

        nursery.start_soon(writer)
        await wait_all_tasks_blocked()  # the writer waits for the send flag
        reader_scope.cancel()
    await conn.abort()
    assert await client.read_to_eof() == server_frame(0xA, b"p")[:1]  # the half pong, nothing after
    assert writer_result == ["TransportClosed"]


# --- 12. abort --------------------------------------------------------------------------


async def test_abort_closes_the_stream_without_a_close_frame():
    conn, client = await open_ws()
    await conn.abort()
    assert await client.read_to_eof() == b""
    with pytest.raises(TransportClosed) as exc:
        await conn.get_message()
    assert exc.value.code == 1006
    with pytest.raises(TransportClosed):
        await conn.send_message("x")
    await conn.aclose(1000)  # a no-op afterwards


# --- the descriptor fast path on a real socket ---------------------------------------------
#
# On a trio.SocketStream the connection reads and writes the socket's descriptor itself
# (WebSocketConnection._recv_some / _send_all). These run over a local socketpair.


@pytest.fixture
async def socket_stream_pair():
    """Makes connected trio.SocketStream pairs; closes their sockets after the test."""
    made = []

    def make() -> tuple[trio.SocketStream, trio.SocketStream]:
        a, b = trio.socket.socketpair()
        made.extend((a, b))
        return trio.SocketStream(a), trio.SocketStream(b)

    yield make
    for sock in made:
        sock.close()


async def test_on_a_socket_the_descriptor_is_used_and_messages_round_trip(socket_stream_pair):
    conn, client = await open_ws(socket_stream_pair)
    assert conn._sock is not None
    await client.send(TextMessage("one"), BytesMessage(b"two"), Ping(b"p"))
    assert await conn.get_message() == "one"
    assert await conn.get_message() == b"two"
    await conn.send_message("three")
    assert await client.next_event() == Pong(b"p")
    assert await client.next_message() == "three"


async def test_on_a_socket_a_message_larger_than_the_socket_buffers_goes_both_ways(socket_stream_pair):
    # 4 MiB does not fit a socketpair's buffers: partial writes and waits on both sides
    big = bytes(range(256)) * (4 * 4096)
    conn, client = await open_ws(socket_stream_pair, max_message_size=len(big))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.send_message, big)
        assert await client.next_message() == big
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, BytesMessage(big))
        assert await conn.get_message() == big


async def test_on_a_socket_eof_reports_1006(socket_stream_pair):
    conn, client = await open_ws(socket_stream_pair)
    await client.send(TextMessage("last"))
    await client.stream.aclose()
    assert await conn.get_message() == "last"
    with pytest.raises(TransportClosed) as info:
        await conn.get_message()
    assert info.value.code == 1006


async def test_on_a_socket_a_closed_stream_is_a_closed_transport_not_a_reused_descriptor(socket_stream_pair):
    conn, client = await open_ws(socket_stream_pair)
    await conn.stream.aclose()  # fileno() is now -1
    with pytest.raises(TransportClosed) as info:
        await conn.send_message("x")
    assert info.value.code == 1006
    with pytest.raises(TransportClosed):
        await conn.get_message()


async def test_on_a_socket_a_flood_of_ready_data_still_lets_other_tasks_run(monkeypatch, socket_stream_pair):
    import callengine.call.websocket as websocket

    monkeypatch.setattr(websocket, "RECEIVE_SIZE", 256)  # many reads, each finding data
    conn, client = await open_ws(socket_stream_pair)
    n = 60
    await client.send(*[BytesMessage(bytes(500)) for _ in range(n)])  # 30 KB, all buffered
    other_ran = 0

    async def other_task():
        nonlocal other_ran
        while True:
            await trio.lowlevel.checkpoint()
            other_ran += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        for _ in range(n):
            assert await conn.get_message() == bytes(500)
        nursery.cancel_scope.cancel()
    # about 120 reads of 256 bytes found data waiting: each counts READ_WORK (8) units of
    # the reader's budget of 64, and only when it yields does the other task get to run
    assert other_ran >= 10  # (30 KB / 256 B) / 8 = about 15 yields; none without them


async def test_on_a_socket_a_send_cancelled_while_waiting_to_write_breaks_the_stream(autojump_clock, socket_stream_pair):
    conn, client = await open_ws(socket_stream_pair, max_message_size=1 << 24)
    with trio.move_on_after(1) as scope:
        await conn.send_message(bytes(8 << 20))  # the client does not read: the write stalls
    assert scope.cancelled_caught
    with pytest.raises(TransportClosed):
        await conn.send_message("not into a half-written frame")
    await conn.aclose(1011, "x")
    assert trio.current_time() == 1  # no close frame was sent, none waited for
    data = await client.read_to_eof()
    assert 0 < len(data) < 8 << 20 and b"\x88" not in data[-200:]


# --- fairness: one peer cannot hold the event loop ----------------------------------------
#
# The reader yields once it has done EVENTS_BETWEEN_YIELDS units of work since it last
# yielded (an event processed, a message handed out, a read that found data at once). A
# sampler task notes, each time it gets to run, how far the connection has got. trio runs
# each batch of ready tasks in a random order (reversed half the time), so between two
# runs of the sampler the reader may have had two turns: at most two budgets' worth.

BUDGET = websocket_module.EVENTS_BETWEEN_YIELDS


async def run_sampled(read, probe) -> tuple[object, list[int]]:
    """``await read()`` while another task samples ``probe()`` whenever it runs."""
    samples: list[int] = []

    async def sampler():
        while True:
            samples.append(probe())
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler)
        result = await read()
        nursery.cancel_scope.cancel()
    samples.append(probe())
    return result, samples


def largest_step(samples: list[int]) -> int:
    return max(b - a for a, b in zip(samples, samples[1:]))


async def test_buffered_messages_are_not_all_handed_out_without_a_checkpoint():
    conn, client = await open_ws()
    n = 1000
    await client.send(*[TextMessage(f"m{i}") for i in range(n)])  # one chunk, one read
    handed_out = 0

    async def read_all():
        nonlocal handed_out
        got = []
        for _ in range(n):
            got.append(await conn.get_message())
            handed_out += 1
        return got

    got, samples = await run_sampled(read_all, lambda: handed_out)
    assert got == [f"m{i}" for i in range(n)]
    assert largest_step(samples) <= 2 * BUDGET


async def test_a_ping_flood_on_a_socket_yields_every_batch_of_events_not_every_8_reads(socket_stream_pair):
    conn, client = await open_ws(socket_stream_pair)
    n = 5000  # 50 KB: one or two reads on the descriptor, each finding data at once
    await client.send(*[Ping(str(i).encode()) for i in range(n)], TextMessage("end"))
    got, samples = await run_sampled(conn.get_message, lambda: conn.pings_received)
    assert got == "end"
    assert conn.pings_received == n
    assert largest_step(samples) <= 2 * BUDGET


async def test_the_pings_of_a_batch_get_one_pong_for_the_latest():
    conn, client = await open_ws()
    n = 1000
    await client.send(*[Ping(str(i).encode()) for i in range(n)], TextMessage("end"))
    assert await conn.get_message() == "end"  # every batch's pong is out before it
    await conn.send_message("marker")
    pongs = []
    while not isinstance(event := await client.next_event(), TextMessage):
        assert isinstance(event, Pong)
        pongs.append(int(event.payload))
    assert event.data == "marker"
    assert 1 <= len(pongs) <= 2 * (n // BUDGET + 1)  # one per batch of at most BUDGET events
    assert pongs == sorted(set(pongs)) and pongs[-1] == n - 1  # each for its batch's latest
    stats = conn.statistics()
    assert (stats["pings_received"], stats["pongs_sent"]) == (n, len(pongs))
    assert stats["control_frames_received"] == n and stats["messages_received"] == 1


async def test_one_frame_per_read_costs_no_extra_trip_through_the_scheduler(socket_stream_pair):
    """The common case, a 20 ms media frame per read: the reader wakes when the frame
    arrives and runs until it waits for the next one, one task step per frame."""
    conn, client = await open_ws(socket_stream_pair)
    n = 20

    class ReaderSteps(trio.abc.Instrument):
        task = None
        steps = 0

        def before_task_step(self, task):
            if task is self.task:
                self.steps += 1

    counter = ReaderSteps()
    got = []

    async def reader(task_status=trio.TASK_STATUS_IGNORED):
        counter.task = trio.lowlevel.current_task()
        task_status.started()
        for _ in range(n):
            got.append(await conn.get_message())

    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reader)
            for i in range(n):
                await client.send(BytesMessage(bytes([i]) * 320))
                await wait_all_tasks_blocked()  # the reader has it and waits for the next
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert got == [bytes([i]) * 320 for i in range(n)]
    assert counter.steps <= n + 2


async def test_the_other_peers_control_frames_are_counted():
    conn, client = await open_ws()
    await client.send(Ping(b"a"), Pong(b"b"), TextMessage("x"), BytesMessage(b"y"), Pong(b"c"), CloseConnection(code=1000))
    assert await conn.get_message() == "x"
    assert await conn.get_message() == b"y"
    with pytest.raises(TransportClosed):
        await conn.get_message()
    assert conn.statistics() == {
        "messages_received": 2,
        "control_frames_received": 4,
        "pings_received": 1,
        "pongs_received": 2,
        "pongs_sent": 0,  # the ping's pong was due in the batch that also held the close
        "pings_sent": 0,
    }


# --- bytes the client sent right behind its upgrade request ---------------------------


async def test_frames_sent_in_the_same_write_as_the_upgrade_request_are_the_first_messages(autojump_clock):
    server_stream, client_stream = memory_stream_pair()
    await client_stream.send_all(raw_request() + masked_frame(0x1, b"first") + masked_frame(0x2, b"second"))
    req = await read_upgrade_request(server_stream)
    conn = await req.accept()
    with trio.fail_after(5):
        assert await conn.get_message() == "first"
        assert await conn.get_message() == b"second"
    assert http_status(bytes(await client_stream.receive_some(65536))) == 101


async def test_on_a_socket_a_frame_in_the_request_segment_is_the_first_message(autojump_clock, socket_stream_pair):
    server_stream, client_stream = socket_stream_pair()
    await client_stream.send_all(raw_request() + masked_frame(0x1, b'{"event":"start"}'))
    conn = await (await read_upgrade_request(server_stream)).accept()
    with trio.fail_after(5):
        assert await conn.get_message() == '{"event":"start"}'
    await client_stream.send_all(masked_frame(0x1, b"then"))
    assert await conn.get_message() == "then"


# --- a close reply the reader could not send ------------------------------------------


async def _peer_close_with_the_reply_cancelled(conn: WebSocketConnection, client: Client) -> None:
    """The writer holds the send flag (the client is not reading); the client closes; the
    reader, waiting for the flag to send the reply, is cancelled; then the writer ends."""
    big = bytes(200 * 1024)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.send_message, big)  # lockstep: blocks until the client reads
        await wait_all_tasks_blocked()
        reader_scope = trio.CancelScope()

        async def reader():
            with reader_scope:
                await conn.get_message()

        nursery.start_soon(reader)
        await client.send(CloseConnection(code=4000, reason="done"))  # returns once read
        await wait_all_tasks_blocked()  # the reader waits for the flag
        reader_scope.cancel()
        assert await client.next_message() == big
    assert conn.closed is not None and conn.closed.code == 4000


async def test_aclose_sends_the_close_reply_a_cancelled_reader_did_not():
    conn, client = await open_ws(lockstep_stream_pair)
    await _peer_close_with_the_reply_cancelled(conn, client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.aclose)
        reply = await client.next_event()
        assert isinstance(reply, CloseConnection), reply
        assert (reply.code, reply.reason) == (4000, "done")
        assert await client.next_event() == EOF


async def test_the_next_get_message_sends_the_close_reply_a_cancelled_reader_did_not(autojump_clock):
    conn, client = await open_ws(lockstep_stream_pair)
    await _peer_close_with_the_reply_cancelled(conn, client)

    async def reader():
        with pytest.raises(TransportClosed) as info:
            await conn.get_message()
        assert info.value.code == 4000

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        with trio.fail_after(5):
            reply = await client.next_event()
        assert isinstance(reply, CloseConnection) and reply.code == 4000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.aclose)
        assert await client.next_event() == EOF  # the reply once, nothing more


async def test_aclose_does_not_wait_for_a_reply_it_could_no_longer_parse(autojump_clock):
    conn, client = await open_ws()

    async def client_side():
        assert isinstance(await client.next_event(), CloseConnection)
        await client.send_raw(masked_frame(0x1, b"x", mask=False))  # wsproto stops parsing here

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_side)
        with trio.move_on_after(30) as scope:
            await conn.aclose(1000)
    assert not scope.cancelled_caught


# --- liveness: pings sent by the writer, and the kernel's unsent bytes ------------------


async def test_a_pong_answers_the_ping_it_names_and_every_one_before(autojump_clock):
    conn, client = await open_ws()
    assert conn.ping_outstanding_since is None and conn.pongs_received == 0
    for _ in range(3):
        await conn.send_ping()
        await trio.sleep(1)
    assert [(await client.next_event()).payload for _ in range(3)] == [b"1", b"2", b"3"]
    assert conn.ping_outstanding_since == 0  # the first one's time

    async def pong(payload: bytes) -> None:
        await client.send(Pong(payload), TextMessage("sync"))
        assert await conn.get_message() == "sync"

    await pong(b"2")
    assert conn.ping_outstanding_since == 2  # the third ping, sent at 2 s
    await pong(b"1")  # late: for a ping already answered
    assert conn.ping_outstanding_since == 2
    await pong(b"3")
    assert conn.ping_outstanding_since is None
    await pong(b"3")  # nothing outstanding: ignored
    assert conn.ping_outstanding_since is None
    assert conn.pongs_received == 4
    assert conn.statistics()["pings_sent"] == 3


@pytest.mark.parametrize("payload", [b"", b"heartbeat", b"99"], ids=["empty", "not-ours", "never-sent"])
async def test_a_pong_with_an_unknown_payload_answers_every_outstanding_ping(autojump_clock, payload):
    conn, client = await open_ws()
    await conn.send_ping()
    await conn.send_ping()
    await client.send(Pong(payload), TextMessage("sync"))
    assert await conn.get_message() == "sync"
    assert conn.ping_outstanding_since is None


async def test_send_ping_does_nothing_once_the_connection_is_closing():
    conn, client = await open_ws()
    await client.send(CloseConnection(code=1000))
    with pytest.raises(TransportClosed):
        await conn.get_message()
    await conn.send_ping()
    assert conn.ping_outstanding_since is None
    await conn.aclose()
    await conn.send_ping()
    assert isinstance(await client.next_event(), CloseConnection)
    assert await client.next_event() == EOF  # no ping on the wire
    assert conn.statistics()["pings_sent"] == 0


async def test_send_ping_waits_for_a_pong_in_progress():
    conn, client = await open_ws(lockstep_stream_pair)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.get_message)
        await client.send(Ping(b"p" * 125), TextMessage("end"))
        await wait_all_tasks_blocked()  # the reader is sending the pong; the client is not reading
        nursery.start_soon(conn.send_ping)
        await wait_all_tasks_blocked()
        assert await client.next_event() == Pong(b"p" * 125)
        assert await client.next_event() == Ping(b"1")


async def test_send_ping_cancelled_part_way_breaks_the_stream_like_send_message(autojump_clock):
    conn, client, stalling = await open_stalling_ws()
    stalling.stall_after(1)
    with trio.move_on_after(1) as scope:
        await conn.send_ping()
    assert scope.cancelled_caught
    with pytest.raises(TransportClosed):
        await conn.send_message("not into a half-written frame")


@pytest.fixture
async def tcp_pair(nursery):
    """(server, client) trio.SocketStreams over TCP loopback; the client's receive buffer
    is small, so a server that sends much soon has bytes the kernel cannot send yet."""
    made = []

    async def make() -> tuple[trio.SocketStream, trio.SocketStream]:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 32768)
        await sock.connect(listener.socket.getsockname())
        server = await listener.accept()
        await listener.aclose()
        made.extend((server, trio.SocketStream(sock)))
        return made[-2], made[-1]

    yield make
    for stream in made:
        await stream.aclose()


async def test_unsent_bytes_over_tcp_rise_while_the_peer_does_not_read_and_fall_when_it_does(tcp_pair):
    server_stream, client_stream = await tcp_pair()
    conn, client = await open_ws(lambda: (server_stream, client_stream))
    assert conn.unsent_bytes() == 0
    big = bytes(8 << 20)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.send_message, big)
            while not conn.unsent_bytes():
                await trio.sleep(0.001)
            assert await client.next_message() == big
        while conn.unsent_bytes():
            await trio.sleep(0.001)
    assert conn.unsent_bytes() == 0
    await conn.stream.aclose()
    assert conn.unsent_bytes() is None


async def test_unsent_bytes_of_a_tls_stream_come_from_its_tcp_socket(tcp_pair):
    import ssl


    server_stream, _ = await tcp_pair()
    tls = trio.SSLStream(server_stream, ssl.create_default_context(), server_hostname="engine.example")
    conn = WebSocketConnection(tls)
    assert conn.unsent_bytes() == 0


async def test_unsent_bytes_is_none_in_memory_and_on_a_unix_socket_and_decided_once(monkeypatch, socket_stream_pair):
    from callengine.call import sockio

    conn, _ = await open_ws()
    assert conn.unsent_bytes() is None
    calls = []
    real_ioctl = sockio.fcntl.ioctl
    monkeypatch.setattr(sockio.fcntl, "ioctl", lambda *args: calls.append(args) or real_ioctl(*args))
    conn, _ = await open_ws(socket_stream_pair)  # AF_UNIX: the kernel does not say
    assert [conn.unsent_bytes() for _ in range(3)] == [None, None, None]
    assert len(calls) == 1
