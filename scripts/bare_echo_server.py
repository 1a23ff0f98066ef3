#!/usr/bin/env python
"""The baseline for bench_capacity.py: an Awaaz / Knowlarity echo server on plain trio-websocket.

No engine: the message handling of scripts/echo_handling.py (parse, base64-decode,
WAV-wrap, re-encode, send back; Awaaz ``stop`` or Knowlarity's empty frame closes) over
trio-websocket, the WebSocket library the engine itself uses. The same handling runs over
websockets (bare_echo_websockets.py) and picows (bare_echo_picows.py). It runs with the
same garbage-collector settings as ``callengine serve``.

    python scripts/bare_echo_server.py --port 8090     # ws://127.0.0.1:8090/awaaz or /knowlarity
"""

from __future__ import annotations

import signal
import sys

import trio
from trio_websocket import ConnectionClosed, serve_websocket

from echo_handling import MAX_MESSAGE, EchoSession, server_options, subprotocol_for


async def handler(request) -> None:
    path = request.path
    ws = await request.accept(subprotocol=subprotocol_for(path, request.proposed_subprotocols))
    session = EchoSession(path)
    handle = session.handle
    try:
        while not session.done:
            reply = handle(await ws.get_message())
            if reply is not None:
                await ws.send_message(reply)
    except ConnectionClosed:
        return
    with trio.move_on_after(2, shield=True):
        await ws.aclose()


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_websocket(
                    handler, host, port, None, message_queue_size=64, max_message_size=MAX_MESSAGE,
                    disconnect_timeout=2, task_status=task_status,
                )
            )
            print(f"bare echo server (trio-websocket) listening on ws://{host}:{port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    args = server_options(__doc__, 8090)
    try:
        trio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
