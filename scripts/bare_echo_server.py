#!/usr/bin/env python
"""The baseline for bench_capacity.py: an Awaaz echo server on plain trio-websocket.

No engine: for every ``media`` message it parses the JSON, base64-decodes the payload,
wraps it in a 44-byte WAV header (as the engine does for Awaaz), base64-encodes it and
sends it straight back as an Awaaz ``media`` message with the same fields the engine
sends (stream_sid, sequence_number, chunk, timestamp). ``stop`` closes the connection.
No pacing, no playout ledger, no VAD, no agent task: the least work a Python echo over
trio-websocket can do, which is what the engine is compared with. It runs with the same
garbage-collector settings as ``callengine serve`` (callengine.cli.tune_gc_for_serving),
so the comparison is of the work per call, not of collector pauses.

    python scripts/bare_echo_server.py --port 8090
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import signal
import struct
import sys

import trio
from trio_websocket import ConnectionClosed, serve_websocket

RATE = 8000


def wav_header(data_bytes: int, rate: int = RATE) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16, b"data", data_bytes,
    )


async def handler(request) -> None:
    ws = await request.accept()
    stream_sid = ""
    seq = chunks = samples = 0
    try:
        while True:
            msg = json.loads(await ws.get_message())
            event = msg.get("event")
            if event == "media":
                pcm = base64.b64decode(msg["media"]["payload"])
                seq += 1
                chunks += 1
                samples += len(pcm) // 2
                out = {
                    "event": "media",
                    "sequence_number": seq,
                    "stream_sid": stream_sid,
                    "media": {
                        "chunk": chunks,
                        "timestamp": str(samples * 1000 // RATE),
                        "payload": base64.b64encode(wav_header(len(pcm)) + pcm).decode("ascii"),
                    },
                }
                await ws.send_message(json.dumps(out, separators=(",", ":")))
            elif event == "start":
                stream_sid = msg.get("stream_sid") or (msg.get("start") or {}).get("stream_sid", "")
            elif event == "stop":
                break
    except ConnectionClosed:
        return
    with trio.move_on_after(2, shield=True):
        await ws.aclose()


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_websocket(
                    handler, host, port, None, message_queue_size=64, max_message_size=256 * 1024,
                    disconnect_timeout=2, task_status=task_status,
                )
            )
            print(f"bare echo server listening on ws://{host}:{port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    args = p.parse_args()
    # the same collector settings as `callengine serve` (see callengine.cli.tune_gc_for_serving)
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 50, 100)
    try:
        trio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
