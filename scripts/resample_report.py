"""Compare the low-latency polyphase resampler with the soxr stream: filter, lag and CPU.

    python scripts/resample_report.py [--rates 8000 16000 24000 48000] [--chunk-ms 20] [--seconds 10]

For every ordered pair of rates:
  taps       input samples per output sample (2P) of the PolyphaseResampler
  delay ms   its group delay P / in_rate (the output is aligned; this is how far it lags)
  ripple dB  passband ripple (peak-to-peak over 0 .. passband edge) of the filter as built
             (integer taps, every phase normalised to unity DC gain)
  stop dB    worst attenuation from the stopband edge up (aliases and images)
  lag ms     pending_samples after each chunk of white noise, median / max (poly, soxr HQ)
  us/chunk   median CPU per process() call over the stream (poly, soxr HQ), same run
The filter figures come from the prototype response: every phase's taps interleaved into one
FIR at in_rate * L, whose spectrum is evaluated on a fine grid.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callengine.audio.generate import white_noise  # noqa: E402
from callengine.audio.resample import PolyphaseResampler, StreamResampler  # noqa: E402


def prototype(rs: PolyphaseResampler) -> np.ndarray:
    """The single FIR at rate in_rate * L that the polyphase table samples (DC gain L)."""
    L, M, P = rs.up, rs.down, rs.taps_per_phase // 2
    table = rs.taps
    h = np.zeros(2 * P * L + 1)
    for r in range(L):
        for k in np.flatnonzero(table[:, r]):
            m = r * M + (P - 1 - k) * L  # t * L, t = r*M/L + P - 1 - k input samples
            h[m + P * L] = table[k, r]
    return h


def response(rs: PolyphaseResampler) -> tuple[float, float]:
    """(passband ripple peak-to-peak in dB, worst stopband attenuation in dB)."""
    h = prototype(rs)
    fs = rs.in_rate * rs.up
    n = 1 << 20
    mag = np.abs(np.fft.rfft(h, n)) / rs.up
    f = np.arange(mag.size) * fs / n
    nyq = min(rs.in_rate, rs.out_rate) / 2
    db = 20 * np.log10(np.maximum(mag, 1e-12))
    passband = db[f <= rs.passband * nyq]
    return float(passband.max() - passband.min()), float(-db[f >= rs.stopband * nyq].max())


def stream(rs, x: np.ndarray, chunk: int) -> tuple[list[float], list[float]]:
    lags, costs = [], []
    for i in range(0, len(x) - chunk + 1, chunk):
        piece = x[i : i + chunk]
        t0 = time.perf_counter()
        rs.process(piece)
        costs.append((time.perf_counter() - t0) * 1e6)
        lags.append(rs.pending_samples * 1000 / rs.out_rate)
    return lags, costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[8000, 16000, 24000, 48000])
    ap.add_argument("--chunk-ms", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"{'in':>6} {'out':>6} {'taps':>5} {'delay ms':>8} {'ripple dB':>9} {'stop dB':>7}"
          f" {'lag ms poly':>12} {'lag ms soxr':>12} {'us poly':>8} {'us soxr':>8}")
    for a, b in itertools.permutations(args.rates, 2):
        poly = PolyphaseResampler(a, b)
        ripple, stop = response(poly)
        x = white_noise(args.seconds, a, dbfs=-20, seed=a + b)
        chunk = int(round(args.chunk_ms / 1000 * a))
        stream(PolyphaseResampler(a, b), x[: 50 * chunk], chunk)  # warm up
        stream(StreamResampler(a, b), x[: 50 * chunk], chunk)
        plag, pcost = stream(poly, x, chunk)
        slag, scost = stream(StreamResampler(a, b), x, chunk)
        print(
            f"{a:>6} {b:>6} {poly.taps_per_phase:>5} {poly.delay_ms:>8.2f} {ripple:>9.4f} {stop:>7.1f}"
            f" {statistics.median(plag):>5.1f}/{max(plag):>5.1f} {statistics.median(slag):>5.1f}/{max(slag):>5.1f}"
            f" {statistics.median(pcost):>8.1f} {statistics.median(scost):>8.1f}"
        )


if __name__ == "__main__":
    main()
