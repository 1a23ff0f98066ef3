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
    to_mono,
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


# --- as_pcm16: what call.play() accepts ------------------------------------------------


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2")


def _sine(n: int = 8000, peak: float = 0.9) -> np.ndarray:
    return peak * np.sin(2 * np.pi * 440 * np.arange(n) / 8000)


def test_float_at_int16_scale_is_refused_not_played_as_a_square_wave():
    """Regression: float samples at int16 scale were clipped, 78% of them to full scale."""
    loud = _sine(peak=0.9) * 32768
    with pytest.raises(ValueError, match="divide by 32768"):
        as_pcm16(loud)
    with pytest.raises(ValueError, match="divide by 32768"):
        as_pcm16(loud.astype(np.float32))
    assert _samples(as_pcm16(loud / 32768)).tolist() == float_to_int16(loud / 32768).tolist()


def test_int32_is_scaled_not_clipped_to_a_square_wave():
    """Regression: int32 samples (32-bit WAV, TTS SDKs) were clipped to +-32767."""
    x = float_to_int16(_sine()).astype(np.int32) << 16
    assert as_pcm16(x) == float_to_int16(_sine()).tobytes()
    y = _samples(as_pcm16(np.array([2**31 - 1, -(2**31), 0, 0x8000, 0x7FFF, -0x8000, -0x8001, 65536 * 5 + 1], np.int32)))
    # the top of the range rounds to 32767, never wraps; halves round up
    assert y.tolist() == [32767, -32768, 0, 1, 0, 0, -1, 5]


def test_stereo_is_refused_not_played_as_mono_at_twice_the_length():
    """Regression: an (n, 2) array was flattened, interleaving the channels into one stream."""
    stereo = np.stack([float_to_int16(_sine()), float_to_int16(_sine(peak=0.5))], axis=1)
    with pytest.raises(ValueError, match=r"to_mono\(samples, channel_axis=-1\)"):
        as_pcm16(stereo)
    with pytest.raises(ValueError, match=r"to_mono\(samples, channel_axis=0\)"):
        as_pcm16(stereo.T)
    with pytest.raises(ValueError, match="to_mono"):
        as_pcm16(stereo.astype(np.float32) / 32768)
    with pytest.raises(ValueError, match="to_mono"):
        as_pcm16(np.zeros((4, 2, 2), np.int16))
    assert len(as_pcm16(to_mono(stereo))) == 2 * len(stereo)


def test_bytes_and_int16_keep_their_fast_path():
    pcm = bytes(range(16))
    assert as_pcm16(pcm) is pcm  # no copy
    assert as_pcm16(bytearray(pcm)) == pcm and as_pcm16(memoryview(pcm)) == pcm
    x = np.arange(-4, 4, dtype=np.int16)
    assert as_pcm16(x) == x.tobytes()
    assert as_pcm16(x.astype(">i2")) == x.tobytes()
    assert as_pcm16(x[::2]) == x[::2].tobytes()  # strided views are written in order
    assert as_pcm16(np.zeros(0, np.int16)) == b""


def test_uint8_is_converted_from_offset_binary():
    assert _samples(as_pcm16(np.array([0, 128, 255, 129], np.uint8))).tolist() == [-32768, 0, 32512, 256]


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.int8, np.uint32, np.uint64])
def test_other_integer_types_are_refused(dtype):
    with pytest.raises(TypeError, match=r"int16.*float in \[-1, 1\]"):
        as_pcm16(np.array([1, 2, 3], dtype=dtype))


@pytest.mark.parametrize("value", [np.array([True]), np.array([1 + 1j]), np.array(["a"]), np.array([None])])
def test_non_numeric_arrays_are_refused(value):
    with pytest.raises(TypeError):
        as_pcm16(value)


@pytest.mark.parametrize("value", [[1, 2], (0.5,), 4, "ab", None, 1.5])
def test_non_buffers_are_refused(value):
    """``bytes(4)`` is four zero bytes and ``bytes([1, 2])`` two bytes: no silent guesses."""
    with pytest.raises(TypeError, match="np.asarray"):
        as_pcm16(value)


def test_typed_buffers_are_read_by_value():
    import array

    assert as_pcm16(array.array("h", [1, -2])) == np.array([1, -2], np.int16).tobytes()
    assert as_pcm16(array.array("f", [0.5, -0.5])) == np.array([16384, -16384], np.int16).tobytes()
    assert as_pcm16(memoryview(np.array([3, 4], np.int16))) == np.array([3, 4], np.int16).tobytes()
    with pytest.raises(TypeError):
        as_pcm16(array.array("q", [1]))


