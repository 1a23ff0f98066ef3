"""One provider's flood must not stall every other call.

A real :class:`~callengine.server.CallServer` on loopback runs an echo agent. A polite
neighbour call (a simulated Awaaz provider) talks to it while a raw client floods another
call with masked pings and tiny text frames, written as raw bytes in a few big writes (a
client library would pace the flood with one await per message). A ticker task in this
process, which is the server's, measures how late each short sleep wakes: the event loop's
stall. The engine yields after a bounded number of wsproto events, so the worst stall is a
few milliseconds whatever the machine; before that bound, 0.6 MB of pings alone held the
loop for several hundred milliseconds. The assertion leaves a wide margin (50 ms).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time

import pytest
import trio

from callengine.audio.generate import tone
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.provider import default_start

from .rawws import CLOSE, PING, PONG, TEXT, ServerFrames, client_frame, open_raw_client
from ..cli_agents import echo

MAX_STALL_S = 0.050


@pytest.fixture
async def server(nursery):
    server = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    return server


@contextlib.contextmanager
def gc_as_served():
    """The collector as ``callengine serve`` sets it: what is loaded is frozen, young
    generations are collected less often. Otherwise a full collection of this test
    process's heap (pytest, numpy...) pauses the loop by itself, whatever the server does."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class LoopTicker:
    """How late a 2 ms sleep wakes, at worst, while it runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0

    async def run(self) -> None:
        while True:
            t = time.perf_counter()
            await trio.sleep(0.002)
            self.worst = max(self.worst, time.perf_counter() - t - 0.002)
            self.ticks += 1


async def flood_call(port: int, call_id: str, payload: bytes) -> list[bytes]:
    """Start an Awaaz call, write ``payload`` (raw frames) and ``stop``, and read until the
    server closes: the payloads of the pongs it sent."""
    stream, early = await open_raw_client(port, "/awaaz")
    start = {"event": "start", "stream_sid": f"MZ{call_id}", "start": {"call_sid": call_id}}
    pongs = []
    async with stream:
        await stream.send_all(client_frame(TEXT, json.dumps(start)))

        async def read_until_close():
            frames = ServerFrames()
            data = early
            while True:
                for opcode, body in frames.feed(data):
                    if opcode == PONG:
                        pongs.append(body)
                    elif opcode == CLOSE:
                        await stream.send_all(client_frame(CLOSE, body))
                        return
                data = await stream.receive_some(65536)
                assert data, "the server closed TCP without a close frame"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_until_close)
            await stream.send_all(payload + client_frame(TEXT, '{"event":"stop"}'))
    return pongs


async def wait_for_summary(caplog, call_id: str) -> dict:
    with trio.fail_after(10):
        while True:
            for record in caplog.records:
                if record.name == "callengine.calls":
                    data = json.loads(record.getMessage())
                    if data["call_id"] == call_id:
                        return data
            await trio.sleep(0.01)


async def test_a_flood_of_pings_and_tiny_messages_does_not_stall_a_neighbour_call(server, caplog):
    caplog.set_level(logging.INFO, logger="callengine.calls")
    n_pings, n_tiny = 100_000, 50_000  # 0.6 MB of pings, then 0.95 MB of {"event":"x"}
    payload = b"".join(client_frame(PING, str(i)) for i in range(n_pings))
    payload += client_frame(TEXT, '{"event":"x"}') * n_tiny
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    ticker = LoopTicker()
    with trio.fail_after(60), gc_as_served():
        async with open_dialed_call(url, "awaaz", start=default_start("awaaz", call_id="neighbour")) as neighbour:
            neighbour.say(tone(440, 30.0, 8000, dbfs=-12))
            while neighbour.heard_seconds() < 0.2:  # the echo is flowing
                await trio.sleep(0.01)
            heard_before = neighbour.heard_seconds()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker.run)
                pongs = await flood_call(server.port, "flood", payload)
                nursery.cancel_scope.cancel()
            heard_during = neighbour.heard_seconds() - heard_before
    print(f"worst loop stall during the flood: {ticker.worst * 1000:.1f} ms over {ticker.ticks} ticks")
    assert ticker.ticks > 10
    assert ticker.worst < MAX_STALL_S, f"the event loop stalled {ticker.worst * 1000:.1f} ms during the flood"
    assert heard_during > 0  # the neighbour's echo went on through the flood
    # every ping was read, and only a batch's latest answered: the last pong is the last ping's
    assert pongs and pongs[-1] == str(n_pings - 1).encode()
    assert len(pongs) < n_pings // 10
    report = await wait_for_summary(caplog, "flood")
    assert report["end_cause"] == "provider_stop" and report["unknown_messages"] == n_tiny
