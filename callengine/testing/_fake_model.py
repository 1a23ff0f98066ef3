"""What the fake model servers share: a loopback WebSocket server (or an in-memory
connection) that checks each request, a crude server VAD, and a model voice.

A fake is served for real with ``await nursery.start(fake.serve)`` (trio-websocket on
127.0.0.1, port 0; ``fake.url``), or handed to a bridge as its ``connect`` seam
(``connect=fake.connect``): the same sessions then run over an in-memory transport, which
works on ``trio.testing.MockClock``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import urllib.parse
from typing import Any, AsyncIterator, Sequence

import numpy as np
import trio

from ..audio.generate import silence, tone
from ..bridges.connect import ModelConnectError
from ..call.transport import Transport, TransportClosed, WebSocketTransport, memory_transport_pair

__all__ = ["FakeModelServer", "FakeSession", "ServerVad", "model_voice"]


def model_voice(seconds: float = 2.0, rate: int = 24000) -> np.ndarray:
    """The fake model's reply: a phrase of notes (none of them a DTMF frequency)."""
    parts, t = [], 0.0
    notes = (392, 440, 494, 523)
    i = 0
    while t < seconds - 1e-9:
        d = min(0.25, seconds - t)
        parts += [tone(notes[i % len(notes)], d * 0.8, rate, dbfs=-14), silence(d * 0.2, rate)]
        t += d
        i += 1
    return np.concatenate(parts).astype(np.int16)


class ServerVad:
    """Energy VAD over 20 ms frames: speech starts after ``start_ms`` of loud frames and
    stops after ``stop_ms`` of quiet ones. Positions are ms of all audio received."""

    def __init__(self, rate: int, *, start_ms: float = 100, stop_ms: float = 500, dbfs: float = -40) -> None:
        self.rate = rate
        self.frame = rate // 50
        self.start_frames = max(1, round(start_ms / 20))
        self.stop_frames = max(1, round(stop_ms / 20))
        self.threshold = 32768 * 10 ** (dbfs / 20)
        self._pending = np.zeros(0, dtype=np.int16)
        self.frames = 0
        self.speaking = False
        self._run = 0
        self._onset = 0

    def process(self, pcm: bytes) -> list[tuple[str, float]]:
        x = np.concatenate([self._pending, np.frombuffer(pcm, dtype="<i2")])
        n = len(x) // self.frame
        self._pending = x[n * self.frame :]
        out: list[tuple[str, float]] = []
        for i in range(n):
            f = x[i * self.frame : (i + 1) * self.frame].astype(np.float64)
            loud = float(np.sqrt(np.mean(f * f))) > self.threshold
            self.frames += 1
            if loud != self.speaking:
                self._run += 1
                if self._run == 1:
                    self._onset = self.frames - 1
                if self._run >= (self.stop_frames if self.speaking else self.start_frames):
                    self.speaking = loud
                    self._run = 0
                    out.append(("start" if loud else "stop", self._onset * 20.0))
            else:
                self._run = 0
        return out


class FakeSession:
    """One connection to a fake model."""

    def __init__(self, server: "FakeModelServer", transport: Transport, target: str, headers: Sequence[tuple[str, str]]) -> None:
        self.server = server
        self.transport = transport
        self.target = target
        self.query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        self.headers = {k.lower(): v for k, v in headers}
        self.received: list[dict[str, Any]] = []  # every client message but audio
        self.audio = bytearray()  # the caller's audio, as received
        self.protocol_errors: list[str] = []
        self.closed = trio.Event()
        self.nursery: trio.Nursery | None = None

    def audio_samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio), dtype="<i2")

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        try:
            await self.transport.send_message(text.encode() if self.server.binary_frames else text)
        except TransportClosed:
            pass

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await self.opened()
                while True:
                    try:
                        message = await self.transport.get_message()
                    except TransportClosed:
                        break
                    try:
                        event = json.loads(message)
                    except ValueError:
                        await self.reject(f"not JSON: {str(message)[:60]!r}")
                        continue
                    if not isinstance(event, dict):
                        await self.reject("not a JSON object")
                        continue
                    await self.handle(event)
                nursery.cancel_scope.cancel()
        finally:
            self.closed.set()

    async def opened(self) -> None:
        """The connection is open (the server speaks first here, if it does)."""

    async def handle(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    async def reject(self, problem: str, code: str = "invalid_request") -> None:
        self.protocol_errors.append(problem)


class FakeModelServer:
    """Base of the fakes: request checks, sessions, serving."""

    path = "/"
    binary_frames = False
    session_class: type[FakeSession] = FakeSession

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.sessions: list[Any] = []
        self.session_started = trio.Event()
        self.rejected: list[tuple[int, str]] = []  # (HTTP status, why) of refused connections
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not serving: start it with nursery.start(fake.serve)")
        return f"ws://127.0.0.1:{self.port}{self.path}"

    def check_request(self, target: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, why) to refuse a connection, or None."""
        raise NotImplementedError

    def new_session(self, transport: Transport, target: str, headers: Sequence[tuple[str, str]]) -> FakeSession:
        session = self.session_class(self, transport, target, headers)
        self.sessions.append(session)
        self.session_started.set()
        return session

    async def serve(self, *, task_status: trio.TaskStatus["FakeModelServer"] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on 127.0.0.1 (a free port) until cancelled."""
        from trio_websocket import serve_websocket

        async with trio.open_nursery() as nursery:
            server = await nursery.start(functools.partial(serve_websocket, self._ws_handler, "127.0.0.1", 0, ssl_context=None))
            self.port = server.port
            task_status.started(self)

    async def _ws_handler(self, request: Any) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        refused = self.check_request(request.path, {k.lower(): v for k, v in headers})
        if refused is not None:
            self.rejected.append(refused)
            await request.reject(refused[0], body=refused[1].encode())
            return
        ws = await request.accept()
        transport = WebSocketTransport(ws)
        try:
            await self.new_session(transport, request.path, headers).run()
        finally:
            await transport.aclose(1000)

    @contextlib.asynccontextmanager
    async def connect(self, url: str, headers: Sequence[tuple[str, str]]) -> AsyncIterator[Transport]:
        """The bridges' ``connect`` seam: the same fake over an in-memory connection."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        refused = self.check_request(target, {k.lower(): v for k, v in headers})
        if refused is not None:
            self.rejected.append(refused)
            raise ModelConnectError(f"the model refused the connection: HTTP {refused[0]}")
        client, server_end = memory_transport_pair()
        session = self.new_session(server_end, target, headers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            try:
                yield client
            finally:
                await client.aclose(1000)
                nursery.cancel_scope.cancel()
