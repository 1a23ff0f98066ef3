"""PCM16 little-endian bytes <-> numpy, with clipping (never wrap-around)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "pcm16_to_int16",
    "int16_to_pcm16",
    "pcm16_to_float32",
    "float32_to_pcm16",
    "float_to_int16",
    "as_pcm16",
    "dbfs",
]

_INT16 = np.dtype("<i2")


def pcm16_to_int16(pcm: bytes | bytearray | memoryview) -> np.ndarray:
    """Interpret PCM16LE bytes as int16 samples (a read-only view where possible).

    Raises ValueError on an odd byte count: a caller that streams must carry the odd byte.
    """
    # nbytes, not len(): len() of a memoryview over wider items counts items, not bytes.
    nbytes = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
    if nbytes % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {nbytes}")
    return np.frombuffer(pcm, dtype=_INT16)


def int16_to_pcm16(samples: np.ndarray) -> bytes:
    """int16 (or any integer) samples -> PCM16LE bytes. Wider integers are clipped."""
    a = np.asarray(samples)
    if a.dtype != _INT16:
        if np.issubdtype(a.dtype, np.floating):
            raise TypeError("float samples: use float32_to_pcm16, which scales and clips")
        a = np.clip(a, -32768, 32767).astype(_INT16)
    return a.tobytes()


def pcm16_to_float32(pcm: bytes | bytearray | memoryview) -> np.ndarray:
    """PCM16LE bytes -> float32 samples in [-1, 1)."""
    return pcm16_to_int16(pcm).astype(np.float32) * np.float32(1 / 32768)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, rounded and clipped (NaN becomes 0)."""
    a = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    # Clip before scaling: a huge finite value (1e305) would overflow the multiply to inf.
    a = np.clip(a, -1.0, 1.0)
    return np.clip(np.rint(a * 32768.0), -32768, 32767).astype(_INT16)


def float32_to_pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> PCM16LE bytes, clipped at full scale."""
    return float_to_int16(samples).tobytes()


def as_pcm16(audio: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """Accept PCM16LE bytes, int16 samples or float samples; return PCM16LE bytes."""
    if isinstance(audio, np.ndarray):
        if np.issubdtype(audio.dtype, np.floating):
            return float32_to_pcm16(audio)
        return int16_to_pcm16(audio)
    pcm = bytes(audio)
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return pcm


def dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 or float samples in dB relative to full scale (-inf for silence)."""
    a = np.asarray(samples)
    if a.size == 0:
        return float("-inf")
    x = a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        x /= 32768.0
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
