"""What one load run measured: :class:`Stats` (percentiles and a mergeable histogram) and
:class:`LoadResult`; the definitions are in :mod:`.load`."""

from __future__ import annotations

import math

import attrs
import numpy as np

__all__ = ["Stats", "LoadResult"]

_HIST_BASE_MS = 0.01
_HIST_STEP = 1.02  # 2 % wide bins: enough to merge percentiles of several generators


def _hist_bin(ms: float) -> int:
    return 0 if ms <= _HIST_BASE_MS else 1 + int(math.log(ms / _HIST_BASE_MS) / math.log(_HIST_STEP))


@attrs.frozen
class Stats:
    """Percentiles of a sample, in milliseconds, and a sparse log histogram of it (bins 2 %
    wide) so that the results of several generator processes can be merged."""

    count: int
    p50: float
    p99: float
    max: float
    mean: float
    hist: dict = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def of(cls, values_s) -> "Stats":
        a = np.asarray(values_s, dtype=np.float64) * 1000.0
        if a.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        p50, p99 = np.percentile(a, [50, 99])
        bins = np.where(a <= _HIST_BASE_MS, 0, 1 + np.floor(np.log(np.maximum(a, _HIST_BASE_MS) / _HIST_BASE_MS) / math.log(_HIST_STEP)))
        keys, counts = np.unique(bins.astype(np.int64), return_counts=True)
        hist = {int(k): int(c) for k, c in zip(keys, counts)}
        return cls(int(a.size), round(float(p50), 3), round(float(p99), 3), round(float(a.max()), 3), round(float(a.mean()), 3), hist)

    @classmethod
    def merge(cls, parts) -> "Stats":
        """Combine Stats (or their dicts from ``as_dict``): exact count, max and mean;
        p50 and p99 from the merged histogram (within 2 %)."""
        parts = [p if isinstance(p, dict) else attrs.asdict(p) for p in parts]
        parts = [p for p in parts if p["count"]]
        if not parts:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        hist: dict[int, int] = {}
        for p in parts:
            for k, c in p["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + int(c)
        count = sum(p["count"] for p in parts)
        top = max(p["max"] for p in parts)

        def pct(q: float) -> float:
            need, seen = q * count, 0
            for k in sorted(hist):
                seen += hist[k]
                if seen >= need:
                    mid = _HIST_BASE_MS if k == 0 else _HIST_BASE_MS * _HIST_STEP ** (k - 0.5)
                    return round(min(mid, top), 3)
            return top

        mean = sum(p["mean"] * p["count"] for p in parts) / count
        return cls(count, pct(0.5), pct(0.99), top, round(mean, 3), hist)


@attrs.frozen
class LoadResult:
    """What one load run measured (see the module docs for the definitions)."""

    url: str
    provider: str
    calls: int
    seconds: float
    ramp: float
    warmup: float
    jitter_buffer_ms: float
    wall_s: float
    handshakes_ok: int
    handshakes_failed: int
    handshake_errors: dict
    calls_cut: int  # calls the server ended or broke before the generator hung up
    protocol_errors: int
    frames_sent: int
    frames_echoed: int
    frames_dropped: int
    frames_unechoed_tail: int
    calls_with_long_tail: int  # calls whose unechoed tail is longer than one outbound chunk
    frames_duplicated: int
    media_messages: int
    other_messages: dict
    round_trip: Stats
    pacing_jitter: Stats
    send_late: Stats
    underruns: int
    underrun_ms: float
    calls_with_underruns: int
    loadgen_cpu_s: float
    first_error: str | None = None
    #: the steady-state window (warmup to the end of streaming) in Unix time, so that a
    #: caller sampling the server's /proc can measure its CPU over the same window
    window_start_unix: float = 0.0
    window_end_unix: float = 0.0
    traffic: str = "echo"
    #: talk traffic only: utterances, barge_in_attempts, keys sent; bot_media, bot_audio_s,
    #: clears and marks_echoed received (whole run, every call)
    talk: dict = attrs.field(factory=dict)

    @property
    def loadgen_cpu_fraction(self) -> float:
        return self.loadgen_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every call connected and stayed up, nothing dropped, no underrun."""
        return (
            self.handshakes_failed == 0
            and self.calls_cut == 0
            and self.protocol_errors == 0
            and self.frames_dropped == 0
            and self.calls_with_long_tail == 0
            and self.underruns == 0
        )

    def as_dict(self) -> dict:
        d = attrs.asdict(self)
        d["loadgen_cpu_fraction"] = round(self.loadgen_cpu_fraction, 4)
        d["ok"] = self.ok
        return d

    def format_table(self) -> str:
        def ms(s: Stats) -> str:
            return f"p50 {s.p50:8.2f}  p99 {s.p99:8.2f}  max {s.max:8.2f} ms  (n={s.count})"

        rows = [
            ("target", f"{self.url} ({self.provider})"),
            ("calls", f"{self.calls} over {self.seconds:g} s (ramp {self.ramp:g} s, stats after {self.warmup:g} s)"),
            ("handshakes", f"{self.handshakes_ok} ok, {self.handshakes_failed} failed" + (f" {self.handshake_errors}" if self.handshake_errors else "")),
            ("calls cut short", f"{self.calls_cut}"),
            ("protocol errors", f"{self.protocol_errors}" + (f" (first: {self.first_error})" if self.first_error else "")),
            ("frames sent", f"{self.frames_sent}"),
            ("frames echoed", f"{self.frames_echoed}  (dropped {self.frames_dropped}, duplicated {self.frames_duplicated})"),
            ("unechoed tail", f"{self.frames_unechoed_tail} frames ({self.calls_with_long_tail} calls longer than one outbound chunk)"),
            ("media messages in", f"{self.media_messages}" + (f"  other: {self.other_messages}" if self.other_messages else "")),
            ("round trip", ms(self.round_trip)),
            ("pacing jitter", ms(self.pacing_jitter)),
            ("underruns", f"{self.underruns} ({self.underrun_ms:.1f} ms of gaps, {self.calls_with_underruns} calls; jitter buffer {self.jitter_buffer_ms:g} ms)"),
            ("generator lateness", ms(self.send_late)),
            ("generator CPU", f"{self.loadgen_cpu_s:.2f} s in {self.wall_s:.2f} s ({100 * self.loadgen_cpu_fraction:.0f}% of one core)"),
            ("verdict", "OK" if self.ok else "NOT OK"),
        ]
        if self.traffic == "talk":
            t = self.talk
            rows[-1:-1] = [(
                "talk",
                f"{t.get('utterances', 0)} utterances sent ({t.get('barge_in_attempts', 0)} over the bot's answer), "
                f"{t.get('keys', 0)} keys; {t.get('bot_media', 0)} bot audio messages ({t.get('bot_audio_s', 0):.1f} s), "
                f"{t.get('clears', 0)} clears, {t.get('marks_echoed', 0)} marks echoed",
            )]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
