"""Test and demo signals: tones, noise, silence, and mixing at a chosen signal-to-noise ratio."""

from __future__ import annotations

import numpy as np

__all__ = ["tone", "silence", "white_noise", "mix_at_snr", "scale_to_dbfs"]


def _n(seconds: float, sample_rate: int) -> int:
    return int(round(seconds * sample_rate))


def tone(freq: float | tuple[float, ...], seconds: float, sample_rate: int, dbfs: float = -12.0, phase: float = 0.0) -> np.ndarray:
    """A sine (or a sum of sines, equal in level) as int16; ``dbfs`` is the RMS level of each sine."""
    freqs: tuple[float, ...] = tuple(freq) if isinstance(freq, (tuple, list)) else (float(freq),)
    t = np.arange(_n(seconds, sample_rate)) / sample_rate
    amp = np.sqrt(2.0) * 10 ** (dbfs / 20)  # RMS of a sine is peak / sqrt(2)
    x = np.zeros(len(t))
    for f in freqs:
        x += amp * np.sin(2 * np.pi * f * t + phase)
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(_n(seconds, sample_rate), dtype=np.int16)


def white_noise(seconds: float, sample_rate: int, dbfs: float = -40.0, seed: int | None = 0) -> np.ndarray:
    """Gaussian white noise at an RMS of ``dbfs``, reproducible for a given seed."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_n(seconds, sample_rate)) * 10 ** (dbfs / 20)
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def _rms(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def scale_to_dbfs(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale int16 samples so their RMS level is ``dbfs`` (clipped, never wrapped)."""
    rms = _rms(samples)
    if rms == 0:
        return samples.astype(np.int16)
    gain = 32768 * 10 ** (dbfs / 20) / rms
    return np.clip(np.rint(samples.astype(np.float64) * gain), -32768, 32767).astype(np.int16)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, *, active: np.ndarray | None = None) -> np.ndarray:
    """``signal`` plus ``noise`` scaled so that signal power / noise power = ``snr_db``.

    ``active`` (a boolean mask) restricts the signal power measurement to where the signal
    is present, the usual convention for speech with pauses. The noise is tiled or cut to
    the signal's length.
    """
    s = signal.astype(np.float64)
    n = np.resize(noise.astype(np.float64), s.shape)
    ps = float(np.mean(s[active] ** 2)) if active is not None and active.any() else float(np.mean(s**2))
    pn = float(np.mean(n**2))
    if pn == 0:
        return signal.astype(np.int16)
    n *= np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return np.clip(np.rint(s + n), -32768, 32767).astype(np.int16)
