#!/usr/bin/env python
"""A bare echo baseline on ``picows`` (asyncio, a Cython WebSocket layer), for bench_capacity.py.

The same message handling as bare_echo_server.py (scripts/echo_handling.py: parse,
base64-decode, WAV-wrap, re-encode, send back; Awaaz ``stop`` or Knowlarity's empty frame
closes); only the WebSocket library differs. picows hands over frames, not messages: a
fragmented message is put together before it is handled (the load generator sends whole
messages, so this never happens in the benchmark). Same garbage-collector settings as
``callengine serve``. Needs ``pip install 'callengine[bench]'`` (picows >= 1.0).

    python scripts/bare_echo_picows.py --port 8092     # ws://127.0.0.1:8092/awaaz or /knowlarity
"""

from __future__ import annotations

import asyncio
import sys

from picows import WSCloseCode, WSListener, WSMsgType, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

from echo_handling import MAX_MESSAGE, EchoSession, server_options, subprotocol_for, until_stop_signal


class EchoListener(WSListener):
    def __init__(self, path: str) -> None:
        self.session = EchoSession(path)
        self.parts: list[bytes] = []
        self.kind = WSMsgType.TEXT

    def on_ws_frame(self, transport, frame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CONTINUATION or not frame.fin:
            # a fragmented message: gather it
            if kind != WSMsgType.CONTINUATION:
                self.kind, self.parts = kind, []
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self.parts)
            self.parts = []
            message = payload.decode("utf-8") if self.kind == WSMsgType.TEXT else payload
        elif kind == WSMsgType.TEXT:
            message = frame.get_payload_as_utf8_text()
        elif kind == WSMsgType.BINARY:
            message = frame.get_payload_as_bytes()
        elif kind == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        else:
            return
        if self.session.done:
            return
        reply = self.session.handle(message)
        if reply is not None:
            transport.send(WSMsgType.TEXT, reply.encode("ascii"))
        if self.session.done:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()


def factory(request):
    path = request.path.decode() if isinstance(request.path, bytes) else str(request.path)
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    if isinstance(offered, bytes):
        offered = offered.decode()
    sub = subprotocol_for(path, [s.strip() for s in offered.split(",")])
    if sub is None:
        return EchoListener(path)
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": sub}), EchoListener(path)
    )


async def main(host: str, port: int) -> None:
    server = await ws_create_server(factory, host, port, max_frame_size=MAX_MESSAGE)
    print(f"bare echo server (picows) listening on ws://{host}:{port}", flush=True)
    try:
        await until_stop_signal()
    finally:
        server.close()


if __name__ == "__main__":
    args = server_options(__doc__, 8092)
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
