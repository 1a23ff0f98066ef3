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

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from echo_handling import MAX_MESSAGE, EchoSession, server_options, subprotocol_for, until_stop_signal


def select_subprotocol(connection, offered):
    return subprotocol_for(connection.request.path, offered)


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
    async with serve(
        handler, host, port, max_size=MAX_MESSAGE, max_queue=64, compression=None, ping_interval=None,
        select_subprotocol=select_subprotocol, close_timeout=2,
    ):
        print(f"bare echo server (websockets) listening on ws://{host}:{port}", flush=True)
        await until_stop_signal()


if __name__ == "__main__":
    args = server_options(__doc__, 8091)
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
