"""Low-latency polyphase resampler: exact streaming, frequency response, lag, edges and API."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.audio.generate import tone, white_noise
from callengine.audio.resample import PolyphaseResampler, StreamResampler, resample
from callengine.audio.wav import read_wav

RATES = (8000, 16000, 24000, 48000)
PAIRS = list(itertools.permutations(RATES, 2))
MORE_PAIRS = PAIRS + [(a, b) for a in (32000, 44100) for b in (8000, 16000, 24000, 48000)] + [(16000, 44100), (8000, 32000)]
DATA = Path(__file__).parent.parent / "data"


def stream(rs, x: np.ndarray, sizes) -> np.ndarray:
    """Feed ``x`` through ``rs`` in chunks of the given sizes (cycled), then flush."""
    out, pos = [], 0
    for size in itertools.cycle(sizes):
        if pos >= len(x):
            break
        out.append(rs.process(x[pos : pos + size]))
        pos += size
    out.append(rs.flush())
    return np.concatenate(out)


def one_shot(rs, x: np.ndarray) -> np.ndarray:
    return np.concatenate([rs.process(x), rs.flush()])


def owed(n_in: int, in_rate: int, out_rate: int) -> int:
    return -(-n_in * out_rate // in_rate)


def spectrum_db(x: np.ndarray) -> np.ndarray:
    """Hann-windowed magnitude spectrum in dB relative to a full-scale sine."""
    w = np.hanning(len(x))
    return 20 * np.log10(np.abs(np.fft.rfft(x.astype(np.float64) * w)) / (w.sum() / 2 * 32768) + 1e-15)


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / 32768 + 1e-15)


def middle(x: np.ndarray, rate: int, edge_s: float = 0.05) -> np.ndarray:
    k = int(edge_s * rate)
    return x[k : len(x) - k]


def prototype_response_db(rs: PolyphaseResampler, n_fft: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, gain in dB) of the one FIR at in_rate * L that the polyphase table samples."""
    L, M, P = rs.up, rs.down, rs.taps_per_phase // 2
    table = rs.taps
    h = np.zeros(2 * P * L + 1)
    k, r = np.nonzero(table)
    h[r * M + (P - 1 - k) * L + P * L] = table[k, r]  # tap at t = r*M/L + P - 1 - k input samples
    gain = np.abs(np.fft.rfft(h, n_fft)) / L
    return np.arange(gain.size) * rs.in_rate * L / n_fft, 20 * np.log10(np.maximum(gain, 1e-12))


# ------------------------------------------------------------------ streaming is exact


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(MORE_PAIRS),
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=20).filter(any),
    seed=st.integers(0, 2**16),
)
def test_streamed_random_chunks_equal_one_shot(pair, sizes, seed):
    in_rate, out_rate = pair
    x = white_noise(0.3, in_rate, dbfs=-6, seed=seed)
    expected = one_shot(PolyphaseResampler(in_rate, out_rate), x)
    assert len(expected) == owed(len(x), in_rate, out_rate)
    np.testing.assert_array_equal(stream(PolyphaseResampler(in_rate, out_rate), x, sizes), expected)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 20000), max_size=15))
def test_real_recording_streamed_as_bytes_with_odd_splits(cuts):
    pcm = read_wav(DATA / "vm-tmpexists.wav").pcm[:20000]
    rs = StreamResampler(8000, 16000, low_latency=True)
    bounds = [0, *sorted(cuts), len(pcm)]
    out = [rs.process(pcm[a:b]) for a, b in zip(bounds, bounds[1:])]  # pieces may be odd or empty
    out.append(rs.flush())
    np.testing.assert_array_equal(np.concatenate(out), one_shot(PolyphaseResampler(8000, 16000), np.frombuffer(pcm, "<i2")))


