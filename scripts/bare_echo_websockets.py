#!/usr/bin/env python
"""A bare echo baseline on ``websockets`` (asyncio; ``websockets.asyncio.server.serve``, the
sans-I/O protocol core under an asyncio connection), for bench_capacity.py.

The same message handling as bare_echo_server.py (scripts/echo_handling.py: parse,
base64-decode, WAV-wrap, re-encode, send back; Awaaz ``stop`` or Knowlarity's empty frame
closes); only the WebSocket library differs. Same garbage-collector settings as
``callengine serve``. Needs ``pip install 'callengine[bench]'`` (websockets >= 13).

    python scripts/bare_echo_websockets.py --port 8091     # ws://127.0.0.1:8091/awaaz or /knowlarity
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from echo_handling import KNOWLARITY_SUBPROTOCOL, MAX_MESSAGE, EchoSession, is_knowlarity, tune_gc


def select_subprotocol(connection, offered):
    # as the engine: mod_audio_fork's sub-protocol for a Knowlarity call that offers it
    if is_knowlarity(connection.request.path) and KNOWLARITY_SUBPROTOCOL in offered:
        return KNOWLARITY_SUBPROTOCOL
    return None


async def handler(ws) -> None:
    session = EchoSession(ws.request.path)
    handle = session.handle
    try:
        while not session.done:
            reply = handle(await ws.recv())
            if reply is not None:
                await ws.send(reply)
        await ws.close()
    except ConnectionClosed:
        return


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        handler, host, port, max_size=MAX_MESSAGE, max_queue=64, compression=None, ping_interval=None,
        select_subprotocol=select_subprotocol, close_timeout=2,
    ):
        print(f"bare echo server (websockets) listening on ws://{host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    args = p.parse_args()
    tune_gc()
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
