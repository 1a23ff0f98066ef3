"""Gemini Live, speech to speech, over the BidiGenerateContent WebSocket.

Followed: the Gemini API's "Live API - WebSockets API reference" (ai.google.dev/api/live,
the ``v1beta`` endpoint) and its "Get started with Gemini Live API using WebSockets" guide,
read in 2026.

* ``setup`` first (model, ``responseModalities: ["AUDIO"]``, the voice, the instructions as
  ``systemInstruction``, tools as ``functionDeclarations``); nothing else is sent before the
  server's ``setupComplete``.
* The caller's audio, at 16 kHz, streams as ``realtimeInput.audio`` blobs
  (``audio/pcm;rate=16000``, base64). The server's automatic activity detection takes turns.
* The model's audio (``serverContent.modelTurn.parts[].inlineData``, ``audio/pcm;rate=24000``)
  goes into one streaming playback per model turn. Server messages may come as text or
  binary frames; both are read.
* Gemini has no truncate: when the caller barges in (the engine's BargeIn, or
  ``serverContent.interrupted``), playback is cleared and what the caller heard of the turn
  is recorded (:attr:`BridgeSession.heard`), logged, and given to
  :meth:`RealtimeBridge.on_interrupted`. After the engine's barge-in the rest of that turn
  is dropped until the server ends it (``interrupted`` or ``turnComplete``).
* ``toolCall.functionCalls`` run :meth:`RealtimeBridge.on_tool_call`; each result goes back
  in ``toolResponse.functionResponses`` (by id and name).
* The API key goes in the ``x-goog-api-key`` header (as Google's SDK sends it), not in the
  URL, so it is never in a logged URL. Errors close the socket with a code and a reason:
  the call then ends, with that cause logged.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import trio

from ..call.api import Call
from ..call.transport import Transport
from .base import BridgeSession, RealtimeBridge, SessionOver, decode_audio

__all__ = ["GeminiLiveAgent", "GeminiLiveSession"]

INPUT_MIME = "audio/pcm;rate=16000"
_RATE = re.compile(r"rate=(\d+)")


class GeminiLiveAgent(RealtimeBridge):
    """The bundled ``realtime-gemini`` agent: a call bridged to a Gemini Live model.

    ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``); ``CALLENGINE_GEMINI_URL``, ``_MODEL``,
    ``_VOICE`` (a prebuilt voice, ``Puck``), ``_INSTRUCTIONS``, ``_GREETING`` (a first user
    turn, so the bot speaks first) and ``_TOOLS`` as for :class:`OpenAIRealtimeAgent`.
    """

    ENV_PREFIX = "CALLENGINE_GEMINI_"
    API_KEY_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    DEFAULT_URL = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    DEFAULT_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
    DEFAULT_VOICE = "Puck"
    logger = logging.getLogger("callengine.bridges.gemini")
    #: how long to wait for ``setupComplete``
    setup_timeout_s = 10.0

    def connection(self) -> tuple[str, list[tuple[str, str]]]:
        return self.url, [("x-goog-api-key", self.api_key)]

    def setup_message(self, call: Call) -> dict[str, Any]:
        """The ``setup`` sent first (override to change it)."""
        model = self.model if self.model.startswith("models/") else f"models/{self.model}"
        setup: dict[str, Any] = {
            "model": model,
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": self.voice}}},
            },
        }
        if self.instructions:
            setup["systemInstruction"] = {"parts": [{"text": self.instructions}]}
        if self.tools:
            declarations = [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in self.tools]
            setup["tools"] = [{"functionDeclarations": declarations}]
        return setup

    def new_session(self, call: Call, model: Transport) -> "GeminiLiveSession":
        return GeminiLiveSession(self, call, model)


class GeminiLiveSession(BridgeSession):
    input_rate = 16000
    output_rate = 24000
    bridge: GeminiLiveAgent

    def __init__(self, bridge: GeminiLiveAgent, call: Call, model: Transport) -> None:
        super().__init__(bridge, call, model)
        self.turn = 0
        self.in_turn = False
        self.dropping = False  # the rest of an interrupted turn

    @property
    def item_id(self) -> str:
        return f"turn-{self.turn}"

    async def start(self) -> None:
        await self.send({"setup": self.bridge.setup_message(self.call)})
        ready = False
        with trio.move_on_after(self.bridge.setup_timeout_s):
            while not ready:
                message = await self.model.get_message()
                try:
                    ready = "setupComplete" in json.loads(message)
                except (ValueError, TypeError):
                    pass
                if not ready:
                    self.log.debug("call %s: before setupComplete: %r", self.label, message[:200])
        if not ready:
            raise SessionOver(f"no setupComplete within {self.bridge.setup_timeout_s:g} s")
        if self.bridge.greeting:
            turn = {"role": "user", "parts": [{"text": self.bridge.greeting}]}
            await self.send({"clientContent": {"turns": [turn], "turnComplete": True}})

    async def send_audio(self, b64: str) -> None:
        await self.send({"realtimeInput": {"audio": {"data": b64, "mimeType": INPUT_MIME}}})

    async def on_model_event(self, event: dict[str, Any]) -> None:
        content = event.get("serverContent")
        if isinstance(content, dict):
            await self.on_server_content(content)
        tool_call = event.get("toolCall")
        if isinstance(tool_call, dict):
            await self.on_tool_call(tool_call)
        if "toolCallCancellation" in event:
            self.log.info("call %s: the model cancelled tool calls %s", self.label, event["toolCallCancellation"])
        if "goAway" in event:
            self.log.warning("call %s: the model will close the session soon: %s", self.label, event["goAway"])
        if "error" in event:
            error = event["error"] if isinstance(event["error"], dict) else {"message": event["error"]}
            self.model_error(str(error.get("code") or error.get("status") or "error"), str(error.get("message") or ""))

    async def on_server_content(self, content: dict[str, Any]) -> None:
        if content.get("interrupted"):
            heard = await self.interrupt("model")
            await self.report_heard(heard)
            self.in_turn = self.dropping = False
        turn = content.get("modelTurn")
        parts = turn.get("parts") if isinstance(turn, dict) else None
        for part in parts if isinstance(parts, list) else ():
            blob = part.get("inlineData") if isinstance(part, dict) else None
            if not isinstance(blob, dict) or not str(blob.get("mimeType", "")).startswith("audio/pcm"):
                continue
            pcm = decode_audio(blob.get("data"))
            if pcm is None:
                self.model_error("bad_audio", "inlineData without base64 PCM16 audio")
                continue
            if not self.in_turn:
                self.turn += 1
                self.in_turn = True
            if not self.dropping:
                match = _RATE.search(str(blob.get("mimeType")))
                await self.play(self.item_id, pcm, rate=int(match.group(1)) if match else self.output_rate)
        if content.get("generationComplete") or content.get("turnComplete"):
            await self.finish(item_id=self.item_id)
        if content.get("turnComplete"):
            self.in_turn = self.dropping = False

    async def on_barge_in(self) -> None:
        heard = await self.interrupt("barge-in", cleared=True)
        if self.in_turn:
            self.dropping = True  # until the server ends the turn
        await self.report_heard(heard)

    async def on_tool_call(self, tool_call: dict[str, Any]) -> None:
        calls = tool_call.get("functionCalls")
        # what the model said before the call plays first; its audio after it is a new turn
        await self.finish(item_id=self.item_id)
        self.in_turn = False
        for fc in calls if isinstance(calls, list) else ():
            if not isinstance(fc, dict):
                continue
            call_id, name = fc.get("id"), str(fc.get("name"))

            async def reply(result: Any, call_id: Any = call_id, name: str = name) -> None:
                response = {"name": name, "response": result if isinstance(result, dict) else {"result": result}}
                if call_id is not None:
                    response["id"] = call_id
                await self.send({"toolResponse": {"functionResponses": [response]}})

            args = fc.get("args")
            self.spawn(self.run_tool, name, args if isinstance(args, dict) else {}, reply)
