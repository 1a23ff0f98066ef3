"""In-memory stand-ins for the cascade's three seams (no network; on MockClock too).

``FakeSTT`` answers scripted transcripts, ``FakeChat`` streams a scripted reply word by
word (and records whether its stream was cancelled), ``FakeTTS`` speaks a tone whose length
is proportional to the text (``ms_per_char``). Each can be told to fail with a
:class:`~callengine.bridges.cascade.VendorError`.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Sequence

import numpy as np
import trio

from ..audio.generate import tone
from ..bridges.cascade import ChatModel, SpeechToText, StreamingSpeechToText, TextToSpeech, Transcript, VendorError

__all__ = ["FakeSTT", "FakeStreamingSTT", "FakeChat", "FakeTTS"]


class FakeSTT(SpeechToText):
    def __init__(self, transcripts: Sequence[str] = ("hello",), *, fail: int = 0) -> None:
        self.transcripts = list(transcripts)
        self.fail = fail  # the next this many calls fail (HTTP 500)
        self.utterances: list[tuple[int, int]] = []  # (samples, rate) of each

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        await trio.sleep(0.05)
        self.utterances.append((len(pcm) // 2, rate))
        if self.fail:
            self.fail -= 1
            raise VendorError("stt_http_500", "speech-to-text answered HTTP 500")
        return self.transcripts.pop(0) if self.transcripts else ""


class FakeChat(ChatModel):
    def __init__(self, replies: Sequence[str] = ("Hello there. How can I help you today?",), *, delta_s: float = 0.02, fail: int = 0) -> None:
        self.replies = list(replies)
        self.delta_s = delta_s
        self.fail = fail
        self.requests: list[list[dict[str, Any]]] = []
        self.cancelled = 0  # streams stopped before their end
        self.completed = 0

    async def stream(self, messages: Sequence[dict[str, Any]]) -> AsyncIterator[str]:
        self.requests.append([dict(m) for m in messages])
        if self.fail:
            self.fail -= 1
            raise VendorError("chat_http_500", "chat completions answered HTTP 500")
        text = self.replies.pop(0) if self.replies else "Okay."
        finished = False
        try:
            for i, word in enumerate(text.split(" ")):
                await trio.sleep(self.delta_s)
                yield word if i == 0 else " " + word
            finished = True
            self.completed += 1
        finally:
            if not finished:
                self.cancelled += 1


class FakeTTS(TextToSpeech):
    def __init__(self, rate: int = 16000, *, ms_per_char: float = 60.0, chunk_ms: float = 100.0, latency_s: float = 0.05) -> None:
        self.rate = rate
        self.ms_per_char = ms_per_char
        self.chunk_ms = chunk_ms
        self.latency_s = latency_s
        self.texts: list[str] = []
        self.samples: list[int] = []

    def audio(self, text: str) -> np.ndarray:
        return tone(500, len(text) * self.ms_per_char / 1000, self.rate, dbfs=-14).astype(np.int16)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.texts.append(text)
        await trio.sleep(self.latency_s)
        pcm = self.audio(text).astype("<i2").tobytes()
        self.samples.append(len(pcm) // 2)
        step = int(self.rate * self.chunk_ms / 1000) * 2
        for i in range(0, len(pcm), step):
            yield pcm[i : i + step]


class FakeStreamingSTT(StreamingSpeechToText):
    """Streams: a partial per ``partial_s`` of audio received, the final at the end."""

    def __init__(self, transcripts: Sequence[str] = ("hello",), *, partial_s: float = 0.5) -> None:
        self.transcripts = list(transcripts)
        self.partial_s = partial_s
        self.utterances: list[tuple[int, int]] = []

    async def stream(self, audio: trio.MemoryReceiveChannel[bytes], rate: int) -> AsyncIterator[Transcript]:
        text = self.transcripts.pop(0) if self.transcripts else ""
        words = text.split()
        samples = said = 0
        async for pcm in audio:
            samples += len(pcm) // 2
            while samples >= (said + 1) * self.partial_s * rate and said < len(words):
                said += 1
                yield Transcript(" ".join(words[:said]), final=False)
        self.utterances.append((samples, rate))
        await trio.sleep(0.02)
        yield Transcript(text, final=True)
