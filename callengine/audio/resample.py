"""Sample-rate conversion with soxr: a streaming resampler that carries state across chunks.

Resampling each chunk on its own restarts the filter at every boundary, which clicks
(design notes, section 7). :class:`StreamResampler` keeps one soxr stream per direction
and is reset only at stream boundaries (:meth:`~StreamResampler.flush`) or after a clear
(:meth:`~StreamResampler.reset`).

soxr runs in float32 here, not int16, on purpose. With int16 I/O libsoxr adds TPDF dither
to its output: silence comes out as +-1 LSB noise, two identical streams differ, and
streamed output differs from one-shot output by up to 2 LSB. In float32 the stream is
bit-identical to :func:`resample` on the whole signal however the input is chunked; we
round and clip to int16 ourselves (int16 -> float32 is exact).

Latency: libsoxr works in internal blocks, so output arrives in bursts and lags the input.
With the default "HQ" quality the lag of 20 ms chunks peaks at roughly 115 ms for 8 <-> 16 kHz
and 175 ms for 8 -> 48 kHz (mean about half that); "LQ" peaks near 60 ms; "QQ" (cubic, no
anti-alias filter) has almost none. :attr:`StreamResampler.pending_samples` says how much
output is currently held back.

For live audio, :class:`PolyphaseResampler` (or ``StreamResampler(..., low_latency=True)``)
is a numpy polyphase FIR for rational ratios: a Kaiser-windowed sinc whose passband ends at
0.85 of the lower rate's Nyquist frequency (3.4 kHz at 8 kHz, the top of the telephone band)
and whose stopband (>= 65 dB) starts at that Nyquist frequency, so nothing aliases. Its lag
is the filter's half-length, about 3.4 ms when 8 kHz is involved (1.7 ms for 16 <-> 24 kHz),
and it does not come in bursts: every chunk returns all the output its filter can compute.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

__all__ = ["StreamResampler", "PolyphaseResampler", "resample", "QUALITIES"]

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

_INT16 = np.dtype("<i2")
_EMPTY_F32 = np.zeros(0, dtype=np.float32)
_EMPTY_F32.flags.writeable = False


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    return int(rate)


def _check_quality(quality: str) -> str:
    q = str(quality).upper()
    if q not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    return q


def _byte_view(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """Bytes-like data as something whose len() counts bytes (a memoryview may count items)."""
    if isinstance(data, memoryview) and (data.itemsize != 1 or data.ndim != 1):
        return data.cast("B")
    return data


def _samples(audio) -> np.ndarray:
    """PCM16LE bytes or an integer array -> 1-D int16 samples (wider integers are clipped)."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        audio = _byte_view(audio)
        if len(audio) % 2:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(audio)}")
        return np.frombuffer(audio, dtype=_INT16)
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected int16 samples, got {a.dtype} (convert floats with pcm.float_to_int16)")
    if a.dtype != np.int16:
        a = np.clip(a, -32768, 32767).astype(np.int16)
    return a


def _to_int16(y: np.ndarray) -> np.ndarray:
    """soxr's float32 output -> int16, rounded and clipped (filter overshoot never wraps)."""
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _next_chunk(odd: bytes, audio) -> tuple[np.ndarray, bytes]:
    """The samples of the next chunk and the new odd-byte carry.

    ``odd`` is a trailing half sample left by earlier bytes input; bytes complete it, and a
    new odd trailing byte is carried in turn. An array cannot complete half a sample.
    """
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = odd + bytes(audio) if odd else _byte_view(audio)
        n = len(data)
        if n % 2:
            return np.frombuffer(data[: n - 1], dtype=_INT16), bytes(data[n - 1 :])
        return np.frombuffer(data, dtype=_INT16), b""
    if odd:
        raise ValueError("half a sample is pending from bytes input; keep feeding bytes")
    return _samples(audio), b""


