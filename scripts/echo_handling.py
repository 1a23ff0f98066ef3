"""The message handling the bare echo servers share, sans-I/O: the three bare servers
(bare_echo_server.py on trio-websocket, bare_echo_websockets.py on websockets,
bare_echo_picows.py on picows) differ only in the WebSocket library around it.

Each call is an :class:`EchoSession`; feed it every message received (``str`` for a text
frame, ``bytes`` for a binary one): it returns the reply to send (or None) and sets
``done`` when the call is over (the server then closes). It answers as the engine does
with ``callengine.agents.echo`` at the wire rate:

* **Awaaz** (any path but ``/knowlarity...``): for every ``media`` message, parse the
  JSON, base64-decode the payload, wrap it in a 44-byte WAV header (as the engine does for
  Awaaz), base64-encode it and send it straight back as an Awaaz ``media`` message with the
  fields the engine sends (stream_sid, sequence_number, chunk, timestamp). ``stop`` ends it.
* **Knowlarity** (paths starting ``/knowlarity``; mod_audio_fork family): the first text
  frame is the metadata (its ``sample_rate``, else 16000); then raw PCM16 binary frames,
  gathered into 200 ms clips (the engine's default ``chunk_ms`` on Knowlarity, stream
  mode), each sent as a mod_audio_fork ``playAudio`` JSON text with a base64 WAV file, as
  the engine does. A partial clip at the end is held back, as the engine holds it. An empty
  binary frame (mod_audio_fork's graceful shutdown) or a stop-like text ends the call.

No pacing, no playout ledger, no VAD, no agent task: the least work a Python echo can do
per frame, which is what the engine is compared with.

Also shared: the servers' command line (:func:`server_options`) and, for the two asyncio
servers, the wait for SIGTERM or SIGINT (:func:`until_stop_signal`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import signal
import struct

AWAAZ_RATE = 8000
KNOWLARITY_RATE = 16000
KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"
CLIP_MS = 200  # the engine's Knowlarity clip (KnowlarityCodec.capabilities.chunk_ms)
MAX_MESSAGE = 256 * 1024
_STOP_KINDS = frozenset({"stop", "hangup", "disconnect", "websocket:disconnected", "websocket:stop"})


def wav_header(data_bytes: int, rate: int = AWAAZ_RATE) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16, b"data", data_bytes,
    )


def is_knowlarity(path: str) -> bool:
    return path.startswith("/knowlarity")


def subprotocol_for(path: str, offered) -> str | None:
    """The sub-protocol to accept: mod_audio_fork's when a Knowlarity call offers it (as
    the engine does), else none."""
    return KNOWLARITY_SUBPROTOCOL if is_knowlarity(path) and KNOWLARITY_SUBPROTOCOL in (offered or ()) else None


def tune_gc() -> None:
    """The same collector settings as ``callengine serve`` (callengine.cli.tune_gc_for_serving),
    so the comparison is of the work per call, not of collector pauses."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 50, 100)


def server_options(doc: str, default_port: int) -> argparse.Namespace:
    """The command line every bare server takes (--host, --port); the collector is tuned
    once it is parsed, as ``callengine serve`` does before serving."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=default_port)
    args = p.parse_args()
    tune_gc()
    return args


async def until_stop_signal() -> None:
    """For the asyncio servers: return at the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop


class EchoSession:
    __slots__ = ("knowlarity", "done", "stream_sid", "seq", "chunks", "samples", "rate", "started", "pending", "clip_bytes")

    def __init__(self, path: str = "/awaaz") -> None:
        self.knowlarity = is_knowlarity(path)
        self.done = False
        self.stream_sid = ""
        self.seq = self.chunks = self.samples = 0
        self.rate = KNOWLARITY_RATE if self.knowlarity else AWAAZ_RATE
        self.started = False
        self.pending = bytearray()
        self.clip_bytes = self.rate * CLIP_MS // 1000 * 2

    def handle(self, message: str | bytes) -> str | None:
        """The reply to one received message, or None; sets ``done`` at the end of the call."""
        if self.knowlarity:
            return self._knowlarity(message)
        if not isinstance(message, str):
            return None
        msg = json.loads(message)
        event = msg.get("event")
        if event == "media":
            pcm = base64.b64decode(msg["media"]["payload"])
            self.seq += 1
            self.chunks += 1
            self.samples += len(pcm) // 2
            out = {
                "event": "media",
                "sequence_number": self.seq,
                "stream_sid": self.stream_sid,
                "media": {
                    "chunk": self.chunks,
                    "timestamp": str(self.samples * 1000 // AWAAZ_RATE),
                    "payload": base64.b64encode(wav_header(len(pcm)) + pcm).decode("ascii"),
                },
            }
            return json.dumps(out, separators=(",", ":"))
        if event == "start":
            self.stream_sid = msg.get("stream_sid") or (msg.get("start") or {}).get("stream_sid", "")
        elif event == "stop":
            self.done = True
        return None

    def _knowlarity(self, message: str | bytes) -> str | None:
        if isinstance(message, str):
            try:
                msg = json.loads(message.lstrip("\ufeff"))
            except ValueError:
                return None
            if not isinstance(msg, dict):
                return None
            if not self.started:
                self.started = True
                rate = msg.get("sample_rate")
                if isinstance(rate, (int, str)) and str(rate).isdigit() and int(rate) > 0:
                    self.rate = int(rate)
                    self.clip_bytes = self.rate * CLIP_MS // 1000 * 2
            elif str(msg.get("event", msg.get("type", ""))).lower() in _STOP_KINDS:
                self.done = True
            return None
        if not message:
            if self.started:
                self.done = True  # mod_audio_fork's graceful shutdown: we close
            return None
        if not self.started:
            return None
        pending = self.pending
        pending += message
        if len(pending) < self.clip_bytes:
            return None
        pcm = bytes(pending[: self.clip_bytes])
        del pending[: self.clip_bytes]
        wav = base64.b64encode(wav_header(len(pcm), self.rate) + pcm).decode("ascii")
        return json.dumps(
            {"type": "playAudio", "data": {"audioContentType": "wave", "audioContent": wav}}, separators=(",", ":")
        )
