"""The seams of the cascaded bridge (:mod:`callengine.bridges.cascade`): what a user fills
with a vendor, and the error a vendor's failure raises."""

from __future__ import annotations

from typing import Any, AsyncIterator, Sequence

import attrs
import trio

__all__ = ["VendorError", "SpeechToText", "StreamingSpeechToText", "Transcript", "ChatModel", "TextToSpeech"]


class VendorError(Exception):
    """A vendor's API failed (HTTP error, bad answer, unreachable). ``kind`` groups the log."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class SpeechToText:
    """Seam: one utterance of the caller's audio to its final transcript."""

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        raise NotImplementedError


@attrs.frozen
class Transcript:
    text: str
    final: bool


class StreamingSpeechToText(SpeechToText):
    """Seam, streaming form: the utterance's audio arrives while the caller speaks.

    ``stream(audio, rate)`` reads PCM16 chunks from ``audio`` (from a little before the
    VAD's onset; the channel ends at the VAD's end of speech) and yields
    :class:`Transcript` items: partials (``final=False``), then one final."""

    def stream(self, audio: trio.MemoryReceiveChannel[bytes], rate: int) -> AsyncIterator[Transcript]:
        raise NotImplementedError


class ChatModel:
    """Seam: the reply to a message history, streamed as text deltas."""

    def stream(self, messages: Sequence[dict[str, Any]]) -> AsyncIterator[str]:
        raise NotImplementedError


class TextToSpeech:
    """Seam: text to PCM16 mono chunks at ``rate``, streamed."""

    rate: int = 16000

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        raise NotImplementedError
