"""PCM16 <-> numpy conversions: exact round trips, clipping that never wraps, odd lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from callengine.audio.pcm import (
    as_pcm16,
    dbfs,
    float32_to_pcm16,
    float_to_int16,
    int16_to_pcm16,
    pcm16_to_float32,
    pcm16_to_int16,
)

even_bytes = st.binary(max_size=512).map(lambda b: b[: len(b) // 2 * 2])


@settings(max_examples=200, deadline=None)
@given(even_bytes)
def test_bytes_int16_bytes_round_trip(pcm):
    samples = pcm16_to_int16(pcm)
    assert samples.dtype == np.dtype("<i2") and len(samples) == len(pcm) // 2
    assert int16_to_pcm16(samples) == pcm
    assert as_pcm16(samples) == pcm
    assert as_pcm16(pcm) == pcm


@settings(max_examples=200, deadline=None)
@given(even_bytes)
def test_bytes_float_bytes_round_trip_is_exact(pcm):
    x = pcm16_to_float32(pcm)
    assert x.dtype == np.float32
    assert ((x >= -1.0) & (x < 1.0)).all()
    assert float32_to_pcm16(x) == pcm  # k / 32768 is exact in float32, so this is lossless


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 64), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_float_conversion_clips_and_never_wraps(x):
    y = float_to_int16(x)
    assert y.dtype == np.int16
    finite = np.isfinite(x)
    assert (y[finite & (x >= 1.0)] == 32767).all()
    assert (y[finite & (x <= -1.0)] == -32768).all()
    assert (y[np.isnan(x)] == 0).all()
    assert (y[x == np.inf] == 32767).all() and (y[x == -np.inf] == -32768).all()
    # the sign survives: a positive input never becomes a negative sample, and vice versa
    assert (y[finite & (x > 0)] >= 0).all() and (y[finite & (x < 0)] <= 0).all()


def test_clipping_known_values():
    assert float_to_int16(np.array([1.5, -2.0, 1.0, -1.0, 0.5, 0.0])).tolist() == [32767, -32768, 32767, -32768, 16384, 0]
    assert np.frombuffer(float32_to_pcm16(np.array([1.5, -2.0], dtype=np.float32)), "<i2").tolist() == [32767, -32768]
    # Regression: huge finite values overflowed the scaling multiply (RuntimeWarning) before clipping.
    assert float_to_int16(np.array([1e305, -1e305])).tolist() == [32767, -32768]
    wide = np.array([40000, -40000, 70000, 5], dtype=np.int64)
    assert np.frombuffer(int16_to_pcm16(wide), "<i2").tolist() == [32767, -32768, 32767, 5]


@pytest.mark.parametrize("odd", [b"\x00", b"\x00\x01\x02", bytearray(5), memoryview(b"abc")])
def test_odd_byte_counts_raise(odd):
    with pytest.raises(ValueError):
        pcm16_to_int16(odd)
    with pytest.raises(ValueError):
        pcm16_to_float32(odd)
    with pytest.raises(ValueError):
        as_pcm16(odd)


def test_memoryview_of_wider_items_counts_bytes():
    """Regression: len() of a memoryview over int16 counts items, so 3 samples looked odd."""
    samples = np.array([1, -2, 3], dtype=np.int16)
    assert pcm16_to_int16(memoryview(samples)).tolist() == [1, -2, 3]


def test_float_samples_are_refused_where_scaling_is_ambiguous():
    with pytest.raises(TypeError):
        int16_to_pcm16(np.array([0.5]))
    assert as_pcm16(np.array([0.5], dtype=np.float32)) == (16384).to_bytes(2, "little")


def test_big_endian_arrays_are_written_little_endian():
    assert int16_to_pcm16(np.array([1, -2], dtype=">i2")) == b"\x01\x00\xfe\xff"


def test_dbfs():
    assert dbfs(np.zeros(100, dtype=np.int16)) == -math.inf
    assert dbfs(np.zeros(0)) == -math.inf
    assert dbfs(np.full(100, -32768, dtype=np.int16)) == pytest.approx(0.0)
    t = np.arange(8000) / 8000
    sine = np.sin(2 * np.pi * 100 * t)  # full-scale sine: RMS 1/sqrt(2), -3.01 dBFS
    assert dbfs(sine) == pytest.approx(-3.0103, abs=1e-3)
    assert dbfs(float_to_int16(0.1 * sine)) == pytest.approx(-23.0103, abs=1e-2)
