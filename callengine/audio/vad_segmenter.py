""":class:`SpeechSegmenter`: speech starts and ends (:class:`SpeechStart`,
:class:`SpeechEnd`) from any detector's frames, with an onset debounce and a hang-over.

It does not decide barge-in: the caller compares :attr:`SpeechSegmenter.speech_seconds`
with its own minimum (about 200 ms). Timestamps are sample offsets at the detector's
``sample_rate``; the ``*_seconds`` properties convert them.

This module imports numpy and attrs.
"""

from __future__ import annotations

from typing import Iterable

import attrs
import numpy as np

from .vad_base import VadFrame, VoiceActivityDetector

__all__ = ["SpeechStart", "SpeechEnd", "SpeechSegmenter"]


# --- events -------------------------------------------------------------------------


class _SampleTimes:
    """``at_seconds`` and ``decided_at_seconds`` of the segmenter's events, from their
    ``at_sample``, ``decided_at_sample`` and ``sample_rate`` fields."""

    __slots__ = ()
    at_sample: int
    decided_at_sample: int
    sample_rate: int

    @property
    def at_seconds(self) -> float:
        return self.at_sample / self.sample_rate

    @property
    def decided_at_seconds(self) -> float:
        return self.decided_at_sample / self.sample_rate


@attrs.frozen
class SpeechStart(_SampleTimes):
    """Speech began at ``at_sample``; the segmenter decided so at ``decided_at_sample``.

    ``at_sample`` is the first sample of the first speech frame of the run that passed the
    onset debounce, so ``decided_at_sample - at_sample`` is at least ``min_speech_ms``.
    """

    at_sample: int
    decided_at_sample: int
    sample_rate: int


@attrs.frozen
class SpeechEnd(_SampleTimes):
    """Speech that began at ``start_sample`` ended at ``at_sample`` (end of its last speech
    frame); the segmenter decided so at ``decided_at_sample``, after the hang-over."""

    at_sample: int
    decided_at_sample: int
    start_sample: int
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        return (self.at_sample - self.start_sample) / self.sample_rate

# --- segmenter ----------------------------------------------------------------------


class SpeechSegmenter:
    """Speech start / end decisions on top of any :class:`VoiceActivityDetector`.

    * Start: a run of consecutive speech frames lasting at least ``min_speech_ms`` (the
      onset debounce that rejects clicks; not the barge-in threshold). The start is dated to
      the run's first sample.
    * End: ``hangover_ms`` without a speech frame after the last one; the end is dated to
      the end of that last speech frame. Any speech frame during the hang-over continues
      the segment.

    Feed audio with :meth:`process`, or run the detector yourself and hand its frames to
    :meth:`push`. For barge-in, compare :attr:`speech_seconds` (start of the segment to its
    latest speech frame, so the hang-over never counts as speech) with the minimum speech
    the engine requires (about 200 ms).
    """

    def __init__(
        self,
        detector: VoiceActivityDetector,
        *,
        min_speech_ms: float = 60.0,
        hangover_ms: float = 300.0,
    ) -> None:
        if min_speech_ms < 0 or hangover_ms < 0:
            raise ValueError("min_speech_ms and hangover_ms must be >= 0")
        self.detector = detector
        self.min_speech_ms = float(min_speech_ms)
        self.hangover_ms = float(hangover_ms)
        rate = detector.sample_rate
        self._min_speech = int(round(min_speech_ms * rate / 1000.0))
        self._hangover = int(round(hangover_ms * rate / 1000.0))
        self.reset(detector_too=False)

    @property
    def sample_rate(self) -> int:
        return self.detector.sample_rate

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and its :class:`SpeechEnd`."""
        return self._current is not None

    @property
    def current(self) -> SpeechStart | None:
        """The start of the segment in progress, if any."""
        return self._current

    @property
    def position(self) -> int:
        """Stream offset (samples) up to which frames have been judged."""
        return self._position

    @property
    def last_speech_sample(self) -> int | None:
        """End of the latest speech frame of the segment in progress (None outside speech)."""
        return self._last_speech_end if self._current is not None else None

    @property
    def speech_seconds(self) -> float:
        """How long the segment in progress has been speech so far (0.0 outside speech)."""
        if self._current is None:
            return 0.0
        return (self._last_speech_end - self._current.at_sample) / self.sample_rate

    def reset(self, *, detector_too: bool = True) -> None:
        """Forget any segment in progress (and, by default, reset the detector)."""
        if detector_too:
            self.detector.reset()
        self._current: SpeechStart | None = None
        self._run_start: int | None = None
        self._last_speech_end = 0
        self._position = 0

    def close(self) -> None:
        """Close the detector (see :meth:`VoiceActivityDetector.close`)."""
        self.detector.close()

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> list[SpeechStart | SpeechEnd]:
        """Run the detector on ``audio`` and return the starts and ends it decided."""
        return self.push(self.detector.process(audio))

    def push(self, frames: Iterable[VadFrame]) -> list[SpeechStart | SpeechEnd]:
        """Advance over detector verdicts (in stream order); return decided starts and ends."""
        events: list[SpeechStart | SpeechEnd] = []
        for f in frames:
            self._position = f.end
            if self._current is None:
                if not f.is_speech:
                    self._run_start = None
                    continue
                if self._run_start is None:
                    self._run_start = f.start
                if f.end - self._run_start >= self._min_speech:
                    self._current = SpeechStart(self._run_start, f.end, self.sample_rate)
                    self._last_speech_end = f.end
                    self._run_start = None
                    events.append(self._current)
            elif f.is_speech:
                self._last_speech_end = f.end
            elif f.end - self._last_speech_end >= self._hangover:
                events.append(self._end(f.end))
        return events

    def flush(self) -> list[SpeechEnd]:
        """End of stream: close the segment in progress, if any."""
        if self._current is None:
            return []
        return [self._end(self._position)]

    def _end(self, decided_at: int) -> SpeechEnd:
        start = self._current
        assert start is not None
        self._current = None
        self._run_start = None
        return SpeechEnd(self._last_speech_end, decided_at, start.at_sample, self.sample_rate)
