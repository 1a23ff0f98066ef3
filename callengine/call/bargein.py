"""Listening to the caller: VAD and in-band DTMF on each inbound frame, and the barge-in task.

The analysis runs in the reader task, on the frame it just decoded (handing every frame to
a separate task costs a task switch and two queue operations per frame, about as much as
the energy VAD itself). The barge-in task wakes only when the caller barges in: it asks the
writer to clear, waits until it has, then tells the agent what was cut.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import trio

from ..audio.dtmf import DtmfDetector
from ..audio.vad import SpeechSegmenter, SpeechStart
from ..events import BargeIn, Dtmf, Event, PlaybackResult, SpeechEnded, SpeechStarted
from .causes import Counters
from .inbox import Inbox

__all__ = ["Analyzer", "run_bargein"]

log = logging.getLogger("callengine.call")

_EPS = 1e-9


class Analyzer:
    """VAD and in-band DTMF over the caller's wire-rate audio (no await: reader task).

    ``bot_audible()`` says whether the caller can hear the bot now; ``barge_in_enabled()``
    whether this call clears on speech. A barge-in is posted once per speech segment, when
    the segment has lasted ``min_speech_s``, to ``onsets`` (the barge-in task's queue)."""

    def __init__(
        self,
        segmenter: SpeechSegmenter,
        dtmf: DtmfDetector | None,
        *,
        wire_rate: int,
        min_speech_s: float,
        inbox: Inbox[Event],
        counters: Counters,
        bot_audible: Callable[[], bool],
        barge_in_enabled: Callable[[], bool],
        onsets: "trio.MemorySendChannel[tuple[float, float]]",
    ) -> None:
        self.segmenter = segmenter
        self.dtmf = dtmf
        self.wire_rate = wire_rate
        self.min_speech_s = min_speech_s
        self._inbox = inbox
        self._counters = counters
        self._bot_audible = bot_audible
        self._barge_in_enabled = barge_in_enabled
        self._onsets = onsets
        self._barged_this_segment = False

    def process(self, pcm: bytes, sample_rate: int) -> None:
        if sample_rate != self.wire_rate:
            return  # a rate change mid-call is not a thing providers do
        inbox = self._inbox
        counters = self._counters
        if self.dtmf is not None:
            for key in self.dtmf.process(pcm):
                counters.dtmf += 1
                inbox.put_event_nowait(Dtmf(key.digit))
        segmenter = self.segmenter
        for seg in segmenter.process(pcm):
            if isinstance(seg, SpeechStart):
                counters.speech_segments += 1
                self._barged_this_segment = False
                inbox.put_event_nowait(SpeechStarted(seg.at_seconds))
            else:
                inbox.put_event_nowait(SpeechEnded(seg.at_seconds, seg.duration_seconds))
        onset = segmenter.current
        if (
            onset is not None
            and not self._barged_this_segment
            and segmenter.speech_seconds >= self.min_speech_s - _EPS  # hang-over is not speech
            and self._barge_in_enabled()
            and self._bot_audible()
        ):
            self._barged_this_segment = True
            counters.barge_ins += 1
            # when the onset was on the clock: this audio ends now, the onset is that far back
            onset_at = trio.current_time() - (segmenter.position / self.wire_rate - onset.at_seconds)
            try:
                self._onsets.send_nowait((onset.at_seconds, onset_at))
            except trio.WouldBlock:
                pass  # a barge-in is being handled: this one is the same interruption

    def close(self) -> None:
        close = getattr(self.segmenter.detector, "close", None)
        if close is not None:
            close()


async def run_bargein(
    onsets: "trio.MemoryReceiveChannel[tuple[float, float]]",
    request_clear: Callable[[str], Awaitable[list[PlaybackResult]]],
    inbox: Inbox[Event],
    label: str,
    on_latency: Callable[[float], None] = lambda seconds: None,
) -> None:
    """The barge-in task: for each onset, clear and tell the agent what was cut.
    ``on_latency(seconds)``: from the speech onset to the clear sent, for metrics."""
    async for onset_s, onset_at in onsets:
        interrupted = await request_clear("barge-in")
        on_latency(trio.current_time() - onset_at)
        log.info("call %s: barge-in at %.3f s, %d playback(s) cut", label, onset_s, len(interrupted))
        inbox.put_event_nowait(BargeIn(onset_s, tuple(interrupted)))
