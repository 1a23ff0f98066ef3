""":class:`ResampledVad`: a detector fed through a streaming resampler, so that
:func:`~.vad.make_vad` never fails on the rate; :data:`RESAMPLE_RATE` is the rate it
resamples to for a detector that cannot take the input's.

This module imports numpy and :mod:`.resample` (soxr).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .resample import StreamResampler
from .vad_base import VadFrame, VoiceActivityDetector

__all__ = ["RESAMPLE_RATE", "ResampledVad"]

#: The rate :func:`~.vad.make_vad` resamples to for a detector that cannot take the input's rate.
RESAMPLE_RATE = 16000


class ResampledVad(VoiceActivityDetector):
    """``detector`` fed through a streaming resampler from ``sample_rate`` to its own rate.

    Its interface is at the input rate: :meth:`process` takes audio at ``sample_rate``, and
    :attr:`position` and the ``start`` / ``end`` of every :class:`VadFrame` are input-rate
    samples of the same stream time, so a :class:`SpeechSegmenter` on top dates events as
    it would with a native detector. :attr:`frame_ms` is the inner detector's;
    :attr:`frame_samples` is that length in input samples, rounded (frames alternate by a
    sample when the ratio is not whole).

    The resampler is the low-latency polyphase FIR (soxr for ratios too awkward for it). Its
    look-ahead (:attr:`delay_samples`, 1.7 ms for 24 -> 16 kHz) is spent up front: the inner
    stream starts with that much silence, so a frame's verdict comes as soon as the input
    reaches its end, and frame times are the times of the audio the frame holds. The first
    frame is shorter by the look-ahead. Verdicts do not depend on how the input is chunked.
    """

    def __init__(self, detector: VoiceActivityDetector, sample_rate: int) -> None:
        in_rate, inner_rate = int(sample_rate), detector.sample_rate
        if in_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        super().__init__(in_rate, max(1, round(detector.frame_samples * in_rate / inner_rate)))
        self.detector = detector
        try:
            self._resampler = StreamResampler(in_rate, inner_rate, low_latency=True)
        except ValueError:  # a ratio with too many polyphase phases (44101 -> 16000)
            self._resampler = StreamResampler(in_rate, inner_rate, quality="LQ")
        self._lead = self._resampler.delay_samples or 0
        self._consumed = 0
        self._prime()

    def _prime(self) -> None:
        if self._lead:
            self.detector.process(self._resampler.process(np.zeros(self._lead, dtype=np.int16)))

    @property
    def frame_ms(self) -> float:
        return self.detector.frame_ms

    @property
    def delay_samples(self) -> int:
        """The resampler's look-ahead in input samples (0 with soxr, whose lag varies)."""
        return self._lead

    @property
    def position(self) -> int:
        """Input samples consumed since the start or the last reset, including buffered ones."""
        return self._consumed

    def _to_input(self, inner_sample: int) -> int:
        t = (inner_sample * self._sample_rate + self.detector.sample_rate // 2) // self.detector.sample_rate
        return max(0, t - self._lead)

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> list[VadFrame]:
        samples = self._take_samples(audio)
        self._consumed += len(samples)
        frames = self.detector.process(self._resampler.process(samples))
        to_input = self._to_input
        return [VadFrame(to_input(f.start), to_input(f.end), f.is_speech, f.score) for f in frames]

    def reset(self) -> None:
        self._odd_byte = b""
        self._consumed = 0
        self.detector.reset()
        self._resampler.reset()
        self._prime()

    def close(self) -> None:
        self.detector.close()

    def _classify(self, frames: np.ndarray) -> Sequence[tuple[bool, float]]:
        raise NotImplementedError("ResampledVad classifies through its inner detector")
