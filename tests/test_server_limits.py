"""Descriptors: a cap on connections mid-handshake, and an accept loop that survives EMFILE.

Counts are kept small (a cap of 20, 60 half-open connections; a subprocess with a
descriptor limit of 48) so that the tests fit any machine's limits.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal

import pytest
import trio

from callengine.audio.generate import tone
from callengine.limits import EVICT_AFTER_S, REPORT_INTERVAL_S, RateLimitedLog, default_max_pending_handshakes
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call

from .serve_process import start_serve
from .cli_agents import echo


async def _served(port: int) -> float:
    """Place a real echo call; return how much of its echo the caller heard."""
    async with open_dialed_call(f"ws://127.0.0.1:{port}/awaaz", "awaaz") as sim:
        sim.say(tone(500, 0.5, 8000, dbfs=-12))
        with trio.fail_after(15):
            while sim.heard_seconds() < 0.4:
                await trio.sleep(0.02)
    return sim.heard_seconds()


class HalfOpen:
    """Raw TCP connections that never send their upgrade request."""

    def __init__(self) -> None:
        self.streams: list[trio.SocketStream] = []
        self.answers: dict[int, bytes] = {}  # index -> what the server sent before closing

    async def open(self, nursery, port: int, count: int) -> None:
        for i in range(count):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            self.streams.append(stream)
            nursery.start_soon(self._read, i, stream)

    async def _read(self, i: int, stream) -> None:
        data = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while chunk := await stream.receive_some(4096):
                data += chunk
            self.answers[i] = data

    async def close(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(Exception):
                await stream.aclose()


async def test_half_open_connections_cannot_take_every_descriptor(nursery, caplog):
    caplog.set_level(logging.WARNING, logger="callengine.server")
    server = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None, max_pending_handshakes=20))
    await nursery.start(server.serve)
    held = HalfOpen()
    async with trio.open_nursery() as readers:
        await held.open(readers, server.port, 60)
        # every connection over the cap is answered at once, whichever it is (the new one,
        # or on a slow machine an older one it displaced)
        with trio.fail_after(10):
            while len(held.answers) < 40:
                await trio.sleep(0.02)
        assert server.pending_handshakes == 20
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in held.answers.values())
        assert server.rejections == {"handshake_limit": 40}
        # once they have waited, a real call displaces the oldest and is served
        await trio.sleep(EVICT_AFTER_S + 0.2)
        assert await _served(server.port) >= 0.4
        assert server.rejections == {"handshake_limit": 41}
        assert len(held.streams) - len(held.answers) == 19  # the others are still open
        await held.close()
    busy_lines = [r.getMessage() for r in caplog.records if "over the pending-handshake limit" in r.getMessage()]
    assert 1 <= len(busy_lines) <= 3  # one line per interval, with a count, not one per connection
    assert not [r for r in caplog.records if r.exc_info]


def test_default_pending_cap_is_sized_from_the_descriptor_limit():
    assert default_max_pending_handshakes(1024) == 240
    assert default_max_pending_handshakes(64) == 8
    assert default_max_pending_handshakes(1 << 20) == 1024
    assert ServerConfig().max_pending_handshakes == default_max_pending_handshakes()
    with pytest.raises(ValueError, match="max_pending_handshakes"):
        ServerConfig(max_pending_handshakes=0)


def test_rate_limited_log_counts_between_lines(caplog):
    now = [0.0]
    logger = logging.getLogger("callengine.test.ratelimited")
    rl = RateLimitedLog(logger, interval_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for t in [0.0, 0.1, 0.2, 4.9, 5.0, 5.1, 12.0]:
            now[0] = t
            rl.note("%d events")
    assert [r.getMessage() for r in caplog.records] == ["1 events", "4 events", "2 events"]


def _limit_descriptors(n: int):
    def preexec() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return preexec


async def test_running_out_of_descriptors_is_logged_boundedly_and_the_server_recovers(nursery):
    limit = 48  # the serving process needs about a dozen of its own
    sp = await start_serve(
        nursery,
        ["echo", "--port", "0", "--max-pending-handshakes", "1000", "--agent-rate", "8000"],
        preexec_fn=_limit_descriptors(limit),
    )
    assert f"file descriptor limit: {limit}".encode() in sp.stderr
    held = HalfOpen()
    async with trio.open_nursery() as readers:
        await held.open(readers, sp.port, limit + 30)  # the rest wait in the listen backlog
        await sp.wait_for(rb"cannot accept connections")
        t_first = trio.current_time()
        await trio.sleep(2.0)  # the loop retries meanwhile (backing off)
        elapsed = trio.current_time() - t_first
        lines = [ln for ln in sp.stderr_text.splitlines() if "cannot accept connections" in ln]
        assert 1 <= len(lines) <= 2 + int(elapsed / REPORT_INTERVAL_S), lines
        assert re.search(r"\d+ accept\(s\) failed .*Too many open files.*descriptor limit 48", lines[0]), lines[0]
        await held.close()
    await sp.wait_for(rb"accepting connections again after \d+ failed accept")
    assert await _served(sp.port) >= 0.4
    sp.proc.send_signal(signal.SIGTERM)
    assert await sp.wait() == 0, sp.stderr_text
    assert "Traceback" not in sp.stderr_text
