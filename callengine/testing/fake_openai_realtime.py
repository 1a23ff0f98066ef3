"""A fake OpenAI Realtime server, speaking the GA WebSocket protocol, for tests.

It checks what a real one checks (``Authorization: Bearer``, ``?model=``; the GA endpoint
refuses the beta header), validates every client event (types, required fields, base64
PCM16 at 24 kHz, truncation within the item's audio), detects the caller's speech with a
server VAD, answers with model audio streamed in deltas faster than real time, cancels the
response when the caller talks over it, records every ``conversation.item.truncate``, and
calls functions on demand::

    fake = FakeOpenAIRealtime()
    agent = OpenAIRealtimeAgent(api_key=fake.api_key, connect=fake.connect)   # in memory
    # or: await nursery.start(fake.serve); CALLENGINE_OPENAI_URL=fake.url     # loopback
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any

import attrs
import numpy as np
import trio

from ._fake_model import FakeModelServer, FakeSession, ServerVad, model_voice

__all__ = ["FakeOpenAIRealtime", "RealtimeSession", "Truncation", "Response"]

CLIENT_EVENTS = {
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete", "conversation.item.retrieve",
    "response.create", "response.cancel", "output_audio_buffer.clear",
}  # fmt: skip
RATE = 24000
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


@attrs.define
class Truncation:
    item_id: str
    content_index: int
    audio_end_ms: int
    at: float  # trio time


@attrs.define
class Response:
    id: str
    item_id: str | None
    samples: int = 0  # audio sent
    status: str = "in_progress"
    function: tuple[str, str, str] | None = None  # (name, call_id, arguments)


class RealtimeSession(FakeSession):
    server: "FakeOpenAIRealtime"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.model = self.query.get("model", "")
        self.config: dict[str, Any] = {}
        self.truncations: list[Truncation] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.responses: list[Response] = []
        self.errors_sent: list[str] = []
        self.speech: list[tuple[str, float]] = []  # ("start" | "stop", audio ms)
        self.items: dict[str, int] = {}  # assistant item id -> samples of audio in it
        self.calls: dict[str, str] = {}  # call_id -> function name
        self._vad = ServerVad(RATE, start_ms=self.server.speech_start_ms, stop_ms=self.server.silence_ms)
        self._active: tuple[Response, trio.CancelScope] | None = None
        self._user_item = _id("item")

    # --- server -> client ---------------------------------------------------------------

    async def emit(self, kind: str, **fields: Any) -> None:
        await self.send({"type": kind, "event_id": _id("event"), **fields})

    async def error(self, code: str, message: str, client_event_id: Any = None, param: str | None = None) -> None:
        self.errors_sent.append(code)
        self.protocol_errors.append(f"{code}: {message}")
        await self.emit("error", error={"type": "invalid_request_error", "code": code, "message": message, "param": param, "event_id": client_event_id})

    async def reject(self, problem: str, code: str = "invalid_request") -> None:
        await self.error(code, problem)

    async def opened(self) -> None:
        if self.headers.get("openai-beta"):
            await self.error("beta_api_shape_disabled", "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.")
            await self.transport.aclose(1000)
            return
        audio = {"input": {"format": {"type": "audio/pcm", "rate": RATE}}, "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"}}
        await self.emit("session.created", session={"id": _id("sess"), "object": "realtime.session", "type": "realtime", "model": self.model, "audio": audio})

    # --- client -> server ---------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        kind, eid = event.get("type"), event.get("event_id")
        if kind not in CLIENT_EVENTS:
            await self.error("invalid_event", f"unknown client event type {kind!r}", eid, "type")
            return
        if kind == "input_audio_buffer.append":
            await self.on_append(event, eid)
            return
        self.received.append(event)
        if kind == "session.update":
            await self.on_session_update(event, eid)
        elif kind == "response.create":
            response = event.get("response", {})
            if not isinstance(response, dict):
                await self.error("invalid_value", "response must be an object", eid, "response")
                return
            self.start_response()
        elif kind == "response.cancel":
            if self._active is None or event.get("response_id") not in (None, self._active[0].id):
                await self.error("response_cancel_not_active", "Cancellation failed: no active response found.", eid)
                return
            self._active[1].cancel()
        elif kind == "conversation.item.truncate":
            await self.on_truncate(event, eid)
        elif kind == "conversation.item.create":
            await self.on_item_create(event, eid)

    async def on_append(self, event: dict[str, Any], eid: Any) -> None:
        audio = event.get("audio")
        try:
            pcm = base64.b64decode(audio, validate=True) if isinstance(audio, str) else None
        except binascii.Error:
            pcm = None
        if pcm is None or len(pcm) % 2:
            await self.error("invalid_value", "audio must be base64 PCM16", eid, "audio")
            return
        self.audio += pcm
        for what, ms in self._vad.process(pcm):
            self.speech.append((what, ms))
            if what == "start":
                await self.emit("input_audio_buffer.speech_started", audio_start_ms=int(ms), item_id=self._user_item)
                vad = self.turn_detection
                if self._active is not None and vad.get("interrupt_response", True):
                    self._active[1].cancel()
            else:
                item = self._user_item
                self._user_item = _id("item")
                await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(ms), item_id=item)
                await self.emit("input_audio_buffer.committed", item_id=item, previous_item_id=None)
                if self.turn_detection.get("create_response", True):
                    self.start_response()

    @property
    def turn_detection(self) -> dict[str, Any]:
        td = self.config.get("audio", {}).get("input", {}).get("turn_detection", {"type": "server_vad"})
        return td if isinstance(td, dict) else {}

    async def on_session_update(self, event: dict[str, Any], eid: Any) -> None:
        session = event.get("session")
        if not isinstance(session, dict) or session.get("type") != "realtime":
            await self.error("missing_required_parameter", "session.type must be 'realtime'", eid, "session.type")
            return
        audio = session.get("audio", {})
        for side in ("input", "output"):
            fmt = audio.get(side, {}).get("format") if isinstance(audio, dict) else None
            if fmt is not None and (fmt.get("type") != "audio/pcm" or fmt.get("rate", RATE) != RATE):
                await self.error("invalid_value", f"audio.{side}.format must be audio/pcm at 24000 Hz here, got {fmt}", eid)
                return
        for tool in session.get("tools", []):
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("name"), str):
                await self.error("invalid_value", f"bad tool {tool!r}", eid, "session.tools")
                return
        self.config.update(session)
        await self.emit("session.updated", session=self.config)

    async def on_truncate(self, event: dict[str, Any], eid: Any) -> None:
        item_id, index, end = event.get("item_id"), event.get("content_index"), event.get("audio_end_ms")
        if not isinstance(index, int) or not isinstance(end, int) or isinstance(end, bool) or end < 0:
            await self.error("invalid_value", "content_index and audio_end_ms must be non-negative integers", eid)
            return
        if item_id not in self.items:
            await self.error("item_not_found", f"no assistant item {item_id!r}", eid, "item_id")
            return
        if index != 0:
            await self.error("invalid_value", "content_index must be 0", eid, "content_index")
            return
        if end > 1000 * self.items[item_id] / RATE:
            await self.error("invalid_value", "audio_end_ms is greater than the audio's duration", eid, "audio_end_ms")
            return
        self.truncations.append(Truncation(item_id, index, end, trio.current_time()))
        await self.emit("conversation.item.truncated", item_id=item_id, content_index=index, audio_end_ms=end)

    async def on_item_create(self, event: dict[str, Any], eid: Any) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") not in ("message", "function_call", "function_call_output"):
            await self.error("invalid_value", "item must be a message, function_call or function_call_output", eid, "item")
            return
        if item["type"] == "function_call_output":
            if item.get("call_id") not in self.calls or not isinstance(item.get("output"), str):
                await self.error("invalid_value", "function_call_output needs a known call_id and a string output", eid, "item")
                return
            self.function_outputs.append(item)
        await self.emit("conversation.item.added", previous_item_id=None, item={"id": item.get("id") or _id("item"), **item})

    # --- responses ----------------------------------------------------------------------

    def start_response(self, *, audio: np.ndarray | None = None, function: tuple[str, str] | None = None) -> None:
        """Start a response: audio (the server's reply voice by default), then the function
        call ``(name, arguments JSON)`` if given. A response already running is cut."""
        if self._active is not None:
            self._active[1].cancel()
        queued = self.server.queued_functions
        if function is None and queued:
            function = queued.pop(0)
        if audio is None:
            audio = self.server.reply_audio if function is None or self.server.say_before_functions else np.zeros(0, np.int16)
        assert self.nursery is not None
        self.nursery.start_soon(self._respond, audio, function)

    async def _respond(self, audio: np.ndarray, function: tuple[str, str] | None) -> None:
        response = Response(_id("resp"), None)
        self.responses.append(response)
        scope = trio.CancelScope()
        self._active = (response, scope)
        base = {"response_id": response.id}
        await self.emit("response.created", response={"id": response.id, "object": "realtime.response", "status": "in_progress", "output": []})
        index = 0
        with scope:
            if len(audio):
                response.item_id = item_id = _id("item")
                self.items[item_id] = 0
                item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
                await self.emit("response.output_item.added", **base, output_index=index, item=item)
                part = {**base, "item_id": item_id, "output_index": index, "content_index": 0}
                await self.emit("response.content_part.added", **part, part={"type": "audio", "transcript": ""})
                step = int(RATE * self.server.delta_ms / 1000)
                names = self.server.event_names
                for i in range(0, len(audio), step):
                    chunk = audio[i : i + step].astype("<i2").tobytes()
                    self.items[item_id] += len(chunk) // 2
                    response.samples += len(chunk) // 2
                    await self.emit(names[0], **part, delta=base64.b64encode(chunk).decode())
                    await trio.sleep(self.server.delta_interval_s)
                await self.emit(names[1], **part)
                await self.emit("response.content_part.done", **part, part={"type": "audio", "transcript": ""})
                await self.emit("response.output_item.done", **base, output_index=index, item={**item, "status": "completed"})
                index += 1
            if function is not None:
                name, arguments = function
                call_id, fid = _id("call"), _id("item")
                self.calls[call_id] = name
                fitem = {"id": fid, "object": "realtime.item", "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name, "arguments": ""}
                await self.emit("response.output_item.added", **base, output_index=index, item=fitem)
                fields = {**base, "item_id": fid, "output_index": index, "call_id": call_id}
                await self.emit("response.function_call_arguments.delta", **fields, delta=arguments)
                await self.emit("response.function_call_arguments.done", **fields, arguments=arguments)
                response.function = (name, call_id, arguments)
                await self.emit("response.output_item.done", **base, output_index=index, item={**fitem, "arguments": arguments, "status": "completed"})
            response.status = "completed"
        if scope.cancelled_caught:
            response.status = "cancelled"
        if self._active is not None and self._active[0] is response:
            self._active = None
        with trio.CancelScope(shield=True):
            await self.emit("response.done", response={"id": response.id, "object": "realtime.response", "status": response.status, "output": []})


class FakeOpenAIRealtime(FakeModelServer):
    """A fake Realtime endpoint at ``/v1/realtime``.

    ``reply_audio``: what the model says (int16 at 24 kHz; default a 2 s phrase of notes),
    streamed in ``delta_ms`` deltas every ``delta_interval_s`` (faster than real time).
    ``speech_start_ms`` / ``silence_ms``: the server VAD. ``event_names``: the audio delta
    and done event types, GA by default (``("response.audio.delta", "response.audio.done")``:
    the beta names). ``queue_function(name, args)``: the next response calls that function
    (after saying ``reply_audio`` if ``say_before_functions``).
    """

    path = "/v1/realtime"
    session_class = RealtimeSession

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        reply_audio: np.ndarray | None = None,
        delta_ms: float = 100.0,
        delta_interval_s: float = 0.02,
        speech_start_ms: float = 100.0,
        silence_ms: float = 500.0,
        event_names: tuple[str, str] = ("response.output_audio.delta", "response.output_audio.done"),
        say_before_functions: bool = True,
    ) -> None:
        super().__init__(api_key)
        self.reply_audio = model_voice(2.0, RATE) if reply_audio is None else np.asarray(reply_audio, dtype=np.int16)
        self.delta_ms = delta_ms
        self.delta_interval_s = delta_interval_s
        self.speech_start_ms = speech_start_ms
        self.silence_ms = silence_ms
        self.event_names = event_names
        self.say_before_functions = say_before_functions
        self.queued_functions: list[tuple[str, str]] = []

    def queue_function(self, name: str, arguments: str = "{}") -> None:
        self.queued_functions.append((name, arguments))

    def check_request(self, target: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if not target.startswith(self.path):
            return (404, f"no such endpoint {target.split('?')[0]}")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return (401, "Incorrect API key provided")
        if "model=" not in target:
            return (400, "missing model")
        return None

    @property
    def session(self) -> RealtimeSession:
        """The first session (the one call of most tests)."""
        return self.sessions[0]
