"""A provider that stops reading is found within send_timeout_s + keepalive_s.

Over real loopback sockets with raw clients: each one answers the engine's pings while it
reads, then stops reading for good but keeps streaming its microphone, as a provider whose
reader thread wedged would. On loopback the kernels buffer about a megabyte before a send
blocks, so the send timeout alone found such a provider after tens of seconds, or never;
the unanswered keepalive ping finds it in seconds. A healthy call next to them goes on.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.provider import default_start

from .call.rawws import PING, PONG, TEXT, ServerFrames, client_frame, open_raw_client

SEND_TIMEOUT = 2.0
KEEPALIVE = 0.5


async def agent(call):
    call.barge_in = False
    await call.play(tone(440, 60.0, 8000), 8000)
    await trio.sleep_forever()


def _summaries(caplog) -> dict[str, dict]:
    out = {}
    for record in caplog.records:
        if record.name == "callengine.calls":
            data = json.loads(record.getMessage())
            out[data["call_id"]] = data
    return out


async def _stalling_provider(port: int, call_id: str, read_for: float, stopped_at: dict) -> None:
    stream, _ = await open_raw_client(port, "/awaaz")
    start = json.dumps({"event": "start", "stream_sid": f"MZ{call_id}", "start": {"call_sid": call_id, "media_format": {"sample_rate": 8000}}})
    frame = json.dumps({"event": "media", "stream_sid": f"MZ{call_id}", "media": {"payload": base64.b64encode(bytes(320)).decode()}})
    sending = trio.StrictFIFOLock()  # the pong and the microphone share the stream

    async def send(data: bytes) -> None:
        async with sending:
            await stream.send_all(data)

    async with stream:
        await send(client_frame(TEXT, start))
        async with trio.open_nursery() as nursery:

            async def read_then_stop() -> None:
                frames = ServerFrames()
                with trio.move_on_after(read_for):
                    while True:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        for opcode, payload in frames.feed(data):
                            if opcode == PING:
                                await send(client_frame(PONG, payload))
                stopped_at[call_id] = trio.current_time()  # from here on nothing is read

            async def microphone() -> None:
                t0 = trio.current_time()
                k = 0
                try:
                    while True:
                        k += 1
                        await trio.sleep_until(t0 + 0.02 * k)
                        await send(client_frame(TEXT, frame))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    nursery.cancel_scope.cancel()  # the engine has closed the connection

            nursery.start_soon(read_then_stop)
            nursery.start_soon(microphone)
            with trio.move_on_after(SEND_TIMEOUT + KEEPALIVE + 20):
                await trio.sleep_forever()
            nursery.cancel_scope.cancel()


async def test_regression_stalled_readers_are_closed_within_the_send_timeout(nursery, caplog):
    caplog.set_level(logging.INFO)
    config = ServerConfig(
        port=0,
        loop_watchdog_s=None,
        call=CallConfig(agent_rate=8000, send_timeout_s=SEND_TIMEOUT, keepalive_s=KEEPALIVE),
    )
    server = CallServer(agent, config)
    await nursery.start(server.serve)
    stopped_at: dict[str, float] = {}
    ended_at: dict[str, float] = {}
    ids = [f"stall{i}" for i in range(5)]

    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz", start=default_start("awaaz", call_id="healthy")) as healthy:
        async with trio.open_nursery() as clients:
            for i, call_id in enumerate(ids):
                clients.start_soon(_stalling_provider, server.port, call_id, 1.0 + 0.3 * i, stopped_at)

            async def watch() -> None:
                with trio.fail_after(60):
                    while len(ended_at) < len(ids):
                        for call_id, data in _summaries(caplog).items():
                            if call_id in ids and call_id not in ended_at:
                                ended_at[call_id] = trio.current_time()
                        await trio.sleep(0.02)

            await watch()
        heard_before = healthy.heard_seconds()
        await trio.sleep(0.5)
        assert healthy.heard_seconds() > heard_before + 0.3  # the healthy call plays on
    summaries = _summaries(caplog)
    for call_id in ids:
        report = summaries[call_id]
        assert (report["end_cause"], report["close_code"]) == ("send_timeout", 1001)
        assert report["pings_sent"] >= 1
        # found within the send timeout plus one keepalive period (and scheduling slack)
        assert ended_at[call_id] - stopped_at[call_id] <= SEND_TIMEOUT + KEEPALIVE + 1.0
    print("detection s:", sorted(round(ended_at[c] - stopped_at[c], 3) for c in ids))
    assert "stopped reading" in caplog.text
    assert summaries["healthy"]["end_cause"] == "provider_stop"


@pytest.mark.parametrize("keepalive", [None])
async def test_pings_can_be_turned_off(autojump_clock, keepalive):
    """keepalive_s=None: no pings are sent (for a peer that mishandles them)."""
    from callengine.testing.harness import open_simulated_call

    async def quiet(call):
        await trio.sleep(3)

    async with open_simulated_call(quiet, "awaaz", CallConfig(keepalive_s=keepalive)) as sim:
        pass
    assert sim.report.stats.pings_sent == 0