@pytest.mark.parametrize("peak", [1.0, 1.01, 1.05])
def test_float_overshoot_from_resampling_is_clipped(peak):
    x = np.array([peak, -peak, 0.25])
    assert _samples(as_pcm16(x)).tolist() == [32767, -32768, 8192]


@pytest.mark.parametrize("peak", [1.06, 1.5, 2.0, 40000.0, 1e300])
def test_float_beyond_the_overshoot_is_refused(peak):
    with pytest.raises(ValueError, match=r"\[-1, 1\]") as info:
        as_pcm16(np.array([0.0, -peak]))
    assert ("divide by 32768" in str(info.value)) == (2 < peak <= 32768)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused(bad):
    with pytest.raises(ValueError, match="NaN or infinity"):
        as_pcm16(np.array([0.0, bad, 0.5]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        as_pcm16(np.array([0.0, bad, 0.5], np.float32))


@pytest.mark.parametrize("shape", [(5, 1), (1, 5), (1, 1), (0, 1), (1, 0)])
def test_single_channel_2d_shapes_are_squeezed(shape):
    x = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    assert as_pcm16(x) == x.reshape(-1).tobytes()
    assert as_pcm16(x.astype(np.float64) / 32768) == x.reshape(-1).tobytes()


def test_scalars_are_refused():
    with pytest.raises(ValueError, match="scalar"):
        as_pcm16(np.array(0.5))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int16, st.integers(0, 64)))
def test_int32_holding_int16_shifted_up_round_trips(x):
    assert as_pcm16(x.astype(np.int32) << 16) == x.tobytes()


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int32, st.integers(0, 64)))
def test_int32_is_the_rounded_top_16_bits(x):
    expected = np.minimum(np.floor(x.astype(np.float64) / 65536 + 0.5), 32767).astype(np.int16)
    assert _samples(as_pcm16(x)).tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        st.integers(0, 64),
        elements=st.floats(-1.0498046875, 1.0498046875, width=16),  # 1.05 as near as float16 gets
    )
)
def test_float_within_the_tolerance_is_scaled_and_clipped(x):
    assert as_pcm16(x) == float_to_int16(x).tobytes()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(-1.0, 1.0)),
    st.floats(1.0501, 1e6),
    st.integers(0, 63),
)
def test_float_with_any_sample_beyond_the_tolerance_is_refused(x, peak, where):
    x[where % len(x)] = peak if where % 2 else -peak
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        as_pcm16(x)


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.int16, np.int32, np.uint8, np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        elements=st.integers(0, 1),
    )
)
def test_any_shape_is_mono_or_refused(a):
    """A shape with at most one axis longer than 1 (in 1 or 2 dims) plays; others raise."""
    if a.ndim == 1 or (a.ndim == 2 and 1 in a.shape):
        assert as_pcm16(a) == as_pcm16(a.reshape(-1))
        assert len(as_pcm16(a)) == 2 * a.size
    else:
        with pytest.raises(ValueError):
            as_pcm16(a)


# --- to_mono ------------------------------------------------------------------------


def test_to_mono_averages_channels():
    stereo = np.array([[100, 300], [-3, -4], [32767, 32767], [-32768, -32768]], np.int16)
    mono = to_mono(stereo)
    assert mono.dtype == np.int16 and mono.tolist() == [200, -4, 32767, -32768]  # -3.5 rounds to even
    assert to_mono(stereo.T, channel_axis=0).tolist() == mono.tolist()
    f = to_mono(np.array([[0.5, -0.5], [1.0, 0.0]], np.float32))
    assert f.dtype == np.float32 and f.tolist() == [0.0, 0.5]
    assert to_mono(np.array([[1 << 30, 1 << 30]], np.int32)).tolist() == [1 << 30]  # no overflow
    assert to_mono(np.zeros((3, 1), np.int16)).shape == (3,)
    x = np.arange(4, dtype=np.int16)
    assert to_mono(x) is x  # already mono


def test_to_mono_refuses_what_it_cannot_mix():
    with pytest.raises(ValueError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="no channels"):
        to_mono(np.zeros((4, 0)))
    with pytest.raises(TypeError):
        to_mono(np.zeros((4, 2), dtype=complex))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int16, st.tuples(st.integers(0, 32), st.integers(1, 6))))
def test_to_mono_of_identical_channels_is_the_channel(x):
    same = np.repeat(x[:, :1], x.shape[1], axis=1)
    assert to_mono(same).tolist() == x[:, 0].tolist()
    assert as_pcm16(to_mono(same)) == x[:, 0].tobytes()
