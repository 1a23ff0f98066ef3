"""A raw-socket WebSocket client for tests that need bytes on the wire, not a library's
pacing: frames are built by hand (masked, as a client must), so a test can send a flood
in a few big writes, or a request and its first frames in one segment.
"""

from __future__ import annotations

import base64
import os
import struct

import trio

__all__ = ["upgrade_request", "client_frame", "ServerFrames", "open_raw_client", "PING", "PONG", "TEXT", "BINARY", "CLOSE"]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def upgrade_request(path: str = "/awaaz", host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes | str = b"", *, key: bytes = b"\x37\xfa\x21\x3d", fin: bool = True) -> bytes:
    """One masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode()
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    if n:
        mask = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return header + key + masked


class ServerFrames:
    """Parses the server's (unmasked) frames from the bytes fed to it."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data``; return the frames now complete, as (opcode, payload)."""
        self._buffer += data
        frames = []
        buf = self._buffer
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                break
            frames.append((opcode, bytes(buf[at : at + n])))
            del buf[: at + n]
        return frames


async def open_raw_client(port: int, path: str = "/awaaz", *, after_request: bytes = b"", host: str = "127.0.0.1") -> tuple[trio.SocketStream, bytes]:
    """Connect, send the upgrade request (and ``after_request`` in the same write), read
    the 101. Returns the stream and any bytes the server sent after its 101."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(upgrade_request(path, host) + after_request)
        response = bytearray()
        while b"\r\n\r\n" not in response:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError(f"closed during the handshake: {bytes(response)!r}")
            response += data
        head, _, rest = bytes(response).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"not upgraded: {head!r}")
        return stream, rest
    except BaseException:
        await stream.aclose()
        raise
