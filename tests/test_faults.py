"""Faults and bad input: a bad call never hurts the others.

Every loopback fault test runs a healthy call next to the bad one and checks three things:

(a) the server keeps serving: the healthy call goes on through the fault and a new call is
    accepted after it;
(b) the bad call ends with a clear log line and the right close code, or, where the fault
    is not fatal (unknown events, Knowlarity's odd frames and stray text), goes on and is
    counted;
(c) nothing else is lost: the healthy call heard exactly the audio its agent played, sample
    for sample from the first one, in one piece (no gap).

Loopback tests run on the real clock and assert on outcomes only (generous deadlines,
never a duration); the engine-level pieces run in memory on virtual time.

What the engine does with each fault (end cause, close code, log line):

====================================  ===================  =====  ==============================
fault                                 end cause            code   log line (logger callengine.*)
====================================  ===================  =====  ==============================
malformed JSON                        protocol_error       1007   "protocol error: ... not valid JSON"
unknown event (Awaaz)                 not fatal: counted   -      "unknown message 'x' ignored" (first 5)
invalid base64                        protocol_error       1007   "... is not valid base64"
odd-length PCM (Awaaz payload)        protocol_error       1007   "... not whole 16-bit samples"
odd-length binary frames (Knowlarity) not fatal: carried   -      (none: the odd byte joins the next frame)
binary frame on Awaaz                 protocol_error       1003   "binary frames are not part of the protocol"
text after the start (Knowlarity)     not fatal: counted   -      "unknown message 'text' ignored"
media before start (Awaaz)            not fatal: counted   -      "unknown message 'media before start'"
audio before metadata (Knowlarity)    not fatal: counted   -      "unknown message 'binary before metadata'"
message over max_message_size         message_too_big      1009   "closed with 1009: message over 8192 bytes"
flood of tiny messages                see the flood test   -      at most 5 lines per call
handshake never completes             (no call)            -      "handshake from ... failed: timed out"
WebSocket open, no start message      start_timeout        1002   "no start message within ..."
abrupt TCP reset mid-play             disconnected         none   "connection lost (close code 1006)"
provider stops reading                send_timeout         1001   "the provider has not taken a message ..."
agent raises                          agent_error          1011   "agent raised RuntimeError(...)"
agent blocks for ever in an await     provider_stop        1000   "provider stopped the call"; agent cancelled
over the call limit                   (no call)            503    "rejected ...: 503 call limit reached"
====================================  ===================  =====  ==============================

Every call also ends with one JSON summary line on ``callengine.calls`` (end_cause,
close_code, counters); the tests read the bad call's outcome from it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import struct

import numpy as np
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, wrap_client_stream, wrap_server_stream

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.call.session import CallSession
from callengine.call.transport import WebSocketTransport, memory_transport_pair
from callengine.events import CallerAudio, UnknownMessage
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import DialError, open_dialed_call
from callengine.testing.harness import open_simulated_call
from callengine.testing.provider import default_start

RATE = 8000  # Awaaz's wire rate; the healthy agent plays at it, so what is heard is exact
HEALTHY_TONE = tone(440, 30.0, RATE)  # longer than any test runs
MAX_MESSAGE = 8192

# the agent's cancellation, seen from its finally (for the agent that blocks for ever)
_agent_exits: list[str] = []
_agent_blocked: dict[str, trio.Event] = {}


async def agent(call):
    """One agent for every call; the start message's custom ``role`` says what it does."""
    role = call.info.custom.get("role", "hold")
    if role == "healthy":
        call.barge_in = False
        await call.play(HEALTHY_TONE, RATE)
        async for _ in call:  # reads the caller's audio: none of it may be dropped
            pass
    elif role == "play":
        call.barge_in = False
        await call.play(tone(660, 10.0, RATE), RATE)
        await trio.sleep_forever()
    elif role == "raise":
        await trio.sleep(0.05)
        raise RuntimeError("agent bug: boom")
    elif role == "block":
        try:
            _agent_blocked[call.info.call_id].set()
            await trio.Event().wait()  # nothing will ever set it
        finally:
            _agent_exits.append(call.info.call_id)
    else:
        await trio.sleep_forever()


