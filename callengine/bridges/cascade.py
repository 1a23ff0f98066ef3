"""A cascaded bridge: speech to text, a chat model, text to speech, each a seam.

The three seams a user fills with a vendor (:mod:`callengine.bridges.sarvam` fills them
with Sarvam AI and an OpenAI-compatible chat endpoint):

* :class:`SpeechToText`: ``await stt.transcribe(pcm, rate)``, the caller's utterance
  (PCM16 mono, segmented by the engine's own VAD: ``SpeechStarted`` / ``SpeechEnded``)
  to its final transcript.
  Or :class:`StreamingSpeechToText`: ``stt.stream(audio, rate)`` gets the audio while
  the caller speaks and yields partial and final :class:`Transcript` items.
* :class:`ChatModel`: ``chat.stream(messages)``, an async iterator of text deltas of the
  reply to a message history (``[{"role": ..., "content": ...}]``).
* :class:`TextToSpeech`: ``tts.synthesize(text)``, an async iterator of PCM16 chunks at
  ``tts.rate``.

:class:`CascadeAgent` runs them: on a final transcript it appends the user turn, streams
the reply, cuts it into sentences (or long clauses) and speaks each into one streaming
playback per reply. When the caller barges in, the chat and TTS streams are cancelled and
the assistant turn in the history is cut to **what the caller heard**: the playback's
``played_ms`` mapped back onto the text through the audio duration of each synthesized
sentence (sentences heard whole are kept; the one cut short keeps the share of its words
that was heard, then ``…``). Never the generated text.

A vendor error (:class:`VendorError`) is logged once per kind, counted, and the call goes
on (that turn gets no answer, or the part already spoken).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, deque
from typing import Any, AsyncIterator

import numpy as np
import trio

from ..call.api import Call, PlaybackWriter
from ..events import BargeIn, CallerAudio, SpeechEnded, SpeechStarted
from .heard import Sentence, heard_text, split_sentences
from .seams import ChatModel, SpeechToText, StreamingSpeechToText, TextToSpeech, Transcript, VendorError

__all__ = ["SpeechToText", "StreamingSpeechToText", "Transcript", "ChatModel", "TextToSpeech", "VendorError", "CascadeAgent", "CascadeSession", "Sentence", "Reply", "heard_text", "split_sentences"]

PRE_ROLL_S = 0.3  # audio kept from before the VAD's onset
TAIL_S = 0.1  # and after its end
RING_S = 1.0
MAX_UTTERANCE_S = 30.0  # Sarvam's REST STT takes up to 30 s


class _Live:
    """A streaming utterance in progress."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](1000)
        self.dropped = False  # too short to be speech: its transcript is ignored