@settings(max_examples=30, deadline=None)
@given(pair=st.sampled_from(PAIRS), n=st.integers(0, 3000))
def test_flush_completes_the_exact_length(pair, n):
    in_rate, out_rate = pair
    rs = PolyphaseResampler(in_rate, out_rate)
    x = white_noise(1.0, in_rate, dbfs=-20, seed=n)[:n]
    body = rs.process(x)
    pending = rs.pending_samples
    tail = rs.flush()
    assert len(tail) == pending
    assert len(body) + len(tail) == owed(n, in_rate, out_rate)
    assert rs.pending_samples == 0 and len(rs.flush()) == 0


def test_no_drift_over_a_long_call():
    """Ten minutes of 20 ms chunks: the output count never strays from in_len * L / M."""
    rs = PolyphaseResampler(8000, 24000)
    chunk = np.zeros(160, dtype=np.int16)
    produced = 0
    for i in range(1, 30_001):
        produced += len(rs.process(chunk))
        assert owed(160 * i, 8000, 24000) - produced == rs.pending_samples == 81  # 27 inputs * 3
    assert produced + len(rs.flush()) == 600 * 24000


# ------------------------------------------------------------------ frequency response


@pytest.mark.parametrize(("in_rate", "out_rate"), MORE_PAIRS)
def test_filter_passband_flat_and_stopband_deep(in_rate, out_rate):
    rs = PolyphaseResampler(in_rate, out_rate)
    f, db = prototype_response_db(rs)
    nyquist = min(in_rate, out_rate) / 2
    passband = db[f <= 0.85 * nyquist]
    assert passband.max() - passband.min() < 0.02  # measured < 0.01 dB peak to peak
    assert db[f >= nyquist].max() < -65  # measured <= -65.6 dB


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
@settings(max_examples=4, deadline=None)
@given(fraction=st.floats(0.02, 0.42))
def test_sine_keeps_frequency_and_level(in_rate, out_rate, fraction):
    freq = round(fraction * min(in_rate, out_rate), 1)  # up to 0.84 of the lower Nyquist
    x = tone(freq, 1.0, in_rate, dbfs=-12)
    y = stream(PolyphaseResampler(in_rate, out_rate), x, [in_rate // 50])
    assert y.dtype == np.int16 and len(y) == out_rate
    mid = middle(y, out_rate)
    spec = spectrum_db(mid)
    bin_hz = out_rate / len(mid)
    assert abs(np.argmax(spec) * bin_hz - freq) <= bin_hz
    assert abs(rms_db(mid) - rms_db(middle(x, in_rate))) < 0.5
    # images (upsampling) and anything else away from the tone: >= 60 dB down
    far = np.abs(np.arange(len(spec)) * bin_hz - freq) > 100
    assert spec[far].max() < spec.max() - 60


@pytest.mark.parametrize(("in_rate", "out_rate"), [(a, b) for a, b in PAIRS if a > b])
@settings(max_examples=4, deadline=None)
@given(fraction=st.floats(0.0, 1.0))
def test_tone_above_the_target_nyquist_is_rejected(in_rate, out_rate, fraction):
    """Downsampling: a tone between the output's Nyquist and the input's would alias."""
    freq = round(out_rate / 2 + fraction * 0.95 * (in_rate - out_rate) / 2, 1)
    x = tone(freq, 0.5, in_rate, dbfs=-3)
    y = stream(PolyphaseResampler(in_rate, out_rate), x, [in_rate // 50])
    assert rms_db(middle(y, out_rate)) < rms_db(x) - 60


# ------------------------------------------------------------------ delay and lag


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_is_aligned_and_lags_only_the_group_delay(in_rate, out_rate):
    rs = PolyphaseResampler(in_rate, out_rate)
    assert rs.delay_ms <= 3.5
    # aligned: the same as soxr's delay-compensated one-shot output, at lag 0
    x = white_noise(0.5, in_rate, dbfs=-20, seed=7)
    ours = stream(rs, x, [in_rate // 50]).astype(np.float64)
    ref = resample(x, in_rate, out_rate).astype(np.float64)
    n = min(len(ours), len(ref))
    lags = np.arange(-40, 41)
    xc = [np.dot(ours[100 + k : n - 100 + k], ref[100 : n - 100]) for k in lags]
    assert lags[int(np.argmax(xc))] == 0
    # lag per 20 ms chunk: always the group delay (never bursts)
    lag_ms = []
    for i in range(0, len(x), in_rate // 50):
        rs.process(x[i : i + in_rate // 50])
        lag_ms.append(rs.pending_samples * 1000 / out_rate)
    assert max(lag_ms) <= rs.delay_ms + 1000 / out_rate
    # an impulse comes out as soon as the filter's half-length of input follows it
    rs.reset()
    click = np.zeros(in_rate // 10, dtype=np.int16)
    click[in_rate // 20] = 20000
    half = rs.taps_per_phase // 2
    got = rs.process(click[: in_rate // 20 + half + 1])
    peak_at = round(in_rate // 20 * out_rate / in_rate)
    assert len(got) > peak_at and np.argmax(np.abs(got)) == peak_at


def test_much_less_lag_than_soxr():
    x = white_noise(2.0, 8000, dbfs=-20, seed=3)
    low, high = StreamResampler(8000, 16000, low_latency=True), StreamResampler(8000, 16000)
    lag_low, lag_high = [], []
    for i in range(0, len(x), 160):
        low.process(x[i : i + 160])
        high.process(x[i : i + 160])
        lag_low.append(low.pending_samples / 16)
        lag_high.append(high.pending_samples / 16)
    assert max(lag_low) < 3.5
    assert np.median(lag_high) > 10 * max(lag_low)


# ------------------------------------------------------------------ edges


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_silence_stays_digital_silence_and_dc_stays_exact(in_rate, out_rate):
    assert not stream(PolyphaseResampler(in_rate, out_rate), np.zeros(2000, dtype=np.int16), [160]).any()
    for level in (32767, -32768, 1234):
        y = stream(PolyphaseResampler(in_rate, out_rate), np.full(3000, level, dtype=np.int16), [333])
        settled = y[len(y) // 4 : len(y) // 2]  # away from the step at either end
        assert (settled == level).all()


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (16000, 8000), (8000, 48000)])
def test_full_scale_overshoot_clips_instead_of_wrapping(in_rate, out_rate):
    period = in_rate // 100
    square = np.where(np.arange(in_rate) // (period // 2) % 2 == 0, 32767, -32768).astype(np.int16)
    halved = (square // 2).astype(np.int16)  # same shape at half scale: never clips
    y = stream(PolyphaseResampler(in_rate, out_rate), square, [160])
    twice_half = 2 * stream(PolyphaseResampler(in_rate, out_rate), halved, [160]).astype(np.int64)
    assert (twice_half > 32767 + 4).any() and (twice_half < -32768 - 4).any()  # Gibbs overshoot
    assert (y[twice_half > 32767 + 4] == 32767).all()
    assert (y[twice_half < -32768 - 4] == -32768).all()
    inside = (twice_half > -32768 + 4) & (twice_half < 32767 - 4)
    assert np.abs(y[inside] - twice_half[inside]).max() <= 4  # linear where it does not clip


def test_reuse_after_flush_and_reset_is_a_clean_restart():
    x = white_noise(0.2, 8000, dbfs=-10, seed=1)
    fresh = stream(PolyphaseResampler(8000, 24000), x, [160])
    rs = PolyphaseResampler(8000, 24000)
    stream(rs, tone(1000, 0.3, 8000, dbfs=-3), [160])  # ends with flush
    np.testing.assert_array_equal(stream(rs, x, [160]), fresh)
    rs.process(tone(1000, 0.3, 8000, dbfs=-3))
    rs.process(b"\x01")  # half a sample
    rs.reset()
    assert rs.pending_samples == 0
    np.testing.assert_array_equal(stream(rs, x, [160]), fresh)


# ------------------------------------------------------------------ API


def test_stream_resampler_low_latency_delegates():
    x = white_noise(0.3, 16000, dbfs=-10, seed=5)
    rs = StreamResampler(16000, 8000, low_latency=True)
    assert rs.low_latency and not rs.passthrough and "low_latency=True" in repr(rs)
    first = rs.process(x[:320])
    assert rs.pending_samples == 160 - len(first) > 0
    got = np.concatenate([first, rs.process(x[320:]), rs.flush()])
    np.testing.assert_array_equal(got, one_shot(PolyphaseResampler(16000, 8000), x))
    assert not StreamResampler(16000, 8000).low_latency  # soxr stays the default
    same = StreamResampler(16000, 16000, low_latency=True)
    assert same.passthrough
    np.testing.assert_array_equal(same.process(x), x)
    assert same.pending_samples == 0 and len(same.flush()) == 0


def test_passthrough_copies():
    x = white_noise(0.1, 8000, dbfs=-6, seed=3)
    rs = PolyphaseResampler(8000, 8000)
    assert rs.passthrough and rs.delay_ms == 0
    y = rs.process(x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    pcm = x.tobytes()
    assert np.concatenate([rs.process(pcm[:5]), rs.process(pcm[5:])]).tobytes() == pcm


def test_design_attributes_and_options():
    rs = PolyphaseResampler(8000, 16000)
    assert (rs.up, rs.down, rs.taps_per_phase) == (2, 1, 54)
    assert rs.delay_ms == pytest.approx(3.375)
    assert rs.taps.shape == (54, 2)
    np.testing.assert_allclose(rs.taps.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    short = PolyphaseResampler(8000, 16000, taps_per_phase=16)
    assert short.taps_per_phase == 16 and short.delay_ms == 1.0
    assert "taps_per_phase=16" in repr(short)
    wider = PolyphaseResampler(16000, 8000, passband=0.9, stopband=1.0, attenuation_db=60)
    f, db = prototype_response_db(wider)
    assert db[f <= 3600].min() > -0.02 and db[f >= 4000].max() < -58


def test_bad_arguments_are_rejected():
    for bad in (0, -8000, 8000.5, True, "8000"):
        with pytest.raises(ValueError):
            PolyphaseResampler(bad, 16000)
    with pytest.raises(ValueError):
        PolyphaseResampler(8000, 16000, passband=1.0, stopband=0.9)
    with pytest.raises(ValueError):
        PolyphaseResampler(8000, 16000, attenuation_db=5)
    with pytest.raises(ValueError):
        PolyphaseResampler(8000, 16000, taps_per_phase=1)
    with pytest.raises(ValueError, match="too many phases"):
        PolyphaseResampler(8000, 8001)  # 8001/8000: use soxr for that
    rs = PolyphaseResampler(8000, 16000)
    with pytest.raises(TypeError):
        rs.process(np.zeros(4, dtype=np.float32))
    rs.process(b"\x00")
    with pytest.raises(ValueError):  # an array cannot complete half a sample
        rs.process(np.zeros(2, dtype=np.int16))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (24000, 16000), (44100, 16000), (16000, 16000)])
def test_delay_samples_is_the_look_ahead_in_input_samples(in_rate, out_rate):
    rs = PolyphaseResampler(in_rate, out_rate)
    assert rs.delay_samples == round(rs.delay_ms * in_rate / 1000)
    assert StreamResampler(in_rate, out_rate, low_latency=True).delay_samples == rs.delay_samples
    # all output up to (input - delay_samples) is out after any chunk
    x = np.arange(1000, dtype=np.int16)
    owed = -((-(len(x) - rs.delay_samples) * rs.up) // rs.down) if not rs.passthrough else len(x)
    assert len(rs.process(x)) == owed
    assert StreamResampler(in_rate, out_rate).delay_samples == (0 if in_rate == out_rate else None)


def test_filter_designs_are_shared_not_redone_per_resampler():
    """Designing 44100 -> 16000 (160/441 phases) took milliseconds at every call start."""
    a, b = PolyphaseResampler(44100, 16000), PolyphaseResampler(44100, 16000)
    assert a._coefs is b._coefs and not a._coefs.flags.writeable
    assert PolyphaseResampler(44100, 16000, attenuation_db=70)._coefs is not a._coefs
    x = np.arange(-3000, 3000, 7, dtype=np.int16)
    assert np.array_equal(a.process(x), b.process(x))  # sharing the table shares no state
