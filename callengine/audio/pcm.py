"""PCM16 little-endian bytes <-> numpy, with clipping (never wrap-around)."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "pcm16_to_int16",
    "int16_to_pcm16",
    "pcm16_to_float32",
    "float32_to_pcm16",
    "float_to_int16",
    "as_pcm16",
    "to_mono",
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


#: Peak of float input that is still clipped rather than refused: resampling filters
#: overshoot full-scale material by a few per cent.
FLOAT_PEAK_TOLERANCE = 1.05


def as_pcm16(audio: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """Audio for playback -> PCM16LE mono bytes; refuses what it would otherwise garble.

    * bytes-like: taken as PCM16LE (an even byte count is required);
    * int16 samples: as they are; int32 (32-bit WAV, many TTS SDKs): scaled to 16 bits,
      rounded; uint8 (8-bit WAV, offset binary): converted. Other integer types (int64,
      uint16, int8...) are refused with TypeError: their scale is unknown;
    * float samples in [-1, 1]; a peak up to :data:`FLOAT_PEAK_TOLERANCE` (filter
      overshoot) is clipped, anything louder is refused with ValueError (saying to divide
      by 32768 when the values look like int16 scale), as are NaN and infinities;
    * 1-D arrays, or (n, 1) / (1, n); a multi-channel array is refused with ValueError
      (mix it down with :func:`to_mono` first).
    """
    if isinstance(audio, np.ndarray):
        if audio.dtype == _INT16 and audio.ndim == 1:  # the hot path
            return audio.tobytes()
        return _samples_to_pcm16(audio)
    if isinstance(audio, (bytes, bytearray)):
        pcm = bytes(audio)
    else:
        try:
            view = memoryview(audio)
        except TypeError:
            raise TypeError(
                f"as_pcm16 takes PCM16LE bytes or a numpy array of samples, not {type(audio).__name__}"
                " (wrap a sequence of samples in np.asarray)"
            ) from None
        if view.format not in ("B", "b", "c"):
            # A buffer of typed items (array.array, ctypes, a memoryview of an array):
            # read its values, do not reinterpret its bytes as int16.
            return _samples_to_pcm16(np.asarray(view))
        pcm = view.tobytes()
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return pcm


def _samples_to_pcm16(a: np.ndarray) -> bytes:
    a = _mono_1d(a)
    kind = a.dtype.kind
    if kind == "f":
        return _float_to_pcm16(a)
    if kind in "iu":
        if a.dtype.itemsize == 2 and kind == "i":
            return a.astype(_INT16).tobytes()  # int16 in the other byte order
        if a.dtype.itemsize == 4 and kind == "i":
            # Round to the nearest 16-bit step; only the top of the range rounds past 32767.
            y = (a.astype(np.int64) + 0x8000) >> 16
            return np.minimum(y, 32767).astype(_INT16).tobytes()
        if a.dtype == np.uint8:
            return ((a.astype(np.int16) - 128) << 8).astype(_INT16).tobytes()
        raise TypeError(
            f"{a.dtype} samples have no known scale: convert them to int16 (x.astype(np.int16) if the "
            "values are 16-bit, within -32768..32767) or to float in [-1, 1]"
        )
    raise TypeError(f"samples must be integers or floats, not {a.dtype}")


def _mono_1d(a: np.ndarray) -> np.ndarray:
    """``a`` as 1-D samples: (n, 1) and (1, n) are squeezed; anything else is refused."""
    if a.ndim == 1:
        return a
    if a.ndim == 2 and 1 in a.shape:
        return a.reshape(-1)
    if a.ndim == 0:
        raise ValueError("expected 1-D samples, got a scalar")
    if a.ndim == 2:
        rows, cols = a.shape
        if cols < rows:
            hint = f"{cols} channels (samples, channels): to_mono(samples, channel_axis=-1) mixes them down"
        else:
            hint = f"{rows} channels (channels, samples): to_mono(samples, channel_axis=0) mixes them down"
        raise ValueError(
            f"expected mono samples, got shape {a.shape}, which looks like {hint} "
            "(callengine.audio.pcm.to_mono), or pick one channel"
        )
    raise ValueError(
        f"expected mono 1-D samples, got shape {a.shape}: mix channels down with "
        "callengine.audio.pcm.to_mono(samples, channel_axis=...)"
    )


def _float_to_pcm16(a: np.ndarray) -> bytes:
    if a.size:
        lo, hi = float(a.min()), float(a.max())  # NaN propagates through min and max
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("float samples contain NaN or infinity")
        peak = max(-lo, hi)
        if peak > FLOAT_PEAK_TOLERANCE:
            if 2.0 < peak <= 32768.0:
                raise ValueError(
                    f"float samples must be in [-1, 1], but their peak is {peak:g}, which looks like int16 scale:"
                    " divide by 32768 (or pass x.astype(np.int16))"
                )
            raise ValueError(
                f"float samples must be in [-1, 1], but their peak is {peak:g}: scale them down"
                " (e.g. divide by the peak) before playing"
            )
    return float_to_int16(a).tobytes()


def to_mono(samples: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Mix multi-channel samples down to 1-D mono: the mean of the channels.

    ``channel_axis`` is the axis that holds the channels: -1 for (samples, channels), the
    layout of WAV readers and most SDKs; 0 for (channels, samples). Integer samples are
    averaged with rounding and keep their dtype (the mean never overflows it); float
    samples keep theirs. A 1-D array is already mono and is returned as it is.
    """
    a = np.asarray(samples)
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise ValueError(f"to_mono takes (samples, channels) or (channels, samples), got shape {a.shape}")
    if a.shape[channel_axis] == 0:
        raise ValueError(f"no channels on axis {channel_axis} of shape {a.shape}")
    if a.dtype.kind in "iu":
        return np.rint(a.mean(axis=channel_axis, dtype=np.float64)).astype(a.dtype)
    if a.dtype.kind == "f":
        return a.mean(axis=channel_axis, dtype=np.float64).astype(a.dtype)
    raise TypeError(f"samples must be integers or floats, not {a.dtype}")


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
