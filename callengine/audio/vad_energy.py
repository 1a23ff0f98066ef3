""":class:`EnergyVad`, the default detector: band energy against an adaptive noise floor.

numpy only. The band energy is a quadratic form on a shared, read-only basis
(:func:`_band_basis`, 64-byte aligned by :func:`_aligned`) for telephone-size frames and an
FFT for longer ones.
"""

from __future__ import annotations

import functools
import math
import sys
from collections import deque
from typing import Any

import numpy as np

from .vad_base import VadFrame, VoiceActivityDetector

__all__ = ["EnergyVad"]


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