def resample(samples, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """Resample a whole signal in one go: int16 samples or PCM16LE bytes -> int16 samples.

    The output has about ``len(samples) * out_rate / in_rate`` samples, aligned in time with
    the input (soxr compensates its filter delay).
    """
    in_rate = _check_rate("in_rate", in_rate)
    out_rate = _check_rate("out_rate", out_rate)
    quality = _check_quality(quality)
    x = _samples(samples)
    if in_rate == out_rate:
        return np.array(x, dtype=np.int16)
    if x.size == 0:
        return np.zeros(0, dtype=np.int16)
    return _to_int16(soxr.resample(x.astype(np.float32), in_rate, out_rate, quality))


class StreamResampler:
    """Resample one continuous mono PCM16 stream chunk by chunk, keeping filter state.

    Feed chunks of any size to :meth:`process`; the concatenation of everything it returns
    plus :meth:`flush` equals :func:`resample` on the concatenated input, sample for sample.
    When ``in_rate == out_rate`` it passes samples straight through.

    With ``low_latency=True`` the work is done by a :class:`PolyphaseResampler` instead of
    soxr (``quality`` is then only validated): a lag of a few ms instead of tens, and
    streamed output equals that resampler's own one-shot output rather than :func:`resample`.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ", low_latency: bool = False) -> None:
        self.in_rate = _check_rate("in_rate", in_rate)
        self.out_rate = _check_rate("out_rate", out_rate)
        self.quality = _check_quality(quality)
        self.low_latency = bool(low_latency)
        self._poly = PolyphaseResampler(self.in_rate, self.out_rate) if self.low_latency else None
        self._stream = (
            None
            if self.in_rate == self.out_rate or self._poly is not None
            else soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=self.quality)
        )
        self._odd = b""  # a trailing half sample from bytes input, completed by the next chunk
        self._in_total = 0
        self._out_total = 0

    def __repr__(self) -> str:
        extra = ", low_latency=True" if self.low_latency else ""
        return f"StreamResampler({self.in_rate}, {self.out_rate}, quality={self.quality!r}{extra})"

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples are copied through untouched."""
        return self.in_rate == self.out_rate

    @property
    def delay_samples(self) -> int | None:
        """With ``low_latency``, the polyphase filter's fixed look-ahead in input samples
        (:attr:`PolyphaseResampler.delay_samples`); 0 when passing through; None for soxr,
        whose lag varies from chunk to chunk."""
        if self._poly is not None:
            return self._poly.delay_samples
        return 0 if self._stream is None else None

    @property
    def pending_samples(self) -> int:
        """Output samples owed for the input seen so far but not yet returned (the lag)."""
        if self._poly is not None:
            return self._poly.pending_samples
        return max(0, round(self._in_total * self.out_rate / self.in_rate) - self._out_total)

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        """Resample the next chunk: PCM16LE bytes (any length) or int16 samples -> int16 samples.

        With bytes, an odd trailing byte is kept and joined to the next chunk. The output may
        be shorter than the ratio suggests, or empty: soxr holds back its filter delay until
        more input or :meth:`flush` arrives.
        """
        if self._poly is not None:
            return self._poly.process(audio)
        x, self._odd = _next_chunk(self._odd, audio)
        self._in_total += x.size
        if self._stream is None:
            y = np.array(x, dtype=np.int16)
        else:
            y = _to_int16(self._stream.resample_chunk(x.astype(np.float32)))
        self._out_total += y.size
        return y

    def flush(self) -> np.ndarray:
        """End the stream: return the held-back tail, then reset so the object can be reused.

        A pending odd byte (half a sample) is dropped.
        """
        if self._poly is not None:
            return self._poly.flush()
        if self._stream is None:
            tail = np.zeros(0, dtype=np.int16)
        else:
            tail = _to_int16(self._stream.resample_chunk(_EMPTY_F32, last=True))
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop all state (held-back audio, pending odd byte), e.g. after a clear."""
        if self._poly is not None:
            self._poly.reset()
        if self._stream is not None:
            self._stream.clear()
        self._odd = b""
        self._in_total = 0
        self._out_total = 0


# ====================================================================== low-latency polyphase FIR

#: Coefficients are integers scaled by 2**_COEF_BITS (each output's taps sum to exactly that).
#: With int16 input every product and partial sum is an integer below 2**53, so float64
#: arithmetic is exact in any order: streamed output cannot differ from one-shot output
#: however numpy or BLAS blocks, vectorises or fuses the sums.
_COEF_BITS = 24
_COEF_SCALE = float(2**_COEF_BITS)
_MAX_TABLE = 1 << 22  # coefficients in the per-cycle table (32 MiB); beyond that the ratio is too awkward


def _kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stopband attenuation in dB (Kaiser's empirical formula)."""
    a = attenuation_db
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a >= 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


_DESIGNS: dict[tuple, np.ndarray] = {}
_DESIGNS_MAX_ENTRIES = 1 << 23  # coefficients kept across all cached tables (64 MiB)


def _design(up: int, down: int, half: int, cutoff: float, attenuation_db: float) -> np.ndarray | None:
    """:func:`_design_table`, cached while the cached tables stay small: an awkward ratio
    such as 44100 -> 16000 (160/441) takes milliseconds to design, which would otherwise be
    spent at every call start."""
    key = (up, down, half, cutoff, attenuation_db)
    table = _DESIGNS.get(key)
    if table is None:
        table = _design_table(*key)
        if table is not None and sum(t.size for t in _DESIGNS.values()) + table.size <= _DESIGNS_MAX_ENTRIES:
            _DESIGNS[key] = table
    return table


def _design_table(up: int, down: int, half: int, cutoff: float, attenuation_db: float) -> np.ndarray | None:
    """The per-cycle table of a PolyphaseResampler (read-only: resamplers of one design share
    it), or None when it would exceed _MAX_TABLE.

    Column r holds the taps of output r of each cycle of L outputs. A cycle of L outputs
    consumes M inputs. Cycle c's outputs all read inputs from ``c*M - P + 1`` to
    ``c*M + P + M - 2`` (``W = 2P + M - 1`` of them), so one matrix product of the input
    windows (one per cycle, M samples apart) with this ``W x L`` table yields whole cycles.
    Input ``k`` of the window is ``t = r*M/L + P - 1 - k`` input samples before output r;
    the tap is the windowed sinc at ``t`` (zero for ``|t| >= P``). ``cutoff`` is the -6 dB
    point in cycles per input sample.
    """
    L, M, P = up, down, half
    width = 2 * P + M - 1
    if width * L > _MAX_TABLE:
        return None
    t = np.arange(L)[None, :] * (M / L) + (P - 1) - np.arange(width)[:, None]
    inside = np.abs(t) < P
    u = np.where(inside, t / P, 0.0)
    beta = _kaiser_beta(attenuation_db)
    window = np.i0(beta * np.sqrt(np.maximum(1.0 - u * u, 0.0))) / np.i0(beta)
    taps = np.where(inside, 2 * cutoff * np.sinc(2 * cutoff * t) * window, 0.0)
    # Integer coefficients, each column summing to exactly 2**_COEF_BITS (unity DC gain);
    # the rounding residue goes to the column's largest tap.
    coefs = np.rint(taps / taps.sum(axis=0) * _COEF_SCALE)
    cols = np.arange(L)
    coefs[np.argmax(np.abs(taps), axis=0), cols] += _COEF_SCALE - coefs.sum(axis=0)
    assert np.abs(coefs).sum(axis=0).max() * 32768 < 2.0**53  # exact float64 sums
    coefs.setflags(write=False)
    return coefs


class PolyphaseResampler:
    """Low-latency streaming resampler for rational ratios: a polyphase windowed-sinc FIR in numpy.

    The ratio ``out_rate / in_rate`` is reduced to ``L / M``. Output sample ``n`` sits at input
    time ``n * M / L`` and is a weighted sum of the ``2 * P`` input samples around that time,
    the weights being a Kaiser-windowed sinc low-pass sampled at that output's phase. With
    ``f = min(in_rate, out_rate) / 2`` (the lower Nyquist frequency):

    * passband up to ``passband * f`` (default 0.85: 3.4 kHz when 8 kHz is involved),
    * stopband from ``stopband * f`` (default 1.0: nothing aliases or images into the band),
      attenuated by ``attenuation_db`` (default 66 dB, measured >= 65.6 dB for all pairs of
      8, 16, 24 and 48 kHz; the passband ripple is then under 0.01 dB peak to peak),
    * half-length ``P`` input samples from Kaiser's length estimate, or ``taps_per_phase // 2``
      if given. ``P / in_rate`` is the group delay (:attr:`delay_ms`): about 3.4 ms for the
      defaults when 8 kHz is involved.

    The output is aligned in time with the input (the group delay is compensated, like soxr's):
    a sample is returned as soon as the input it needs has arrived, so each chunk returns all
    but the last ``delay_ms`` of output owed (:attr:`pending_samples`) and :meth:`flush`
    returns that tail. All output of a stream is exactly ``ceil(in_len * L / M)`` samples (no
    drift), and chunking never changes it: the arithmetic is exact integer arithmetic carried
    in float64, rounded to int16 (half to even) and clipped at the end. Every output's taps
    sum to exactly one, so DC and digital silence pass unchanged.
    """

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        passband: float = 0.85,
        stopband: float = 1.0,
        attenuation_db: float = 66.0,
        taps_per_phase: int | None = None,
    ) -> None:
        self.in_rate = _check_rate("in_rate", in_rate)
        self.out_rate = _check_rate("out_rate", out_rate)
        if not 0 < passband < stopband <= 2:
            raise ValueError(f"need 0 < passband < stopband <= 2, got {passband!r}, {stopband!r}")
        if not 20 <= attenuation_db <= 140:
            raise ValueError(f"attenuation_db must be within [20, 140], got {attenuation_db!r}")
        g = math.gcd(self.in_rate, self.out_rate)
        self.up = self.out_rate // g  # L
        self.down = self.in_rate // g  # M
        self.passband = float(passband)
        self.stopband = float(stopband)
        self.attenuation_db = float(attenuation_db)
        nyquist = min(self.in_rate, self.out_rate) / 2
        f_pass, f_stop = passband * nyquist, stopband * nyquist
        if taps_per_phase is None:
            # Kaiser: a filter of (A - 7.95) / (2.285 * 2 pi * transition) seconds
            length_s = (attenuation_db - 7.95) / (2.285 * 2 * math.pi * (f_stop - f_pass))
            half = max(1, math.ceil(length_s / 2 * self.in_rate))
        else:
            if isinstance(taps_per_phase, bool) or not isinstance(taps_per_phase, (int, np.integer)) or taps_per_phase < 2:
                raise ValueError(f"taps_per_phase must be an integer >= 2, got {taps_per_phase!r}")
            half = int(taps_per_phase) // 2
        self._half = half  # P
        self.taps_per_phase = 2 * half
        self._coefs = None
        if not self.passthrough:
            self._coefs = _design(self.up, self.down, half, (f_pass + f_stop) / 2 / self.in_rate, self.attenuation_db)
            if self._coefs is None:
                raise ValueError(
                    f"{self.in_rate} -> {self.out_rate} Hz reduces to {self.up}/{self.down}: too many phases for "
                    "PolyphaseResampler; use StreamResampler (soxr)"
                )
        self.reset()

    def __repr__(self) -> str:
        return (
            f"PolyphaseResampler({self.in_rate}, {self.out_rate}, passband={self.passband}, "
            f"stopband={self.stopband}, attenuation_db={self.attenuation_db}, taps_per_phase={self.taps_per_phase})"
        )

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples are copied through untouched."""
        return self.in_rate == self.out_rate

    @property
    def delay_ms(self) -> float:
        """The filter's group delay, which is also how far the output lags the input."""
        return 0.0 if self.passthrough else self._half * 1000 / self.in_rate

    @property
    def delay_samples(self) -> int:
        """:attr:`delay_ms` in input samples (exact): the input past an output's time that
        must arrive before that output is returned."""
        return 0 if self.passthrough else self._half

    @property
    def taps(self) -> np.ndarray:
        """The filter as numbers: the ``W x L`` per-cycle table of :func:`_design_table`, unity DC gain per column."""
        if self._coefs is None:
            return np.ones((1, 1))
        return self._coefs / _COEF_SCALE

    def _owed(self, n_in: int) -> int:
        """ceil(n_in * L / M): outputs whose time falls inside the first n_in inputs."""
        return -((-n_in * self.up) // self.down)

    @property
    def pending_samples(self) -> int:
        """Output samples owed for the input seen so far but not yet returned (the lag)."""
        return 0 if self.passthrough else self._owed(self._in_total) - self._n_out

    def process(self, audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        """Resample the next chunk: PCM16LE bytes (any length) or int16 samples -> int16 samples.

        With bytes, an odd trailing byte is kept and joined to the next chunk. Returns every
        output sample whose filter window the input now covers: all but the last
        :attr:`delay_ms` of what the input so far is owed.
        """
        x, self._odd = _next_chunk(self._odd, audio)
        if self._coefs is None:
            return np.array(x, dtype=np.int16)
        self._in_total += x.size
        return self._run(x, max(0, self._owed(self._in_total - self._half)))

    def flush(self) -> np.ndarray:
        """End the stream: return the delayed tail (input padded with silence), then reset.

        Everything returned for the stream then totals ``ceil(in_len * out_rate / in_rate)``
        samples. A pending odd byte (half a sample) is dropped.
        """
        if self._coefs is None:
            tail = np.zeros(0, dtype=np.int16)
        else:
            tail = self._run(np.zeros(self._half, dtype=np.int16), self._owed(self._in_total))
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop all state (filter history, output phase, pending odd byte), e.g. after a clear."""
        self._odd = b""
        self._in_total = 0
        self._n_out = 0  # output samples returned so far; the next one is output number _n_out
        # Input history from absolute input index _base on; before the stream starts it is
        # silence, so output 0 (at input time 0) sees P - 1 zeros before input 0.
        self._base = 1 - self._half
        self._hist = np.zeros(self._half - 1, dtype=np.float64)

    def _run(self, x: np.ndarray, n_end: int) -> np.ndarray:
        """Append ``x`` to the history and compute outputs ``_n_out`` up to ``n_end`` (exclusive)."""
        L, M, P = self.up, self.down, self._half
        n0 = self._n_out
        # M - 1 zeros at the end: the last cycle may need up to M - 1 inputs past what the
        # outputs we keep need; its outputs beyond n_end are computed and dropped.
        work = np.concatenate((self._hist, x, np.zeros(M - 1)))
        if n_end > n0:
            c0, c1 = n0 // L, -(-n_end // L)  # the cycles that hold outputs n0 .. n_end - 1
            # _base is always c0 * M - P + 1, so cycle c0's window starts at work[0]; the
            # windows are a strided view of work (M samples apart), copied once for BLAS.
            coefs = self._coefs
            assert coefs is not None  # set whenever outputs are due
            shape = (c1 - c0, coefs.shape[0])
            windows = np.ndarray(shape, np.float64, work, 0, (M * work.itemsize, work.itemsize))
            y = (windows.copy() @ coefs).ravel()[n0 - c0 * L : n_end - c0 * L]
            self._n_out = n_end
            y *= 1.0 / _COEF_SCALE  # exact: a power of two
            np.rint(y, out=y)
            np.minimum(y, 32767.0, out=y)
            np.maximum(y, -32768.0, out=y)
            out = y.astype(np.int16)
        else:
            out = np.zeros(0, dtype=np.int16)
        keep = (self._n_out // L) * M - P + 1  # the first input the next output's cycle reads
        self._hist = work[keep - self._base : work.size - (M - 1)]
        self._base = keep
        return out