@pytest.fixture
async def start_server(nursery):
    async def start(**options):
        options.setdefault("port", 0)
        options.setdefault("loop_watchdog_s", None)
        options.setdefault("max_message_size", MAX_MESSAGE)
        # a generous lead: a gap at the healthy call then means a stall of 0.4 s, not noise
        options.setdefault("call", CallConfig(agent_rate=RATE, lead_ms=400))
        server = CallServer(agent, ServerConfig(**options))
        await nursery.start(server.serve)
        return server

    return start


# ----------------------------------------------------------------------------- helpers


def summary(caplog, call_id: str) -> dict:
    """The bad call's JSON summary line (callengine.calls)."""
    for record in caplog.records:
        if record.name == "callengine.calls":
            data = json.loads(record.getMessage())
            if data["call_id"] == call_id:
                return data
    raise AssertionError(f"no summary line for call {call_id!r}")


async def wait_for_summary(caplog, call_id: str) -> dict:
    with trio.fail_after(10):
        while True:
            try:
                return summary(caplog, call_id)
            except AssertionError:
                await trio.sleep(0.01)


def log_lines(caplog, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("callengine") and r.levelno >= level]


def assert_logged(caplog, *fragments: str, level: int = logging.WARNING) -> None:
    lines = log_lines(caplog, level)
    assert any(all(f in line for f in fragments) for line in lines), (fragments, lines)


def assert_heard_intact(sim, min_seconds: float) -> None:
    """The healthy call heard exactly what its agent played, in one piece."""
    assert sim.gaps() == [], sim.format_timeline()
    assert len(sim.heard) == 1, [(a.end, b.start, b.start - a.end) for a, b in zip(sim.heard, sim.heard[1:])]
    heard = np.frombuffer(sim.heard[0].pcm, dtype="<i2")
    assert len(heard) >= min_seconds * RATE
    np.testing.assert_array_equal(heard, HEALTHY_TONE[: len(heard)])


async def wait_heard(sim, seconds: float) -> None:
    with trio.fail_after(10):
        while sim.heard_seconds() < seconds:
            await trio.sleep(0.01)


@contextlib.asynccontextmanager
async def healthy_call(server, caplog):
    """A healthy Awaaz call around the block; afterwards, checks (a) and (c)."""
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="healthy", role="healthy")) as sim:
        await wait_heard(sim, 0.1)  # playing before the fault
        yield sim
        await wait_heard(sim, sim.heard_seconds() + 0.2)  # and still playing after it
    assert_heard_intact(sim, 0.3)
    report = await wait_for_summary(caplog, "healthy")
    assert report["end_cause"] == "provider_stop"
    assert report["underruns"] == 0 and report["frames_dropped"] == 0
    # a new call is accepted after the fault
    async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="after")) as after:
        assert after.started.is_set()
    assert (await wait_for_summary(caplog, "after"))["end_cause"] == "provider_stop"
    assert server.counters["errors"] == 0  # nothing reached the server's error boundary


