"""The detector side of voice activity detection: :class:`VadFrame` verdicts and the
:class:`VoiceActivityDetector` interface every detector implements.

A detector takes caller audio in chunks of any length, buffers it into its own analysis
frames and returns one :class:`VadFrame` per complete frame: speech or not, a score in
[0, 1], and the frame's position in stream time (sample offsets since the start or the last
:meth:`~VoiceActivityDetector.reset`). The detectors are in :mod:`.vad_energy`,
:mod:`.vad_models` and :mod:`.vad_resampled`; :mod:`.vad` gathers them.

This module imports numpy and attrs.
"""

from __future__ import annotations

import abc
from typing import Sequence

import attrs
import numpy as np

from .pcm import float_to_int16

__all__ = ["VadFrame", "VoiceActivityDetector"]


# --- results ------------------------------------------------------------------------


@attrs.frozen
class VadFrame:
    """One analysis frame's verdict.

    ``start`` / ``end`` are stream sample offsets (``end`` exclusive). ``score`` is in
    [0, 1]: Silero's speech probability, a squashed margin over the noise floor for
    :class:`EnergyVad`, and 0 or 1 for webrtcvad, which gives no score.
    """

    start: int
    end: int
    is_speech: bool
    score: float


# --- the detector interface ---------------------------------------------------------


def _as_int16(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16LE bytes, integer samples or float samples in [-1, 1] -> 1-D int16."""
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D samples, got shape {audio.shape}")
        if np.issubdtype(audio.dtype, np.floating):
            return float_to_int16(audio)
        if audio.dtype == np.int16:  # native or not, int16 is int16 once numpy reads it
            return audio.astype(np.int16, copy=False)
        if not np.issubdtype(audio.dtype, np.integer):
            raise TypeError(f"unsupported sample dtype {audio.dtype}")
        return np.clip(audio, -32768, 32767).astype(np.int16)
    return np.frombuffer(audio, dtype="<i2").astype(np.int16, copy=False)


class VoiceActivityDetector(abc.ABC):
    """Streaming per-frame speech detector.

    :meth:`process` accepts audio in chunks of any size (PCM16LE bytes, int16 samples, or
    float samples in [-1, 1]) and returns a verdict for every analysis frame the chunk
    completed; the remainder waits for the next call. The verdicts depend only on the audio,
    never on how it was chunked. Subclasses implement :meth:`_classify` (and
    :meth:`_reset_model` if they keep state).
    """

    def __init__(self, sample_rate: int, frame_samples: int) -> None:
        if sample_rate <= 0 or frame_samples <= 0:
            raise ValueError("sample_rate and frame_samples must be positive")
        self._sample_rate = int(sample_rate)
        self._frame_samples = int(frame_samples)
        self._pending = np.zeros(0, dtype=np.int16)
        self._odd_byte = b""
        self._next_frame_start = 0

    @property
    def sample_rate(self) -> int:
        """Rate of the audio :meth:`process` expects, in Hz."""
        return self._sample_rate

    @property
    def frame_samples(self) -> int:
        """Analysis frame length in samples."""
        return self._frame_samples

    @property
    def frame_ms(self) -> float:
        """Analysis frame length in milliseconds."""
        return 1000.0 * self._frame_samples / self._sample_rate

    @property
    def position(self) -> int:
        """Samples consumed since the start or the last reset, including buffered ones."""
        return self._next_frame_start + len(self._pending)

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> list[VadFrame]:
        """Consume ``audio``; return the verdicts of the analysis frames it completed."""
        fs = self._frame_samples
        if type(audio) is bytes and len(audio) == 2 * fs and not self._odd_byte and not len(self._pending):
            # The common case on a live call: exactly one frame of PCM, nothing carried.
            # Same result as below with fewer numpy calls (at this size their overhead
            # costs more than the arithmetic).
            start = self._next_frame_start
            speech, score = self._classify_one(np.frombuffer(audio, dtype="<i2"))
            self._next_frame_start = start + fs
            return [VadFrame(start, start + fs, bool(speech), float(score))]
        samples = self._take_samples(audio)
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        n = len(samples) // self._frame_samples
        used = n * self._frame_samples
        self._pending = samples[used:].copy()
        if n == 0:
            return []
        frames = samples[:used].reshape(n, self._frame_samples)
        verdicts = self._classify(frames)
        out = []
        start = self._next_frame_start
        for i, (speech, score) in enumerate(verdicts):
            out.append(VadFrame(start + i * fs, start + (i + 1) * fs, bool(speech), float(score)))
        self._next_frame_start = start + used
        return out

    def _take_samples(self, audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        """The next chunk as int16 samples; an odd trailing byte of bytes input is carried."""
        if isinstance(audio, np.ndarray):
            if self._odd_byte:
                raise ValueError("an odd PCM16 byte is pending: keep feeding bytes")
            return _as_int16(audio)
        raw = self._odd_byte + bytes(audio)
        cut = len(raw) - (len(raw) & 1)
        self._odd_byte = raw[cut:]
        return _as_int16(raw[:cut])

    def reset(self) -> None:
        """Forget buffered audio and adaptive state; stream time restarts at 0."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._odd_byte = b""
        self._next_frame_start = 0
        self._reset_model()

    def close(self) -> None:
        """Release what the detector holds (Silero's model goes back to its pool); the
        detector is unusable afterwards. A no-op here; closing twice is harmless."""

    def __enter__(self) -> "VoiceActivityDetector":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def _classify(self, frames: np.ndarray) -> Sequence[tuple[bool, float]]:
        """Verdicts for ``frames``, an int16 array of shape (n, frame_samples), in order."""

    def _classify_one(self, frame: np.ndarray) -> tuple[bool, float]:
        """The verdict for one frame (int16, frame_samples long); the same as
        ``_classify(frame.reshape(1, -1))[0]``, which is what it does unless overridden."""
        return self._classify(frame.reshape(1, -1))[0]

    def _reset_model(self) -> None:
        """Drop any state carried between frames (the default keeps none)."""
