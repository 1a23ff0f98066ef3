"""G.711 mu-law / A-law: exact tables, quantisation error bounds, round trips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from callengine.audio.g711 import (
    alaw2lin,
    alaw_decode,
    alaw_encode,
    lin2alaw,
    lin2ulaw,
    ulaw2lin,
    ulaw_decode,
    ulaw_encode,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)

int16_arrays = hnp.arrays(np.int16, hnp.array_shapes(max_dims=2, max_side=64), elements=st.integers(-32768, 32767))


# --- Independent scalar references, written from the ITU-T text (G.711 tables, G.191 g711.c)


def ref_ulaw_encode(x: int) -> int:
    magnitude = x if x >= 0 else -x - 1  # one's complement for negatives, as in G.191
    biased = min((magnitude >> 2) + 33, 0x1FFF)
    seg = 0
    while biased >= (64 << seg):
        seg += 1
    mantissa = (biased >> (seg + 1)) & 0xF
    code = ((seg << 4) | mantissa) ^ 0x7F
    return code | 0x80 if x >= 0 else code


def ref_alaw_encode(x: int) -> int:
    magnitude = (x if x >= 0 else -x - 1) >> 4
    if magnitude < 16:
        code = magnitude
    else:
        seg = 1
        while magnitude >= (32 << (seg - 1)):
            seg += 1
        code = (seg << 4) | ((magnitude >> (seg - 1)) & 0xF)
    return (code | 0x80 if x >= 0 else code) ^ 0x55


# --- Error bounds, derived from the segment layout in 16-bit units.
#
# mu-law works on 14-bit magnitudes (x >> 2) plus a bias of 33. Segment s (0..7) covers
# biased magnitudes [32 * 2**s, 64 * 2**s) in 16 intervals of width 2**(s+1); the decoder
# returns each interval's midpoint. In 16-bit units (x4) the step is 2**(s+3), so the error
# is at most half a step, 2**(s+2) (the truncating shift and the one's complement fold of
# negatives shift the error interval by less than one 14-bit unit, inside that half step).
# Segment s ends at 16-bit magnitude 4 * (64 * 2**s - 33) = 256 * 2**s - 132. Past the last
# decision value (8159 in 14 bits, 32636 here) the quantiser overloads: the output stays at
# the largest level 32124 and the error is |x| - 32124.
#
# A-law works on 12-bit magnitudes (x >> 4): segments 0 and 1 (magnitudes 0..255, 256..511)
# both have a step of 16, segment s >= 2 a step of 16 * 2**(s-1), with midpoint decoding, so
# the error is at most 8 * 2**(max(s, 1) - 1). Segment 7 ends at 32768: no overload.

ULAW_MAX = 32124
ALAW_MAX = 32256


def ulaw_bound(x: np.ndarray) -> np.ndarray:
    m = np.abs(x.astype(np.int64))
    seg_ends = 256 * 2 ** np.arange(8) - 132  # 124, 380, ..., 32636
    seg = np.minimum(np.searchsorted(seg_ends, m, side="right"), 7)
    return np.where(m >= seg_ends[-1], m - ULAW_MAX, 2 ** (seg + 2))


def alaw_bound(x: np.ndarray) -> np.ndarray:
    m = np.abs(x.astype(np.int64))
    seg_ends = 256 * 2 ** np.arange(8)  # 256, 512, ..., 32768
    seg = np.minimum(np.searchsorted(seg_ends, m, side="right"), 7)
    return 8 * 2 ** (np.maximum(seg, 1) - 1)


# --- Known answers


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),  # the reference folds -1 onto negative zero / the first A-law level
        (1, 0xFF, 0xD5),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_known_encodings(sample, ulaw, alaw):
    x = np.array([sample], dtype=np.int16)
    assert ulaw_encode(x)[0] == ulaw
    assert alaw_encode(x)[0] == alaw


@pytest.mark.parametrize(
    ("code", "ulaw", "alaw"),
    [
        (0xFF, 0, 848),  # mu-law positive zero (idle pattern)
        (0x7F, 0, -848),  # mu-law negative zero
        (0x80, 32124, 5504),
        (0x00, -32124, -5504),
        (0xD5, 716, 8),  # A-law idle pattern: the smallest positive level
        (0x55, -716, -8),
        (0xAA, 5372, 32256),
        (0x2A, -5372, -32256),
    ],
)
def test_known_decodings(code, ulaw, alaw):
    c = np.array([code], dtype=np.uint8)
    assert ulaw_decode(c)[0] == ulaw
    assert alaw_decode(c)[0] == alaw


def test_encoders_match_scalar_reference_for_every_int16():
    assert ulaw_encode(ALL_INT16).tolist() == [ref_ulaw_encode(int(x)) for x in ALL_INT16]
    assert alaw_encode(ALL_INT16).tolist() == [ref_alaw_encode(int(x)) for x in ALL_INT16]


def test_decode_tables_match_g711_formulas():
    # mu-law: invert the bits; magnitude = ((2 * mantissa + 33) << seg) - 33, times 4 for 16-bit.
    # A-law: invert the even bits; magnitude = mantissa * 2 + 1 (seg 0) or (2 * mantissa + 33) << (seg - 1),
    # times 8 for 16-bit. The sign bit set means positive in A-law, negative in inverted mu-law.
    for code in range(256):
        u = code ^ 0xFF
        mag = 4 * (((2 * (u & 15) + 33) << ((u >> 4) & 7)) - 33)
        assert ulaw_decode(np.uint8(code)) == (-mag if u & 0x80 else mag)
        a = code ^ 0x55
        seg, mant = (a >> 4) & 7, a & 15
        mag = 8 * (2 * mant + 1 if seg == 0 else (2 * mant + 33) << (seg - 1))
        assert alaw_decode(np.uint8(code)) == (mag if a & 0x80 else -mag)


def test_decoded_ranges():
    u = ulaw_decode(ALL_CODES)
    a = alaw_decode(ALL_CODES)
    assert u.dtype == np.int16 and a.dtype == np.int16
    assert u.min() == -ULAW_MAX and u.max() == ULAW_MAX
    assert a.min() == -ALAW_MAX and a.max() == ALAW_MAX
    assert len(set(a.tolist())) == 256  # A-law has no negative zero
    assert len(set(u.tolist())) == 255  # mu-law's 0x7F and 0xFF both decode to 0


# --- Quantisation error bounds, exhaustively and as properties


def test_round_trip_error_bounds_for_every_int16():
    x = ALL_INT16.astype(np.int64)
    u_err = np.abs(ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int64) - x)
    a_err = np.abs(alaw_decode(alaw_encode(ALL_INT16)).astype(np.int64) - x)
    assert (u_err <= ulaw_bound(ALL_INT16)).all()
    assert (a_err <= alaw_bound(ALL_INT16)).all()
    # The bounds are tight: each segment's half step is reached.
    assert u_err[np.abs(x) < 124].max() == 4 and a_err[np.abs(x) < 256].max() == 8
    assert u_err.max() == 32768 - ULAW_MAX and a_err.max() == 512


@settings(max_examples=200, deadline=None)
@given(int16_arrays)
def test_round_trip_within_quantisation_bound(x):
    for encode, decode, bound in ((ulaw_encode, ulaw_decode, ulaw_bound), (alaw_encode, alaw_decode, alaw_bound)):
        codes = encode(x)
        assert codes.dtype == np.uint8 and codes.shape == x.shape
        y = decode(codes)
        assert y.dtype == np.int16 and y.shape == x.shape
        assert (np.abs(y.astype(np.int64) - x) <= bound(x)).all()
        assert (np.sign(y) * np.sign(x) >= 0).all()  # the sign never flips


@settings(max_examples=100, deadline=None)
@given(int16_arrays)
def test_encoding_is_idempotent_through_decode(x):
    # A decoded value is a reconstruction level, so encoding it again lands on the same level.
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        y = decode(encode(x))
        assert (decode(encode(y)) == y).all()


def test_every_code_round_trips():
    assert (alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES).all()
    back = ulaw_encode(ulaw_decode(ALL_CODES))
    # mu-law has two zeros; 0x7F (negative zero) decodes to 0, which encodes as 0xFF.
    assert (back[ALL_CODES != 0x7F] == ALL_CODES[ALL_CODES != 0x7F]).all()
    assert back[0x7F] == 0xFF and ulaw_decode(back[0x7F : 0x80])[0] == ulaw_decode(np.uint8(0x7F))


def test_quantisers_are_monotonic():
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        levels = decode(encode(ALL_INT16)).astype(np.int64)
        assert (np.diff(levels) >= 0).all()
        # and symmetric: x and ~x (= -x - 1) quantise to opposite levels
        assert (levels == -levels[::-1]).all()


# --- Bytes convenience and input handling


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400).map(lambda b: b[: len(b) // 2 * 2]))
def test_bytes_helpers_agree_with_array_functions(pcm):
    x = np.frombuffer(pcm, dtype="<i2")
    assert lin2ulaw(pcm) == ulaw_encode(x).tobytes()
    assert lin2alaw(pcm) == alaw_encode(x).tobytes()
    assert ulaw2lin(lin2ulaw(pcm)) == ulaw_decode(ulaw_encode(x)).astype("<i2").tobytes()
    assert alaw2lin(lin2alaw(pcm)) == alaw_decode(alaw_encode(x)).astype("<i2").tobytes()
    assert len(ulaw2lin(lin2ulaw(pcm))) == len(pcm)


def test_bytes_helpers_known_answers():
    assert lin2ulaw(b"\x00\x00\xff\x7f\x00\x80") == b"\xff\x80\x00"
    assert lin2alaw(b"\x00\x00\xff\x7f\x00\x80") == b"\xd5\xaa\x2a"
    assert ulaw2lin(b"\xff\x80") == (0).to_bytes(2, "little") + (32124).to_bytes(2, "little")
    assert alaw2lin(b"\xd5\x2a") == (8).to_bytes(2, "little") + (-32256).to_bytes(2, "little", signed=True)
    assert lin2ulaw(b"") == b"" and ulaw2lin(b"") == b""


def test_odd_pcm_length_raises():
    with pytest.raises(ValueError):
        lin2ulaw(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        lin2alaw(b"\x00")


def test_inputs_other_than_int16():
    wide = np.array([0, 40000, -40000], dtype=np.int32)  # clipped, never wrapped
    assert ulaw_encode(wide).tolist() == [0xFF, 0x80, 0x00]
    assert alaw_encode(wide).tolist() == [0xD5, 0xAA, 0x2A]
    strided = ALL_INT16[::7]
    assert (ulaw_encode(strided) == ulaw_encode(strided.copy())).all()
    assert (ulaw_decode(bytes([0xFF, 0x80])) == [0, 32124]).all()
    assert (alaw_decode([0xD5]) == [8]).all()
    with pytest.raises(TypeError):
        ulaw_encode(np.array([0.5]))
    with pytest.raises(ValueError):
        alaw_decode(np.array([256]))


def _audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


@pytest.mark.skipif(_audioop() is None, reason="audioop is gone (Python 3.13+)")
def test_agrees_with_audioop_where_audioop_follows_the_reference():
    audioop = _audioop()
    pcm = ALL_INT16.tobytes()
    codes = ALL_CODES.tobytes()
    assert ulaw2lin(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw2lin(codes) == audioop.alaw2lin(codes, 2)
    assert lin2alaw(pcm) == audioop.lin2alaw(pcm, 2)
    theirs = np.frombuffer(audioop.lin2ulaw(pcm, 2), dtype=np.uint8)
    ours = ulaw_encode(ALL_INT16)
    assert (theirs[ALL_INT16 >= 0] == ours[ALL_INT16 >= 0]).all()
    # For negatives audioop shifts before negating (ceil instead of the reference's floor of
    # the one's complement): it equals our encoding of x - 4, one 14-bit step further out.
    neg = ALL_INT16 < 0
    shifted = np.clip(ALL_INT16.astype(np.int32) - 4, -32768, 32767)
    assert (theirs[neg] == ulaw_encode(shifted)[neg]).all()