@contextlib.asynccontextmanager
async def open_raw_websocket(port: int, path: str, subprotocols=None):
    """A bare trio-websocket client that owns its TCP stream: trio-websocket's own
    ``open_websocket_url`` leaves the socket open when the server closes first."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                ws = await wrap_client_stream(nursery, stream, "127.0.0.1", path, subprotocols=subprotocols)
            try:
                yield ws
            finally:
                with trio.move_on_after(2, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def raw_websocket_call(port: int, path: str, messages, subprotocols=None) -> int | None:
    """Open a WebSocket, send ``messages`` as they are, return the close code it gets."""
    async with open_raw_websocket(port, path, subprotocols) as ws:
        for message in messages:
            await ws.send_message(message)
        with trio.fail_after(10):
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code


def media(payload: str) -> str:
    return json.dumps({"event": "media", "stream_sid": "MZbad", "media": {"payload": payload}})


# ------------------------------------------------------------------ fatal bad input


async def _send_then_wait(sim, *messages) -> None:
    for message in messages:
        await sim.transport.send_message(message)
    with trio.fail_after(10):
        await sim.closed.wait()


FATAL = {
    # name: (provider, messages after the start, end cause, close code, log fragments)
    "malformed_json": ("awaaz", ['{"event": "media", "media": {"payload": '], "protocol_error", 1007, ["protocol error", "not valid JSON"]),
    "json_not_an_object": ("awaaz", ["[1, 2, 3]"], "protocol_error", 1007, ["protocol error", "must be a JSON object"]),
    "invalid_base64": ("awaaz", [media("@@ not base64 @@")], "protocol_error", 1007, ["protocol error", "not valid base64"]),
    "odd_length_pcm": ("awaaz", [media(base64.b64encode(b"\x01\x02\x03").decode())], "protocol_error", 1007, ["protocol error", "not whole 16-bit samples"]),
    "binary_frame_on_awaaz": ("awaaz", [b"\x00\x01\x02\x03"], "protocol_error", 1003, ["protocol error", "binary frames are not part of the protocol"]),
    "message_over_the_size_limit": ("knowlarity", [b"\0" * (MAX_MESSAGE + 2)], "message_too_big", 1009, ["closed with 1009", f"message over {MAX_MESSAGE} bytes"]),
}


@pytest.mark.parametrize("name", list(FATAL))
async def test_bad_input_ends_only_that_call(start_server, caplog, name):
    caplog.set_level(logging.INFO)
    provider, messages, cause, code, fragments = FATAL[name]
    server = await start_server()
    async with healthy_call(server, caplog):
        url = f"ws://127.0.0.1:{server.port}/{provider}"
        async with open_dialed_call(url, provider, start=default_start(provider, call_id="bad")) as bad:
            await _send_then_wait(bad, *messages)
        assert bad.closed_code == code  # what the provider sees on the wire
    report = await wait_for_summary(caplog, "bad")
    assert (report["end_cause"], report["close_code"]) == (cause, code)
    assert_logged(caplog, *fragments)
    assert not [line for line in log_lines(caplog, logging.ERROR)]  # bad input is a warning, not a stack trace


async def test_awaaz_media_before_start_is_skipped_and_the_call_starts(start_server, caplog):
    """Awaaz's own connector carries on after media (and a second start) before start, so
    the engine skips them, counts them, and runs the call once the start comes."""
    caplog.set_level(logging.INFO)
    server = await start_server()
    early = media(base64.b64encode(b"\0" * 320).decode())
    start = json.dumps({"event": "start", "stream_sid": "MZe", "start": {"call_sid": "early", "custom_parameters": {"role": "hold"}}})
    async with healthy_call(server, caplog):
        async with open_raw_websocket(server.port, "/awaaz") as ws:
            for message in (early, early, start, start, early):
                await ws.send_message(message)
            await trio.sleep(0.3)
            await ws.send_message('{"event":"stop"}')
            with trio.fail_after(10):
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await ws.get_message()
    report = await wait_for_summary(caplog, "early")
    assert (report["end_cause"], report["close_code"]) == ("provider_stop", 1000)
    assert report["unknown_messages"] == 3  # two media before start, one second start
    assert report["frames_in"] == 1


async def test_knowlarity_audio_before_the_metadata_is_skipped_and_the_call_starts(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server()
    start = json.dumps({"uuid": "late-meta", "sample_rate": 16000, "from": "1", "to": "2"})
    async with healthy_call(server, caplog):
        async with open_raw_websocket(server.port, "/knowlarity", ["audio.drachtio.org"]) as ws:
            for message in (b"\0" * 640, b"\0" * 640, start, b"\0" * 640):
                await ws.send_message(message)
            await trio.sleep(0.3)
            await ws.send_message(b"")  # mod_audio_fork's graceful shutdown: then it waits
            with trio.fail_after(10):
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await ws.get_message()
    report = await wait_for_summary(caplog, "late-meta")
    assert (report["end_cause"], report["close_code"]) == ("provider_stop", 1000)
    assert report["unknown_messages"] == 2 and report["frames_in"] == 1


# ------------------------------------------------------------- input that is not fatal


NOT_FATAL = {
    # name: (provider, messages after the start, unknown messages counted)
    "unknown_events": (
        "awaaz",
        [json.dumps({"event": "heartbeat"}), json.dumps({"event": "x-vendor", "data": [1]}), json.dumps({"event": "dtmf", "dtmf": {"digit": "?"}})],
        3,
    ),
    "text_after_start_on_knowlarity": (
        "knowlarity",
        ["hello", json.dumps({"event": "websocket:something"}), "{not json"],
        3,
    ),
    "odd_length_binary_frames_on_knowlarity": ("knowlarity", [b"\x01", b"\x02\x03\x04", b"\x05" * 641], 0),
}


@pytest.mark.parametrize("name", list(NOT_FATAL))
async def test_input_that_is_not_fatal_is_counted_and_the_call_goes_on(start_server, caplog, name):
    caplog.set_level(logging.INFO)
    provider, messages, unknown = NOT_FATAL[name]
    server = await start_server()
    async with healthy_call(server, caplog):
        url = f"ws://127.0.0.1:{server.port}/{provider}"
        async with open_dialed_call(url, provider, start=default_start(provider, call_id="odd")) as odd:
            for message in messages:
                await odd.transport.send_message(message)
            await trio.sleep(0.2)  # the microphone keeps streaming after the odd input
            assert not odd.closed.is_set()
        # leaving the block stops the call the provider's way
    report = await wait_for_summary(caplog, "odd")
    assert report["end_cause"] == "provider_stop"
    assert report["unknown_messages"] == unknown
    assert report["frames_in"] >= 5  # its audio kept flowing
    if unknown:
        assert_logged(caplog, "unknown message", "ignored", level=logging.INFO)
    assert not log_lines(caplog, logging.WARNING)


# ------------------------------------------------------------------- agent faults


async def test_agent_that_raises_ends_its_call_with_1011(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server()
    async with healthy_call(server, caplog):
        url = f"ws://127.0.0.1:{server.port}/awaaz"
        async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="bad", role="raise")) as bad:
            with trio.fail_after(10):
                await bad.closed.wait()
        assert bad.closed_code == 1011
    report = await wait_for_summary(caplog, "bad")
    assert (report["end_cause"], report["close_code"]) == ("agent_error", 1011)
    assert "agent bug: boom" in report["agent_error"]
    assert_logged(caplog, "agent raised RuntimeError", "boom", level=logging.ERROR)


async def test_agent_that_blocks_for_ever_is_cancelled_when_the_provider_stops(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server()
    _agent_blocked["stuck"] = trio.Event()
    async with healthy_call(server, caplog):
        url = f"ws://127.0.0.1:{server.port}/awaaz"
        async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="stuck", role="block")):
            with trio.fail_after(10):
                await _agent_blocked["stuck"].wait()
        # leaving the block: the provider's stop message, then its close
    report = await wait_for_summary(caplog, "stuck")
    assert (report["end_cause"], report["close_code"]) == ("provider_stop", 1000)
    assert "stuck" in _agent_exits  # the agent was cancelled: its finally ran
    assert report["agent_stuck"] is False
    assert_logged(caplog, "provider stopped the call", level=logging.INFO)


# ------------------------------------------------------------ connection faults


async def test_abrupt_tcp_reset_mid_play_ends_the_call_as_disconnected(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server()
    async with healthy_call(server, caplog):
        url = f"ws://127.0.0.1:{server.port}/awaaz"
        async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="reset", role="play")) as bad:
            await wait_heard(bad, 0.2)  # mid-play
            sock = bad.transport.websocket._stream.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await bad.transport.abort()  # close with SO_LINGER 0: the kernel sends a RST
            with trio.fail_after(10):
                await bad.closed.wait()
    report = await wait_for_summary(caplog, "reset")
    assert report["end_cause"] == "disconnected"
    assert report["close_code"] is None  # nobody to send a close frame to
    # the engine did not wait out its close timeout (2 s) on a dead socket
    assert report["teardown_s"] < 1.0
    assert_logged(caplog, "connection lost")


async def test_handshake_that_never_completes_is_closed_after_the_handshake_timeout(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server(handshake_timeout_s=0.5, call=CallConfig(agent_rate=RATE, lead_ms=400, start_timeout_s=0.5))
    port = server.port

    async def closed_by_server(stream) -> None:
        with trio.fail_after(10):
            try:
                while await stream.receive_some(4096):
                    pass
            except trio.BrokenResourceError:
                pass  # a reset is a close too

    async def silent() -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await closed_by_server(stream)

    async def slow_request() -> None:
        request = b"GET /awaaz HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            async with trio.open_nursery() as nursery:

                async def drip() -> None:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        for i in range(len(request)):
                            await stream.send_all(request[i : i + 1])
                            await trio.sleep(0.05)

                nursery.start_soon(drip)
                await closed_by_server(stream)
                nursery.cancel_scope.cancel()

    async def no_start_message() -> None:
        code = await raw_websocket_call(port, "/awaaz", [])
        assert code == 1002

    async with healthy_call(server, caplog):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(silent)
            nursery.start_soon(slow_request)
            nursery.start_soon(no_start_message)
    assert server.counters["handshake_failures"] == 2
    timeouts = [line for line in log_lines(caplog, logging.WARNING) if "handshake from" in line and "timed out" in line]
    assert len(timeouts) == 2
    report = await wait_for_summary(caplog, "")
    assert (report["end_cause"], report["close_code"]) == ("start_timeout", 1002)
    assert_logged(caplog, "no start message within 0.5 s")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_200_connections_at_once_over_the_call_limit(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server(max_calls=5)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    fds_before = _open_fds()
    accepted, refused, other = [], [], []
    release = trio.Event()
    settled = trio.Event()

    def note(bucket, i) -> None:
        bucket.append(i)
        if len(accepted) + len(refused) + len(other) == 200:
            settled.set()

    async def dial(i: int) -> None:
        try:
            async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id=f"c{i}")):
                note(accepted, i)
                await release.wait()
        except DialError as exc:
            note(refused if "503" in str(exc) else other, i)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(dial, i)
        with trio.fail_after(30):
            await settled.wait()
        assert (len(accepted), len(refused), other) == (5, 195, [])
        assert server.active_calls == 5
        release.set()
    assert server.rejections == {"503": 195}
    assert server.counters["errors"] == 0
    # the server keeps accepting after the burst
    async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="after")):
        pass
    with trio.fail_after(10):
        while server.counters["calls_ended"] < 6 or server.active_calls:
            await trio.sleep(0.01)
    assert server.end_causes == {"provider_stop": 6}
    # no leaked sockets: every connection's socket was closed on both sides
    with trio.fail_after(10):
        while _open_fds() > fds_before:
            await trio.sleep(0.01)
    assert _open_fds() == fds_before
    # a refusal is one INFO line each, never a stack trace
    assert len([line for line in log_lines(caplog) if "503 call limit reached (5)" in line]) == 195
    assert not log_lines(caplog, logging.WARNING)


# ------------------------------------------------------------------------- flood


async def test_flood_of_tiny_messages(start_server, caplog):
    """20,000 tiny frames as fast as the client can send them, next to a healthy call.

    What the engine does, by provider:
    * Knowlarity, 1-byte binary frames: valid (odd bytes are carried), so every one is
      processed: 10,000 two-byte samples of caller audio. The agent here never reads: its
      inbox is bounded by audio duration (the oldest frames would be discarded and counted
      past 2 s), and TCP flow control bounds everything before it. The call goes on.
    * Awaaz, empty text frames: not JSON, so the first one ends the call (1007); the rest
      are refused by the closed connection.
    * Awaaz, tiny unknown events: each is counted; only the first five are logged.
    """
    caplog.set_level(logging.INFO)
    server = await start_server()
    n = 20_000

    async def knowlarity_bytes() -> None:
        start = json.dumps({"uuid": "flood-k", "sample_rate": 16000, "from": "1", "to": "2"})
        async with open_raw_websocket(server.port, "/knowlarity", ["audio.drachtio.org"]) as ws:
            await ws.send_message(start)
            for _ in range(n):
                await ws.send_message(b"\x01")
        # leaving the block closes with 1000: Knowlarity's way to hang up

    async def awaaz_empty() -> None:
        start = json.dumps({"event": "start", "stream_sid": "MZe", "start": {"call_sid": "flood-e"}})
        sent = 0
        async with open_raw_websocket(server.port, "/awaaz") as ws:
            await ws.send_message(start)
            with contextlib.suppress(ConnectionClosed):
                for sent in range(n):
                    await ws.send_message("")
        assert sent < n  # refused long before the end

    async def awaaz_unknown() -> None:
        start = json.dumps({"event": "start", "stream_sid": "MZu", "start": {"call_sid": "flood-u"}})
        async with open_raw_websocket(server.port, "/awaaz") as ws:
            await ws.send_message(start)
            for _ in range(n // 4):
                await ws.send_message('{"event":"x"}')
            await ws.send_message('{"event":"stop"}')

    async with healthy_call(server, caplog):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(knowlarity_bytes)
            nursery.start_soon(awaaz_empty)
            nursery.start_soon(awaaz_unknown)

    k = await wait_for_summary(caplog, "flood-k")
    assert k["end_cause"] == "provider_stop"
    assert k["frames_in"] == n // 2 and k["audio_in_s"] == pytest.approx(n / 2 / 16000)
    # the agent's inbox is bounded by audio duration (2 s), not by message count: these
    # 10,000 frames hold 0.625 s of audio, so none was discarded
    assert k["frames_dropped"] == 0 and k["frames_unread"] == 0
    e = await wait_for_summary(caplog, "flood-e")
    assert (e["end_cause"], e["close_code"]) == ("protocol_error", 1007)
    u = await wait_for_summary(caplog, "flood-u")
    assert u["end_cause"] == "provider_stop" and u["unknown_messages"] == n // 4
    unknown_lines = [line for line in log_lines(caplog) if "unknown message" in line]
    assert len(unknown_lines) == 5 and "only counted" in unknown_lines[-1]


# ------------------------------------------------ a provider that stops reading (in memory)


async def _start_and_stream(transport, codec) -> None:
    """A provider that sends its start and then its microphone, and never reads."""
    for message in codec.send(default_start("awaaz", call_id="deaf")):
        await transport.send_message(message)
    while True:
        await trio.sleep(0.02)
        for message in codec.send(CallerAudio(b"\0" * 320, RATE)):
            await transport.send_message(message)


async def test_provider_that_stops_reading_ends_the_call_after_the_send_timeout(autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    engine, provider = memory_transport_pair(buffer=8)
    queued = []

    async def talker(call):
        # keeps queueing audio, as an LLM agent streaming TTS would
        while True:
            queued.append(await call.play(tone(440, 1.0, RATE), RATE))
            await trio.sleep(1.0)

    session = CallSession(engine, talker, create_codec("awaaz", Role.ENGINE), CallConfig(agent_rate=RATE, send_timeout_s=5.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_start_and_stream, provider, create_codec("awaaz", Role.PROVIDER))
        report = await session.run()
        nursery.cancel_scope.cancel()  # the provider is still streaming into a closed call
    assert (report.end_cause, report.close_code) == ("send_timeout", 1001)
    # it sent until the provider's buffer was full, then waited send_timeout_s, not longer
    assert report.stats.frames_out == 8
    assert 5.0 <= report.duration_s <= 5.5
    assert report.teardown_s == 0
    # what the agent queued is released: every playback is settled, nothing is held
    assert all(pb.done for pb in queued) and len(queued) <= 6
    assert not session.outbox and not session.ledger.in_flight
    assert_logged(caplog, "has not taken a message for 5.0 s")


async def test_without_a_send_timeout_a_provider_that_stops_reading_holds_the_call(autojump_clock):
    """The old behaviour, kept behind ``send_timeout_s=None``: the writer waits for ever."""
    engine, provider = memory_transport_pair(buffer=8)

    async def talker(call):
        await call.play(tone(440, 1.0, RATE), RATE)
        await trio.sleep_forever()

    session = CallSession(engine, talker, create_codec("awaaz", Role.ENGINE), CallConfig(agent_rate=RATE, send_timeout_s=None))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_start_and_stream, provider, create_codec("awaaz", Role.PROVIDER))
        with trio.move_on_after(20):  # four times the default send timeout
            await session.run()
        nursery.cancel_scope.cancel()
    assert session.statistics().frames_out == 8
    assert session.end_cause == "shutdown"  # only our cancellation ended it


async def test_send_timeout_over_a_websocket_whose_peer_stops_reading(autojump_clock, caplog):
    """The same over trio-websocket on a zero-buffer stream pair: the engine's send is
    cancelled inside trio-websocket, and the close (which cannot be sent either) is bounded
    by close_timeout_s."""
    caplog.set_level(logging.INFO)
    server_stream, client_stream = trio.testing.lockstep_stream_pair()
    config = CallConfig(agent_rate=RATE, send_timeout_s=2.0, close_timeout_s=1.0)

    async def talker(call):
        await call.play(tone(440, 30.0, RATE), RATE)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:

        async def client() -> None:
            ws = await wrap_client_stream(nursery, client_stream, "127.0.0.1", "/awaaz", message_queue_size=4)
            with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                await _start_and_stream(WebSocketTransport(ws), create_codec("awaaz", Role.PROVIDER))

        nursery.start_soon(client)
        request = await wrap_server_stream(nursery, server_stream)
        ws = await request.accept()
        session = CallSession(WebSocketTransport(ws), talker, create_codec("awaaz", Role.ENGINE), config)
        report = await session.run()
        nursery.cancel_scope.cancel()
    assert (report.end_cause, report.close_code) == ("send_timeout", 1001)
    assert report.teardown_s <= 1.0 + 1e-6  # the close could not be sent: bounded
    assert_logged(caplog, "has not taken a message for 2.0 s")


# ---------------------------------------------------------- engine-level, in memory


async def test_unknown_events_are_counted_and_the_log_stays_short(autojump_clock, caplog):
    caplog.set_level(logging.DEBUG)

    async def talker(call):
        call.barge_in = False
        await call.play(tone(440, 2.0, RATE), RATE)
        await trio.sleep_forever()

    async with open_simulated_call(talker, "awaaz", CallConfig(agent_rate=RATE)) as sim:
        for i in range(1000):
            await sim.provider._send(UnknownMessage(kind=f"vendor-{i % 7}", raw={"event": f"vendor-{i % 7}"}))
        await trio.sleep(2.5)
        await sim.provider.stop()
    assert sim.report.end_cause == "provider_stop"
    assert sim.report.stats.unknown_messages == 1000
    heard = np.frombuffer(b"".join(s.pcm for s in sim.provider.heard), dtype="<i2")
    np.testing.assert_array_equal(heard, tone(440, 2.0, RATE))
    assert sim.provider.gaps() == []
    info = [r.getMessage() for r in caplog.records if r.name == "callengine.call" and r.levelno == logging.INFO and "unknown message" in r.getMessage()]
    assert len(info) == 5 and "only counted" in info[-1]


async def test_knowlarity_odd_binary_frames_are_carried_sample_exact(autojump_clock):
    engine, provider = memory_transport_pair()
    got = bytearray()

    async def recorder(call):
        async for event in call:
            if isinstance(event, CallerAudio):
                got.extend(event.pcm)

    session = CallSession(engine, recorder, create_codec("knowlarity", Role.ENGINE), CallConfig(agent_rate=16000))
    signal = tone(300, 0.5, 16000).tobytes()
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, len(signal)), size=400, replace=False))
    frames = [signal[a:b] for a, b in zip([0, *cuts], [*cuts, len(signal)])]
    assert any(len(f) % 2 for f in frames)
    codec = create_codec("knowlarity", Role.PROVIDER)

    async def send_all() -> None:
        for message in codec.send(default_start("knowlarity", call_id="odd")):
            await provider.send_message(message)
        for frame in frames:
            await provider.send_message(frame)
            await trio.sleep(0.001)
        await trio.sleep(0.1)
        await provider.aclose(1000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_all)
        report = await session.run()
    assert report.end_cause == "provider_stop"
    assert bytes(got) == signal


async def test_agent_blocked_in_an_await_is_cancelled_at_once_when_the_provider_stops(autojump_clock):
    exited = []

    async def blocked(call):
        try:
            await trio.Event().wait()
        finally:
            exited.append(trio.current_time())

    async with open_simulated_call(blocked, "awaaz") as sim:
        await trio.sleep(1.0)
        await sim.provider.stop()
    assert (sim.report.end_cause, sim.report.close_code) == ("provider_stop", 1000)
    assert sim.report.duration_s == pytest.approx(1.0)
    assert len(exited) == 1 and sim.report.teardown_s == 0
    assert sim.report.stats.agent_stuck is False
