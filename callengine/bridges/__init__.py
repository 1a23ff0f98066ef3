"""Speech-to-speech bridges: bundled agents that connect a call to a realtime voice model.

=================  ==========================================================================
realtime-openai    :class:`OpenAIRealtimeAgent`, OpenAI Realtime (GA interface) over its
                   WebSocket: PCM16 at 24 kHz, server VAD, truncation at what was heard, tools
realtime-gemini    :class:`GeminiLiveAgent`, Gemini Live (BidiGenerateContent, v1beta): PCM16
                   at 16 kHz in, 24 kHz out, the heard position recorded on barge-in, tools
cascade-sarvam     :class:`~callengine.bridges.sarvam.SarvamCascadeAgent`, a cascade
                   (:class:`CascadeAgent`: speech to text, chat, text to speech as seams):
                   Sarvam AI STT and TTS over REST, an OpenAI-compatible streaming chat
=================  ==========================================================================

asyncio-only vendor SDKs run through :mod:`callengine.bridges.asyncio_bridge`.

Both are classes to subclass (tools: ``extra_tools`` and ``on_tool_call``; interruptions:
``on_interrupted``). The model connection is a seam (``connect=``): tests pass the fake
servers of :mod:`callengine.testing.fake_openai_realtime` and
:mod:`callengine.testing.fake_gemini_live`. Like agents, bridges sit on top of the engine.
"""

from .cascade import CascadeAgent, ChatModel, SpeechToText, StreamingSpeechToText, TextToSpeech, Transcript, VendorError
from .base import BUNDLED_TOOLS, HANG_UP, TRANSFER, BridgeSession, Connect, Heard, ModelConnectError, RealtimeBridge, Tool, websocket_connect
from .gemini_live import GeminiLiveAgent, GeminiLiveSession
from .openai_realtime import OpenAIRealtimeAgent, OpenAIRealtimeSession

__all__ = [
    "RealtimeBridge",
    "BridgeSession",
    "OpenAIRealtimeAgent",
    "OpenAIRealtimeSession",
    "GeminiLiveAgent",
    "GeminiLiveSession",
    "Tool",
    "Heard",
    "HANG_UP",
    "TRANSFER",
    "BUNDLED_TOOLS",
    "Connect",
    "ModelConnectError",
    "websocket_connect",
    "CascadeAgent",
    "SpeechToText",
    "ChatModel",
    "TextToSpeech",
    "VendorError",
    "StreamingSpeechToText",
    "Transcript",
]
