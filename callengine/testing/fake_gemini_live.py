"""A fake Gemini Live server (BidiGenerateContent, v1beta), for tests.

It checks the API key (``x-goog-api-key`` header or ``key`` query parameter), requires
``setup`` first and exactly one of ``setup``, ``clientContent``, ``realtimeInput`` and
``toolResponse`` per message (anything else closes the socket with 1007, as the real
service does), takes ``realtimeInput.audio`` only as base64 ``audio/pcm;rate=16000``,
detects the caller's speech, answers with ``serverContent.modelTurn`` audio at 24 kHz
streamed faster than real time, sends ``interrupted`` when the caller talks over a turn,
and calls functions on demand (``toolCall``), recording the ``toolResponse``. Its messages
go out as binary frames, as Google's do.
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

__all__ = ["FakeGeminiLive", "LiveSession", "Turn"]

IN_RATE, OUT_RATE = 16000, 24000
CLIENT_FIELDS = ("setup", "clientContent", "realtimeInput", "toolResponse")
_ids = itertools.count(1)


@attrs.define
class Turn:
    samples: int = 0  # audio sent
    interrupted: bool = False
    function: tuple[str, str, dict] | None = None  # (name, id, args)


class LiveSession(FakeSession):
    server: "FakeGeminiLive"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.setup: dict[str, Any] | None = None
        self.turns: list[Turn] = []
        self.tool_responses: list[dict[str, Any]] = []
        self.speech: list[tuple[str, float]] = []
        self.close_code: int | None = None
        self._vad = ServerVad(IN_RATE, start_ms=self.server.speech_start_ms, stop_ms=self.server.silence_ms)
        self._active: tuple[Turn, trio.CancelScope] | None = None
        self._pending_calls: dict[str, str] = {}

    async def close(self, code: int, reason: str) -> None:
        self.close_code = code
        self.protocol_errors.append(reason)
        await self.transport.aclose(code, reason)

    async def reject(self, problem: str, code: str = "invalid_request") -> None:
        await self.close(1007, problem)

    async def handle(self, event: dict[str, Any]) -> None:
        fields = [k for k in event if k in CLIENT_FIELDS]
        if len(fields) != 1 or len(event) != 1:
            await self.close(1007, f"a client message has exactly one of {CLIENT_FIELDS}, got {sorted(event)}")
            return
        field, body = fields[0], event[fields[0]]
        if not isinstance(body, dict):
            await self.close(1007, f"{field} must be an object")
            return
        if field == "setup":
            await self.on_setup(body)
        elif self.setup is None:
            await self.close(1007, "setup must be the first message")
        elif field == "realtimeInput":
            await self.on_realtime_input(body)
        elif field == "clientContent":
            self.received.append(event)
            if body.get("turnComplete"):
                self.start_turn()
        elif field == "toolResponse":
            self.received.append(event)
            await self.on_tool_response(body)

    async def on_setup(self, setup: dict[str, Any]) -> None:
        if self.setup is not None:
            await self.close(1007, "setup sent twice")
            return
        model = setup.get("model")
        modalities = setup.get("generationConfig", {}).get("responseModalities")
        if not isinstance(model, str) or not model.startswith("models/"):
            await self.close(1008, f"setup.model must be 'models/<name>', got {model!r}")
            return
        if modalities != ["AUDIO"]:
            await self.close(1007, f"this fake answers in audio only: responseModalities {modalities!r}")
            return
        for tool in setup.get("tools", []):
            decls = tool.get("functionDeclarations") if isinstance(tool, dict) else None
            if not isinstance(decls, list) or not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in decls):
                await self.close(1007, f"bad tool {tool!r}")
                return
        self.setup = setup
        self.received.append({"setup": setup})
        await self.send({"setupComplete": {}})

    async def on_realtime_input(self, body: dict[str, Any]) -> None:
        blobs = [body["audio"]] if "audio" in body else body.get("mediaChunks", [])
        for blob in blobs:
            if not isinstance(blob, dict) or blob.get("mimeType") != f"audio/pcm;rate={IN_RATE}":
                await self.close(1007, f"realtimeInput audio must be audio/pcm;rate={IN_RATE}, got {blob!r:.80}")
                return
            try:
                pcm = base64.b64decode(blob.get("data", ""), validate=True)
            except (binascii.Error, TypeError):
                pcm = b"\x00"
            if len(pcm) % 2:
                await self.close(1007, "realtimeInput audio data must be base64 PCM16")
                return
            self.audio += pcm
            for what, ms in self._vad.process(pcm):
                self.speech.append((what, ms))
                if what == "start" and self._active is not None:
                    turn, scope = self._active
                    turn.interrupted = True
                    scope.cancel()
                    self._active = None
                    await self.send({"serverContent": {"interrupted": True}})
                elif what == "stop":
                    self.start_turn()

    async def on_tool_response(self, body: dict[str, Any]) -> None:
        responses = body.get("functionResponses")
        if not isinstance(responses, list) or not responses:
            await self.close(1007, "toolResponse.functionResponses must be a non-empty list")
            return
        for r in responses:
            if not isinstance(r, dict) or r.get("id") not in self._pending_calls or not isinstance(r.get("response"), dict):
                await self.close(1007, f"bad functionResponse {r!r:.120}")
                return
            if r.get("name") != self._pending_calls.pop(r["id"]):
                await self.close(1007, f"functionResponse {r['id']} names another function")
                return
            self.tool_responses.append(r)
        self.start_turn()

    # --- model turns --------------------------------------------------------------------

    def start_turn(self, *, audio: np.ndarray | None = None, function: tuple[str, dict] | None = None) -> None:
        """Start a model turn: audio, then a tool call ``(name, args)`` if given."""
        if self._active is not None:
            self._active[1].cancel()
        if function is None and self.server.queued_functions:
            function = self.server.queued_functions.pop(0)
        if audio is None:
            audio = self.server.reply_audio if function is None or self.server.say_before_functions else np.zeros(0, np.int16)
        assert self.nursery is not None
        self.nursery.start_soon(self._turn, audio, function)

    async def _turn(self, audio: np.ndarray, function: tuple[str, dict] | None) -> None:
        turn = Turn()
        self.turns.append(turn)
        scope = trio.CancelScope()
        self._active = (turn, scope)
        with scope:
            step = int(OUT_RATE * self.server.delta_ms / 1000)
            for i in range(0, len(audio), step):
                chunk = audio[i : i + step].astype("<i2").tobytes()
                turn.samples += len(chunk) // 2
                blob = {"mimeType": f"audio/pcm;rate={OUT_RATE}", "data": base64.b64encode(chunk).decode()}
                await self.send({"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}})
                await trio.sleep(self.server.delta_interval_s)
            if function is not None:
                name, args = function
                call_id = f"function-call-{next(_ids)}"
                self._pending_calls[call_id] = name
                turn.function = (name, call_id, args)
                self._active = None
                await self.send({"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}})
                return  # the model waits for the toolResponse
            await self.send({"serverContent": {"generationComplete": True}})
            await self.send({"serverContent": {"turnComplete": True}})
        if self._active is not None and self._active[0] is turn:
            self._active = None


class FakeGeminiLive(FakeModelServer):
    """A fake Live endpoint. Options as :class:`~.fake_openai_realtime.FakeOpenAIRealtime`
    (``reply_audio`` at 24 kHz, ``delta_ms``, ``delta_interval_s``, the VAD,
    ``queue_function(name, args)``)."""

    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    session_class = LiveSession
    binary_frames = True

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        reply_audio: np.ndarray | None = None,
        delta_ms: float = 100.0,
        delta_interval_s: float = 0.02,
        speech_start_ms: float = 100.0,
        silence_ms: float = 500.0,
        say_before_functions: bool = True,
    ) -> None:
        super().__init__(api_key)
        self.reply_audio = model_voice(2.0, OUT_RATE) if reply_audio is None else np.asarray(reply_audio, dtype=np.int16)
        self.delta_ms = delta_ms
        self.delta_interval_s = delta_interval_s
        self.speech_start_ms = speech_start_ms
        self.silence_ms = silence_ms
        self.say_before_functions = say_before_functions
        self.queued_functions: list[tuple[str, dict]] = []

    def queue_function(self, name: str, args: dict | None = None) -> None:
        self.queued_functions.append((name, dict(args or {})))

    def check_request(self, target: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if not target.startswith(self.path):
            return (404, f"no such endpoint {target.split('?')[0]}")
        key = headers.get("x-goog-api-key")
        if key is None and "key=" in target:
            import urllib.parse

            key = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query)).get("key")
        if key != self.api_key:
            return (401, "API key not valid")
        return None

    @property
    def session(self) -> LiveSession:
        return self.sessions[0]