class Reply:
    """One assistant reply: its sentences as spoken, in one streaming playback."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.sentences: list[Sentence] = []
        self.writer: PlaybackWriter | None = None
        self.scope = trio.CancelScope()
        self.done = trio.Event()  # generation over (finished, failed or cancelled)
        self.turn: dict[str, Any] | None = None  # its entry in the history
        self.cut: str | None = None  # the heard text, once cut short

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def pending(self) -> bool:
        """Not heard to its end: still generated, playing, queued, or already cut short by
        a clear (the engine's barge-in clears before it tells)."""
        pb = self.writer.playback if self.writer is not None else None
        return not self.done.is_set() or (pb is not None and (pb.result is None or pb.result.interrupted))


class CascadeAgent:
    """An agent made of three seams: ``CascadeAgent(stt, chat, tts, instructions=...)``.

    The session of each call in progress (its ``history``, ``replies``, ``errors``) is on
    :attr:`calls`, by call id, until the call ends; override
    :meth:`on_interrupted` to see each cut (the reply, ``played_ms``, the heard text).
    """

    DEFAULT_INSTRUCTIONS = "You are a friendly voice assistant on a phone call. Keep your answers short and spoken."
    logger = logging.getLogger("callengine.bridges.cascade")

    def __init__(
        self,
        stt: SpeechToText,
        chat: ChatModel,
        tts: TextToSpeech,
        *,
        instructions: str | None = None,
        greeting: str | None = None,
        min_utterance_s: float = 0.2,
    ) -> None:
        self.stt = stt
        self.chat = chat
        self.tts = tts
        self.instructions = instructions if instructions is not None else self.DEFAULT_INSTRUCTIONS
        self.greeting = greeting
        self.min_utterance_s = min_utterance_s
        self.calls: dict[str, CascadeSession] = {}

    async def on_partial(self, call: Call, text: str) -> None:
        """A partial transcript from a :class:`StreamingSpeechToText` (ignored by default)."""

    async def on_interrupted(self, call: Call, reply: Reply, played_ms: float, heard: str) -> None:
        """The caller cut ``reply`` short after ``played_ms``; ``heard`` is what they heard."""

    @contextlib.asynccontextmanager
    async def vendors(self, call: Call) -> AsyncIterator[tuple[SpeechToText, ChatModel, TextToSpeech]]:
        """The seams for one call (override to open per-call clients, as the Sarvam agent does)."""
        yield self.stt, self.chat, self.tts

    async def __call__(self, call: Call) -> None:
        call.barge_in = True
        async with self.vendors(call) as (stt, chat, tts):
            session = self.calls[call.info.call_id] = CascadeSession(self, call, stt, chat, tts)
            try:
                await session.run()
            finally:
                del self.calls[call.info.call_id]  # a server runs calls for days: keep none after


class CascadeSession:
    """One call of a :class:`CascadeAgent`."""

    def __init__(self, agent: CascadeAgent, call: Call, stt: SpeechToText, chat: ChatModel, tts: TextToSpeech) -> None:
        self.agent = agent
        self.stt, self.chat, self.tts = stt, chat, tts
        self.call = call
        self.log = agent.logger
        self.label = call.info.call_id
        self.history: list[dict[str, Any]] = [{"role": "system", "content": agent.instructions}] if agent.instructions else []
        self.replies: list[Reply] = []
        self.transcripts: list[str] = []
        self.partials: list[str] = []
        self.errors: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None

    def vendor_error(self, exc: VendorError) -> None:
        self.errors[exc.kind] += 1
        if self.errors[exc.kind] == 1:
            self.log.warning("call %s: %s", self.label, exc)
        else:
            self.log.debug("call %s: %s again (%d)", self.label, exc, self.errors[exc.kind])

    async def run(self) -> None:
        rate = self.call.info.sample_rate
        recent: deque[tuple[float, bytes]] = deque()
        utterance: list[tuple[float, bytes]] | None = None
        begin = now = 0.0
        streaming = isinstance(self.stt, StreamingSpeechToText)
        live: _Live | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.agent.greeting:
                self.history.append({"role": "user", "content": self.agent.greeting})
                await self.start_reply()
            async for event in self.call:
                if isinstance(event, CallerAudio):
                    frame = (now, event.pcm)
                    now += len(event.pcm) / (2 * rate)
                    recent.append(frame)
                    while recent[0][0] < now - RING_S:
                        recent.popleft()
                    if utterance is not None and now - begin <= MAX_UTTERANCE_S:
                        utterance.append(frame)
                        if live is not None:
                            _feed(live, event.pcm)
                elif isinstance(event, SpeechStarted):
                    begin = event.at - PRE_ROLL_S
                    utterance = [f for f in recent if f[0] + len(f[1]) / (2 * rate) > begin]
                    if streaming:
                        if live is not None:
                            live.send.close()
                        live = _Live()
                        if utterance:
                            _feed(live, _cut(utterance, begin, now, rate))
                        nursery.start_soon(self.streamed_turn, live, rate)
                elif isinstance(event, SpeechEnded) and utterance is not None:
                    frames, utterance = utterance, None
                    short = not frames or event.duration < self.agent.min_utterance_s
                    if live is not None:
                        live.dropped = short
                        live.send.close()
                        live = None
                        continue
                    if short:
                        continue
                    end = min(event.at + TAIL_S, begin + MAX_UTTERANCE_S)
                    nursery.start_soon(self.turn, _cut(frames, begin, end, rate), rate)
                elif isinstance(event, BargeIn):
                    await self.interrupt(cleared=True)
            nursery.cancel_scope.cancel()

    async def streamed_turn(self, live: _Live, rate: int) -> None:
        """One utterance streamed to a :class:`StreamingSpeechToText` as it is spoken."""
        assert isinstance(self.stt, StreamingSpeechToText)
        final = ""
        transcripts = self.stt.stream(live.receive, rate)
        try:
            async for t in transcripts:
                if t.final:
                    final = t.text
                elif t.text:
                    self.partials.append(t.text)
                    await self.agent.on_partial(self.call, t.text)
        except VendorError as exc:
            self.vendor_error(exc)
            return
        finally:
            await _aclose(transcripts)
            live.receive.close()
        if not live.dropped:
            await self.answer(final)

    async def turn(self, pcm: bytes, rate: int) -> None:
        """One utterance: its transcript, then the reply (after cutting one still going)."""
        try:
            text = await self.stt.transcribe(pcm, rate)
        except VendorError as exc:
            self.vendor_error(exc)
            return
        await self.answer(text)

    async def answer(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self.transcripts.append(text)
        self.log.info("call %s: caller said %r", self.label, text[:200])
        await self.interrupt(cleared=False)
        self.history.append({"role": "user", "content": text})
        await self.start_reply()

    async def start_reply(self) -> None:
        reply = Reply(self.tts.rate)
        self.replies.append(reply)
        assert self._nursery is not None
        self._nursery.start_soon(self._speak, reply)

    async def _speak(self, reply: Reply) -> None:
        tts = self.tts
        turn = {"role": "assistant", "content": ""}
        reply.turn = turn
        messages = list(self.history)
        self.history.append(turn)
        try:
            with reply.scope:
                async with self.call.open_playback(reply.rate) as writer:
                    reply.writer = writer
                    buffer = ""
                    deltas = self.chat.stream(messages)
                    try:
                        async for delta in deltas:
                            buffer += delta
                            pieces, buffer = split_sentences(buffer)
                            for piece in pieces:
                                await self._say(reply, tts, writer, piece)
                    finally:
                        await _aclose(deltas)
                    if buffer.strip():
                        await self._say(reply, tts, writer, buffer.strip())
        except VendorError as exc:
            self.vendor_error(exc)
        finally:
            reply.done.set()
            if reply.cut is None:
                turn["content"] = reply.text
            if not turn["content"] and turn in self.history:
                self.history.remove(turn)

    async def _say(self, reply: Reply, tts: TextToSpeech, writer: PlaybackWriter, text: str) -> None:
        sentence = Sentence(text, complete=False)
        reply.sentences.append(sentence)
        chunks = tts.synthesize(text)
        try:
            async for chunk in chunks:
                if chunk:
                    sentence.samples += len(chunk) // 2
                    await writer.write(chunk)
            sentence.complete = True
        finally:
            await _aclose(chunks)

    async def interrupt(self, *, cleared: bool) -> None:
        """Stop every reply not yet heard to its end and cut its turn to what was heard."""
        pending = [r for r in self.replies if r.cut is None and r.pending]
        if not pending:
            return
        for reply in pending:
            reply.scope.cancel()
        if not cleared:
            await self.call.clear()
        for reply in pending:
            with trio.move_on_after(2.0):
                await reply.done.wait()
            pb = reply.writer.playback if reply.writer is not None else None
            result = pb.result if pb is not None else None
            played_ms = result.played_ms if result is not None else 0.0
            heard = heard_text(reply.sentences, reply.rate, played_ms)
            reply.cut = heard
            if reply.turn is not None:
                reply.turn["content"] = heard
                if not heard and reply.turn in self.history:
                    self.history.remove(reply.turn)
            self.log.info("call %s: caller heard %.0f ms of the reply: %r", self.label, played_ms, heard[:200])
            await self.agent.on_interrupted(self.call, reply, played_ms, heard)


def _feed(live: _Live, pcm: bytes) -> None:
    try:
        live.send.send_nowait(pcm)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the STT fell far behind, or gave up on this utterance: drop the audio


async def _aclose(stream: AsyncIterator[Any]) -> None:
    """Close a seam's async generator now (a cancelled one too), not when it is collected."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with trio.move_on_after(1.0, shield=True):
            await aclose()


def _cut(frames: list[tuple[float, bytes]], start: float, end: float, rate: int) -> bytes:
    audio = np.frombuffer(b"".join(pcm for _, pcm in frames), dtype="<i2")
    first = frames[0][0]
    return audio[max(0, round((start - first) * rate)) : max(0, round((end - first) * rate))].tobytes()
