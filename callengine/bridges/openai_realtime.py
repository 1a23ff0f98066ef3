"""OpenAI Realtime, speech to speech, over its WebSocket protocol.

Followed: the GA Realtime interface as the OpenAI API reference documents it
(developers.openai.com/api/reference/resources/realtime, client and server events; the
event types of openai-python's ``src/openai/types/realtime``, read in 2026). GA takes no
``OpenAI-Beta`` header (the GA endpoint refuses ``realtime=v1`` with
``beta_api_shape_disabled``), so none is sent. The beta interface's audio event names
(``response.audio.delta`` / ``.done``) are read too, as the GA ones
(``response.output_audio.delta`` / ``.done``).

* ``session.update``: ``audio/pcm`` at 24 kHz both ways, server VAD that creates and
  interrupts responses, the voice, the instructions and the tools.
* The caller's audio, resampled to 24 kHz, streams as ``input_audio_buffer.append``.
* Each assistant item's audio goes into its own streaming playback at 24 kHz.
* When the caller barges in (the engine's BargeIn, or the model's
  ``input_audio_buffer.speech_started``), playback is cleared, the response in progress is
  cancelled (``response.cancel`` after the engine's barge-in; the server cancels it itself
  on its own VAD, ``interrupt_response``), and each item cut short is truncated with
  ``conversation.item.truncate`` at ``audio_end_ms`` = the playback's ``played_ms``: what
  the caller actually heard, not what the model generated.
* Function calls (``response.output_item.done`` of a ``function_call`` item) run
  :meth:`RealtimeBridge.on_tool_call`; the result goes back as a ``function_call_output``
  item followed by ``response.create``.
* ``error`` events are logged once per code and counted; they never end the call.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from ..call.api import Call
from ..call.transport import Transport
from .base import BridgeSession, Heard, RealtimeBridge, decode_audio

__all__ = ["OpenAIRealtimeAgent", "OpenAIRealtimeSession"]

AUDIO_DELTA = ("response.output_audio.delta", "response.audio.delta")  # GA, beta
AUDIO_DONE = ("response.output_audio.done", "response.audio.done")
RATE = 24000


class OpenAIRealtimeAgent(RealtimeBridge):
    """The bundled ``realtime-openai`` agent: a call bridged to an OpenAI Realtime model.

    ``OPENAI_API_KEY``; ``CALLENGINE_OPENAI_URL`` (default ``wss://api.openai.com/v1/realtime``,
    e.g. a proxy or a test server), ``_MODEL`` (``gpt-realtime``), ``_VOICE`` (``marin``),
    ``_INSTRUCTIONS``, ``_GREETING`` (instructions for a first response, so the bot speaks
    first) and ``_TOOLS`` (bundled tools offered: ``hang_up,transfer`` or ``none``).
    """

    ENV_PREFIX = "CALLENGINE_OPENAI_"
    API_KEY_ENV = ("OPENAI_API_KEY",)
    DEFAULT_URL = "wss://api.openai.com/v1/realtime"
    DEFAULT_MODEL = "gpt-realtime"
    DEFAULT_VOICE = "marin"
    logger = logging.getLogger("callengine.bridges.openai")

    def connection(self) -> tuple[str, list[tuple[str, str]]]:
        url = self.url
        if "model=" not in urllib.parse.urlsplit(url).query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"model": self.model})
        return url, [("Authorization", f"Bearer {self.api_key}")]

    def session_config(self, call: Call) -> dict[str, Any]:
        """The ``session`` of the ``session.update`` sent first (override to change it)."""
        fmt = {"type": "audio/pcm", "rate": RATE}
        return {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": fmt,
                    "turn_detection": {"type": "server_vad", "create_response": True, "interrupt_response": True},
                },
                "output": {"format": fmt, "voice": self.voice},
            },
            "tools": [{"type": "function", "name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in self.tools],
            "tool_choice": "auto",
        }

    def new_session(self, call: Call, model: Transport) -> "OpenAIRealtimeSession":
        return OpenAIRealtimeSession(self, call, model)


class OpenAIRealtimeSession(BridgeSession):
    input_rate = RATE
    output_rate = RATE
    bridge: OpenAIRealtimeAgent

    def __init__(self, bridge: OpenAIRealtimeAgent, call: Call, model: Transport) -> None:
        super().__init__(bridge, call, model)
        self.active_response: str | None = None
        self.cancelled: set[str] = set()  # responses whose further audio is dropped
        self.truncated: list[dict[str, Any]] = []  # the truncate events sent

    async def start(self) -> None:
        await self.send({"type": "session.update", "session": self.bridge.session_config(self.call)})
        if self.bridge.greeting:
            await self.send({"type": "response.create", "response": {"instructions": self.bridge.greeting}})

    async def send_audio(self, b64: str) -> None:
        await self.send({"type": "input_audio_buffer.append", "audio": b64})

    async def on_model_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in AUDIO_DELTA:
            response_id = str(event.get("response_id") or "")
            if response_id in self.cancelled:
                return
            pcm = decode_audio(event.get("delta"))
            if pcm is None:
                self.model_error("bad_audio", f"{kind} without base64 PCM16 audio")
                return
            await self.play(str(event.get("item_id")), pcm, content_index=_int(event.get("content_index")), response_id=response_id)
        elif kind in AUDIO_DONE:
            await self.finish(item_id=str(event.get("item_id")))
        elif kind == "input_audio_buffer.speech_started":
            await self.cut("model")
        elif kind == "response.created":
            self.active_response = str((event.get("response") or {}).get("id") or "")
        elif kind == "response.done":
            response_id = str((event.get("response") or {}).get("id") or "")
            if self.active_response == response_id:
                self.active_response = None
            await self.finish(response_id=response_id)
        elif kind == "response.output_item.done":
            await self.on_item_done(event)
        elif kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            assert isinstance(error, dict)
            self.model_error(str(error.get("code") or error.get("type") or "error"), str(error.get("message") or ""))

    async def on_item_done(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            return
        response_id = str(event.get("response_id") or "")
        if item.get("type") != "function_call":
            await self.finish(item_id=str(item.get("id")))
            return
        if response_id in self.cancelled or item.get("status") == "incomplete":
            return  # the caller interrupted the response that asked for it
        call_id = str(item.get("call_id") or "")
        await self.finish(response_id=response_id)  # what it said before the call plays first

        async def reply(result: Any) -> None:
            output = {"type": "function_call_output", "call_id": call_id, "output": json.dumps(result)}
            await self.send({"type": "conversation.item.create", "item": output})
            await self.send({"type": "response.create"})

        self.spawn(self.run_tool, str(item.get("name")), item.get("arguments") or "{}", reply)

    async def on_barge_in(self) -> None:
        await self.cut("barge-in", cleared=True)

    async def cut(self, source: str, *, cleared: bool = False) -> list[Heard]:
        """Stop the model's audio, cancel its response, truncate each item at what was heard."""
        heard = await self.interrupt(source, cleared=cleared)
        response_id = self.active_response
        if response_id and response_id not in self.cancelled:
            self.cancelled.add(response_id)
            if source == "barge-in":  # on its own VAD the server cancels it (interrupt_response)
                await self.send({"type": "response.cancel", "response_id": response_id})
        for h in heard:
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": h.item_id,
                "content_index": h.content_index,
                "audio_end_ms": int(min(h.played_ms, h.generated_ms)),
            }
            self.truncated.append(truncate)
            await self.send(truncate)
        await self.report_heard(heard)
        return heard


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
