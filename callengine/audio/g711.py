"""G.711 mu-law and A-law, vectorised with numpy lookup tables (no audioop, gone in 3.13).

Decoding follows the tables of ITU-T G.711. Encoding follows ITU-T's reference
implementation (G.191 Software Tool Library, ``g711.c``): a 16-bit sample is reduced to
the 14-bit (mu-law) or 13-bit (A-law) linear range by an arithmetic shift, and negative
samples use the one's complement (``~x``) so that the quantiser is mirror-symmetric and
every decoded value is the middle of its decision interval. (audioop's mu-law encoder
shifts negative samples before negating them instead; for negative input it then picks
the code one 14-bit step further from zero in some cases, e.g. -1 -> 0x7E, where the
reference gives 0x7F.)

Both encoders are 65536-entry tables indexed by the sample's 16-bit pattern, both decoders
256-entry tables, all built once at import.
"""

from __future__ import annotations

import numpy as np

from .pcm import pcm16_to_int16

__all__ = [
    "ulaw_encode",
    "ulaw_decode",
    "alaw_encode",
    "alaw_decode",
    "lin2ulaw",
    "ulaw2lin",
    "lin2alaw",
    "alaw2lin",
]

_INT16 = np.dtype("<i2")


def _reference_magnitude(x: np.ndarray) -> np.ndarray:
    """|x| for x >= 0 and ~x (= |x| - 1) for x < 0, as int32: the reference's symmetric fold."""
    x = x.astype(np.int32)
    return np.where(x >= 0, x, ~x)


def _build_ulaw_encoder() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    # 14-bit magnitude plus the mu-law bias of 33, clipped at the top of segment 7.
    biased = np.minimum((_reference_magnitude(x) >> 2) + 33, 0x1FFF)
    # Segment s holds biased magnitudes [32 * 2**s, 64 * 2**s).
    seg = np.searchsorted(np.array([64, 128, 256, 512, 1024, 2048, 4096]), biased, side="right")
    mantissa = (biased >> (seg + 1)) & 0x0F
    code = 0x7F ^ ((seg << 4) | mantissa)  # mu-law transmits the magnitude bits inverted
    code = np.where(x >= 0, code | 0x80, code)  # sign bit set (1) for positive
    return _by_bit_pattern(code)


def _build_alaw_encoder() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    ix = _reference_magnitude(x) >> 4  # 12-bit magnitude, 0..2047 from 16-bit input
    # Segment 0 is ix 0..15 and segment 1 ix 16..31 (same step); segment s >= 1 holds
    # ix in [16 * 2**(s-1), 32 * 2**(s-1)).
    seg = np.searchsorted(np.array([16, 32, 64, 128, 256, 512, 1024]), ix, side="right")
    mantissa = np.where(seg <= 1, ix & 0x0F, (ix >> np.maximum(seg - 1, 0)) & 0x0F)
    code = (seg << 4) | mantissa
    code = np.where(x >= 0, code | 0x80, code)
    return _by_bit_pattern(code ^ 0x55)  # A-law inverts the even bits


def _by_bit_pattern(code_by_value: np.ndarray) -> np.ndarray:
    """Reorder a table indexed by value + 32768 so it is indexed by the uint16 bit pattern."""
    return np.roll(code_by_value.astype(np.uint8), -32768)


def _build_ulaw_decoder() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    seg = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << seg) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decoder() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a >> 4) & 0x07
    t = (a & 0x0F) << 4
    magnitude = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encoder()
_ALAW_ENCODE = _build_alaw_encoder()
_ULAW_DECODE = _build_ulaw_decoder()
_ALAW_DECODE = _build_alaw_decoder()
for _table in (_ULAW_ENCODE, _ALAW_ENCODE, _ULAW_DECODE, _ALAW_DECODE):
    _table.flags.writeable = False
del _table


def _as_int16(samples) -> np.ndarray:
    a = np.asarray(samples)
    if a.dtype == np.int16:
        return a
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected integer samples, got {a.dtype} (convert floats with pcm.float_to_int16)")
    return np.clip(a, -32768, 32767).astype(np.int16)


def _as_codes(codes) -> np.ndarray:
    if isinstance(codes, (bytes, bytearray, memoryview)):
        return np.frombuffer(codes, dtype=np.uint8)
    a = np.asarray(codes)
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected uint8 codes, got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError("G.711 codes must be in 0..255")
    return a.astype(np.uint8)


def ulaw_encode(samples: np.ndarray) -> np.ndarray:
    """int16 samples -> mu-law codes (uint8, same shape). Wider integers are clipped first."""
    return _ULAW_ENCODE[_as_int16(samples).view(np.uint16)]


def ulaw_decode(codes: np.ndarray) -> np.ndarray:
    """mu-law codes (uint8 array or bytes) -> int16 samples in [-32124, 32124]."""
    return _ULAW_DECODE[_as_codes(codes)]


def alaw_encode(samples: np.ndarray) -> np.ndarray:
    """int16 samples -> A-law codes (uint8, same shape). Wider integers are clipped first."""
    return _ALAW_ENCODE[_as_int16(samples).view(np.uint16)]


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """A-law codes (uint8 array or bytes) -> int16 samples in [-32256, 32256]."""
    return _ALAW_DECODE[_as_codes(codes)]


def lin2ulaw(pcm: bytes | bytearray | memoryview) -> bytes:
    """PCM16LE bytes -> mu-law bytes (one per sample). ValueError on an odd byte count."""
    return _ULAW_ENCODE[pcm16_to_int16(pcm).view("<u2")].tobytes()


def ulaw2lin(data: bytes | bytearray | memoryview) -> bytes:
    """mu-law bytes -> PCM16LE bytes (two per code)."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype(_INT16, copy=False).tobytes()


def lin2alaw(pcm: bytes | bytearray | memoryview) -> bytes:
    """PCM16LE bytes -> A-law bytes (one per sample). ValueError on an odd byte count."""
    return _ALAW_ENCODE[pcm16_to_int16(pcm).view("<u2")].tobytes()


def alaw2lin(data: bytes | bytearray | memoryview) -> bytes:
    """A-law bytes -> PCM16LE bytes (two per code)."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype(_INT16, copy=False).tobytes()
