"""In-band DTMF: a streaming key detector for 16-bit PCM, and a key-press tone generator.

Some providers (Knowlarity) do not send key presses as events, so the engine listens for
them in the caller's audio. :class:`DtmfDetector` takes PCM in chunks of any size, at any
rate from 8 kHz up, and returns each press exactly once with the stream time it began.

How it decides, in the spirit of ITU-T Q.24 receivers:

* Analysis windows of ~12.75 ms (102 samples at 8 kHz, scaled with the rate) advance in
  hops of a sixth of a window. For every window it measures, as one matrix product, the
  spectral power at the eight DTMF frequencies and at their second harmonics (the same
  numbers a Goertzel filter gives), and the window's total energy.
* A window "holds" a key when: the strongest row tone and the strongest column tone are
  each above a minimum level; each beats the others in its group by a margin; the twist
  (row vs column level) is within limits; the two tones carry most of the window's
  energy (speech, music and noise spread theirs); and neither tone has a strong second
  harmonic (voiced sounds do, pure tones do not).
* A key is reported once enough consecutive windows hold it (a press of ~35 ms or more),
  and not again until it has been absent for about one and a half windows. A brief
  drop-out inside a press is bridged.

numpy only.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from callengine.events import DTMF_DIGITS, check_dtmf_digit

__all__ = [
    "ROW_FREQS",
    "COL_FREQS",
    "DtmfKey",
    "DtmfDetector",
    "dtmf_tone",
    "dtmf_sequence",
]

#: Low group (keypad rows) and high group (keypad columns), in Hz.
ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)


@attrs.frozen
class DtmfKey:
    """One detected key press.

    ``start`` is the stream time (seconds of audio fed since the detector was created or
    reset) at which the tone began, estimated to within a few milliseconds. ``duration``
    is not known when a press is reported (it is reported while still sounding), so the
    detector leaves it ``None``; other producers may fill it in.
    """

    digit: str = attrs.field(validator=lambda instance, attribute, value: check_dtmf_digit(value))
    start: float
    duration: float | None = None



def _db(x: float) -> float:
    """A level difference in dB -> a power ratio."""
    return 10.0 ** (x / 10.0)


class DtmfDetector:
    """Streaming DTMF detector for all sixteen keys (see the module docstring).

    ``process`` accepts PCM16LE bytes (an odd trailing byte is kept for the next call) or an
    int16 array (a float array is read as samples in [-1, 1]). Thresholds are arguments so
    that a deployment can tune them; the defaults are the tested ones:

    * ``min_level_dbfs``: each tone's RMS level must reach this (per tone, dBFS).
    * ``normal_twist_db`` / ``reverse_twist_db``: how much stronger the row tone / the
      column tone may be than the other.
    * ``relative_peak_db``: margin by which each tone beats the rest of its group.
    * ``min_energy_ratio``: share of the window's energy the two tones must carry.
    * ``max_harmonic_db``: a tone's second harmonic must be at least this far below it
      (``None`` disables the check).
    * ``min_duration``: seconds a pair must hold before it is reported.
    * ``min_gap``: seconds of absence that end a press (a shorter drop-out is bridged).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        min_level_dbfs: float = -36.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 6.0,
        relative_peak_db: float = 6.0,
        min_energy_ratio: float = 0.7,
        max_harmonic_db: float | None = 10.0,
        min_duration: float = 0.035,
        min_gap: float = 0.02,
    ) -> None:
        if sample_rate < 8000:
            raise ValueError(f"DTMF detection needs a sample rate of at least 8000 Hz, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.window = int(round(102 * self.sample_rate / 8000))
        self.hop = max(1, int(round(self.window / 6)))
        n, r = self.window, self.sample_rate

        freqs = list(ROW_FREQS + COL_FREQS)
        harmonics = [2 * f for f in freqs]
        # Harmonics above Nyquist cannot be measured; such a check is simply skipped.
        self._has_harmonic = np.array([h < r / 2 - 100 for h in harmonics])
        all_freqs = np.array(freqs + harmonics)
        t = np.arange(n)[:, None] / r
        phase = 2 * np.pi * all_freqs[None, :] * t
        self._basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1)  # (n, 32)
        self._nf = nf = len(all_freqs)
        # Every window is measured at the eight fundamentals; the harmonics only for the
        # few windows that pass the first tests (the product is most of the cost).
        self._basis_fund = np.ascontiguousarray(np.concatenate([self._basis[:, :8], self._basis[:, nf : nf + 8]], axis=1))
        self._basis_harm = np.ascontiguousarray(np.concatenate([self._basis[:, 8:nf], self._basis[:, nf + 8 :]], axis=1))
        self._ones = np.ones(16)
        # A row's second harmonic (1394, 1540, 1704, 1882 Hz) lies close to some column
        # frequencies, so a genuine column tone leaks into that measurement (by up to
        # -10 dB for key 2). Measure the worst-case leakage for every key once, and allow
        # four times (6 dB) that much on top of the harmonic limit.
        self._row_harm_leak = np.zeros((4, 4))
        for c, fc in enumerate(COL_FREQS):
            worst = np.zeros(4)
            for ph in np.linspace(0.0, np.pi, 8, endpoint=False):
                y = np.sin(2 * np.pi * fc * t[:, 0] + ph) @ self._basis
                p = y[: self._nf] ** 2 + y[self._nf :] ** 2
                worst = np.maximum(worst, p[8:12] / p[4 + c])
            self._row_harm_leak[:, c] = 4.0 * worst

        # |X(f)|^2 of a sine of mean power P over n samples is about P * n^2 / 2, and the
        # window's energy sum(x^2) is P * n: scale the thresholds once to match.
        self._floor_scaled = _db(min_level_dbfs) * n * n / 2  # per-tone minimum level
        # By Cauchy-Schwarz a tone's |X|^2 is at most n times the window's energy, so a
        # window with less energy than floor / n cannot hold a key: a quiet stretch (the
        # caller listening) skips the measurement. The margin covers rounding.
        self._energy_gate = self._floor_scaled / n * (1.0 - 1e-6)
        self._ratio_scaled = float(min_energy_ratio) * n / 2
        self._normal_twist = _db(normal_twist_db)
        self._reverse_twist = _db(reverse_twist_db)
        self._relative_peak = _db(relative_peak_db)
        self._max_harmonic = None if max_harmonic_db is None else _db(-max_harmonic_db)

        # Window counts. A window at a press' edge holds the key only if most of it is
        # tone, so a press of D seconds yields about (D - 0.42 window) / hop holding
        # windows (measured); 35 ms gives 14 at 8 kHz, where 30 ms presses give 10-13
        # and 40 ms presses 15-17.
        self._need = max(1, int(round((min_duration * r - 0.42 * n) / self.hop)))
        self._release = max(1, int(math.ceil(min_gap * r / self.hop)))
        self._max_dropout = 2  # before it is reported, a press survives one stray window
        # Where, inside the first holding window, a press typically begins.
        self._onset_offset = 0.19 * n
        self.reset()

    def reset(self) -> None:
        """Forget all audio and any press in progress; stream time restarts at zero."""
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0  # stream index (samples) of self._buf[0], always a window start
        self._odd = b""
        self._digit = -1  # key index of the press being tracked, -1 for none
        self._first = 0  # stream index of the first window that held it
        self._count = 0  # windows that held it
        self._misses = 0  # consecutive windows that did not
        self._reported = False

    @property
    def holding(self) -> bool:
        """A reported press is still sounding (or within its release gap)."""
        return self._digit >= 0 and self._reported

    @property
    def position(self) -> int:
        """Stream offset (samples) of the next sample to be fed."""
        return self._buf_start + int(self._buf.size)

    # -- input ---------------------------------------------------------------------------

    def _samples(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        if isinstance(pcm, np.ndarray):
            a = np.asarray(pcm).reshape(-1)
            if np.issubdtype(a.dtype, np.floating):
                return a.astype(np.float64)
            return a.astype(np.float64) / 32768.0
        data = self._odd + bytes(pcm)
        if len(data) % 2:
            self._odd, data = data[-1:], data[:-1]
        else:
            self._odd = b""
        return np.multiply(np.frombuffer(data, dtype="<i2"), 1.0 / 32768.0, dtype=np.float64)  # exact: a power of two

    # -- analysis ------------------------------------------------------------------------

    def _classify(self, frames: np.ndarray, energy: np.ndarray) -> np.ndarray | None:
        """Key index (row * 4 + column) held by each window, or -1; None when no window does.

        Powers are left unnormalised (|X|^2); the thresholds were scaled to match in
        ``__init__``. The two cheapest tests run first on every window, the rest only on
        the few windows that pass them (almost none outside key presses).
        """
        y = frames @ self._basis_fund
        y *= y
        # the two tones carry at most what all eight frequencies do: where those fall short
        # of the energy share in every window (speech, music, a single tone), stop here
        if not np.logical_or.reduce(y @ self._ones >= energy * (self._ratio_scaled * (1.0 - 1e-9))):
            return None
        power = y[:, :8] + y[:, 8:]
        # ufunc reductions, not the ndarray methods: those go through a Python wrapper that
        # costs more than the arithmetic on arrays this small
        rp = np.maximum.reduce(power[:, 0:4], axis=1)
        cp = np.maximum.reduce(power[:, 4:8], axis=1)
        cand = (rp + cp >= energy * self._ratio_scaled) & (np.minimum(rp, cp) >= self._floor_scaled)
        if not np.logical_or.reduce(cand):
            return None
        idx = np.flatnonzero(cand)
        power, rp, cp = power[idx], rp[idx], cp[idx]
        rows, cols = power[:, 0:4], power[:, 4:8]
        ri = rows.argmax(axis=1)
        ci = cols.argmax(axis=1)
        # The second-strongest tone of each group (index 2 of an ascending sort of four).
        r2 = np.sort(rows, axis=1)[:, 2]
        c2 = np.sort(cols, axis=1)[:, 2]
        ok = (rp <= cp * self._normal_twist) & (cp <= rp * self._reverse_twist)
        ok &= (rp >= r2 * self._relative_peak) & (cp >= c2 * self._relative_peak)
        if self._max_harmonic is not None:
            k = np.arange(len(idx))
            yh = frames[idx] @ self._basis_harm
            yh *= yh
            harm = yh[:, :8] + yh[:, 8:]
            rh = np.where(self._has_harmonic[ri], harm[k, ri], 0.0)
            ch = np.where(self._has_harmonic[4 + ci], harm[k, 4 + ci], 0.0)
            ok &= rh <= rp * self._max_harmonic + cp * self._row_harm_leak[ri, ci]
            ok &= ch <= cp * self._max_harmonic
        codes = np.full(len(frames), -1, dtype=np.int64)
        codes[idx] = np.where(ok, ri * 4 + ci, -1)
        return codes

    def process(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> list[DtmfKey]:
        """Feed the next chunk of audio; return the presses confirmed by it (usually none)."""
        x = self._samples(pcm)
        buf = np.concatenate((self._buf, x)) if self._buf.size else x
        n, h = self.window, self.hop
        if buf.size < n:
            self._buf = buf
            return []
        nwin = (buf.size - n) // h + 1
        # no window holds more energy than the whole buffer: a quiet chunk stops here
        if float(np.dot(buf, buf)) < self._energy_gate:
            codes = None  # what _classify would find: no window is loud enough
        else:
            sq = np.empty(buf.size + 1)
            sq[0] = 0.0
            np.add.accumulate(buf * buf, out=sq[1:])  # np.cumsum, without its Python wrapper
            energy = sq[n : n + nwin * h : h] - sq[0 : nwin * h : h]
            # the windows as overlapping rows of one view (the ndarray constructor is much
            # cheaper than as_strided); nothing writes to it
            buf = np.ascontiguousarray(buf)
            frames = np.ndarray((nwin, n), np.float64, buf, 0, (h * 8, 8))
            codes = self._classify(frames, energy)
        if codes is None and self._digit < 0:
            keys: list[DtmfKey] = []  # the common case: nothing going on
        else:
            keys = self._track(np.full(nwin, -1) if codes is None else codes, self._buf_start)
        used = nwin * h
        self._buf = buf[used:].copy()
        self._buf_start += used
        return keys

    def _track(self, codes: np.ndarray, first_index: int) -> list[DtmfKey]:
        """Run the press state machine over per-window key codes (-1: no key)."""
        keys: list[DtmfKey] = []
        h = self.hop
        for i, code in enumerate(codes.tolist()):
            if self._digit >= 0:
                if code == self._digit:
                    self._count += 1
                    self._misses = 0
                    if not self._reported and self._count >= self._need:
                        self._reported = True
                        keys.append(self._key())
                    continue
                self._misses += 1
                if self._reported:
                    # Once reported, anything else (even another key) counts as absence
                    # until the gap is long enough: one press, one key.
                    if self._misses < self._release:
                        continue
                elif code < 0 and self._misses < self._max_dropout:
                    continue
                self._digit = -1
            if code >= 0:  # a (new) key may be starting
                self._digit = code
                self._first = first_index + i * h
                self._count = 1
                self._misses = 0
                self._reported = self._need <= 1
                if self._reported:
                    keys.append(self._key())
        return keys

    def _key(self) -> DtmfKey:
        start = (self._first + self._onset_offset) / self.sample_rate
        return DtmfKey(digit=DTMF_DIGITS[self._digit], start=start)


# -- generator ---------------------------------------------------------------------------


def _freqs_of(digit: str) -> tuple[float, float]:
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF key: {digit!r}")
    i = DTMF_DIGITS.index(digit.upper())
    return ROW_FREQS[i // 4], COL_FREQS[i % 4]


def dtmf_tone(
    digit: str,
    duration: float = 0.08,
    sample_rate: int = 8000,
    dbfs: float = -10.0,
    twist_db: float = 0.0,
) -> np.ndarray:
    """The int16 tone pair of one key press, ``duration`` seconds long.

    ``dbfs`` is the RMS level of each of the two tones. ``twist_db`` > 0 makes the row (low)
    tone that many dB stronger than the column (high) tone, < 0 the column tone stronger;
    the difference is split evenly around ``dbfs``. Lower-case a-d are accepted.
    """
    row, col = _freqs_of(digit)
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    a_row = math.sqrt(2.0) * 10 ** ((dbfs + twist_db / 2) / 20)
    a_col = math.sqrt(2.0) * 10 ** ((dbfs - twist_db / 2) / 20)
    x = a_row * np.sin(2 * np.pi * row * t) + a_col * np.sin(2 * np.pi * col * t)
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def dtmf_sequence(
    digits: str,
    sample_rate: int = 8000,
    tone_ms: float = 80,
    gap_ms: float = 80,
    dbfs: float = -10.0,
) -> np.ndarray:
    """Key presses one after another, each ``tone_ms`` long and followed by ``gap_ms`` of silence."""
    for d in digits:
        _freqs_of(d)
    gap = np.zeros(int(round(gap_ms * sample_rate / 1000)), dtype=np.int16)
    parts: list[np.ndarray] = []
    for d in digits:
        parts.append(dtmf_tone(d, tone_ms / 1000, sample_rate, dbfs))
        parts.append(gap)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
