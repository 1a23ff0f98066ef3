"""Prometheus metrics of one server, with prometheus-client, served on the call port
(``GET /metrics``) beside ``/healthz`` and ``/readyz``.

Counters that grow while a call runs (frames, barge-ins, underruns, ...) are read at
scrape time: the totals of the calls that have ended plus the live calls' running
statistics, so a scrape during a call sees it, and every counter only grows (a call's
final statistics are never below its last running ones). Histograms (call duration,
teardown, barge-in latency, event-loop lag) are observed as things happen.

Labels are bounded: ``provider`` is a codec name, ``end_cause`` an :class:`EndCause`,
``reason`` a rejection kind (an HTTP status or one of a few words); never a call id or a
path. Each server has its own registry, so several servers in one process (tests, an
embedding application) do not mix.

Across the worker processes of ``callengine serve --workers N`` (``ServerConfig.metrics_dir``
set), prometheus-client's multiprocess mode: the histograms write to files in that
directory, and :class:`SharedMetrics` copies the scrape-time figures into counters and
gauges there, every second and before each scrape it answers; ``/metrics`` on any worker
then renders the sum over every worker, the ones that have exited included (their
counters stay; the supervisor removes their live gauges). One worker's live figures are up
to a second old in another worker's scrape.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .call.causes import CallReport, CallStatistics

if TYPE_CHECKING:
    from .call.session import CallSession
    from .server import CallServer

__all__ = ["ServerMetrics", "SharedMetrics", "CONTENT_TYPE", "run_loop_lag_probe"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: per-provider counters taken from the calls' statistics: metric name -> (field, help)
_CALL_COUNTERS = {
    "callengine_audio_frames_in_total": ("frames_in", "Caller audio messages received."),
    "callengine_audio_frames_out_total": ("frames_out", "Audio messages sent to the provider."),
    "callengine_audio_in_seconds_total": ("audio_in_s", "Caller audio received, in seconds."),
    "callengine_audio_out_seconds_total": ("audio_out_s", "Agent audio sent, in seconds."),
    "callengine_frames_dropped_total": ("frames_dropped", "Caller audio dropped because an agent fell behind."),
    "callengine_underruns_total": ("underruns", "Gaps at the provider that were the engine's fault."),
    "callengine_starved_total": ("starved", "Gaps at the provider because a streaming playback's audio came late."),
    "callengine_barge_ins_total": ("barge_ins", "Barge-ins (the caller talked over the bot)."),
    "callengine_backchannels_total": ("backchannels", "Short speech over the bot that paused it and was resumed (barge_in_mode=pause)."),
    "callengine_clears_total": ("clears", "Playback clears."),
    "callengine_marks_total": ("marks", "Marks placed."),
    "callengine_mark_echoes_total": ("mark_echoes", "Marks reached on the provider's echo."),
    "callengine_mark_fallbacks_total": ("mark_fallbacks", "Marks reached by the fallback deadline (no echo came)."),
    "callengine_dtmf_total": ("dtmf", "Key presses received."),
    "callengine_unknown_messages_total": ("unknown_messages", "Provider messages skipped as odd or unknown."),
    "callengine_control_dropped_total": ("control_dropped", "DTMF and mark messages over the rate limit."),
}
_FIELDS = [field for field, _ in _CALL_COUNTERS.values()]


class ServerMetrics:
    """The metrics of ``server`` (a :class:`~callengine.server.CallServer`)."""

    def __init__(self, server: "CallServer") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.call_duration = Histogram(
            "callengine_call_duration_seconds", "Call duration, start to close.", ["provider"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600), registry=self.registry,
        )  # fmt: skip
        self.teardown = Histogram(
            "callengine_call_teardown_seconds", "From a call's end to its socket closed and its report made.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry,
        )  # fmt: skip
        self.bargein_latency = Histogram(
            "callengine_bargein_latency_seconds", "From the caller's speech onset to the clear sent (includes min_speech_ms).", ["provider"],
            buckets=(0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1, 2), registry=self.registry,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "callengine_event_loop_lag_seconds", "How late the event loop ran a timer (a probe every 0.25 s).",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1), registry=self.registry,
        )  # fmt: skip
        self.started: dict[str, int] = {}
        self.ended: dict[tuple[str, str], int] = {}
        self._totals: dict[str, dict[str, float]] = {}
        self._accounted: "weakref.WeakSet[CallSession]" = weakref.WeakSet()
        collector = _ServerCollector(server, self)
        self.registry.register(collector)
        directory = server.config.metrics_dir
        self.shared = SharedMetrics(collector, directory) if directory else None

    def call_started(self, provider: str) -> None:
        self.started[provider] = self.started.get(provider, 0) + 1

    def call_ended(self, session: "CallSession", report: CallReport) -> None:
        """Fold an ended call into the totals (once per session)."""
        if session in self._accounted:
            return
        self._accounted.add(session)
        key = (report.provider, str(report.end_cause))
        self.ended[key] = self.ended.get(key, 0) + 1
        self.call_duration.labels(report.provider).observe(report.duration_s)
        self.teardown.observe(report.teardown_s)
        totals = self._totals.setdefault(report.provider, dict.fromkeys(_FIELDS, 0.0))
        for field in _FIELDS:
            totals[field] += getattr(report.stats, field)

    def bargein(self, provider: str, seconds: float) -> None:
        self.bargein_latency.labels(provider).observe(max(0.0, seconds))

    def live_totals(self, sessions: Iterable["CallSession"]) -> dict[str, dict[str, float]]:
        """The ended calls' totals plus the running statistics of the calls not yet ended."""
        out = {provider: dict(values) for provider, values in self._totals.items()}
        for session in sessions:
            if session in self._accounted or session.report is not None:
                continue
            stats: CallStatistics = session.statistics()
            totals = out.setdefault(session.provider, dict.fromkeys(_FIELDS, 0.0))
            for field in _FIELDS:
                totals[field] += getattr(stats, field)
        return out

    def render(self) -> bytes:
        if self.shared is not None:
            return self.shared.render()
        return generate_latest(self.registry)


#: how the workers' values of a gauge combine (multiprocess mode); the rest add up
_GAUGE_MODES = {"callengine_ready": "livemax"}


class SharedMetrics:
    """The scrape-time figures of one worker (what ``collector`` yields) copied into
    prometheus-client's multiprocess files in ``directory``, for every worker's
    ``/metrics``: a counter grows by what its figure grew since the last copy, a gauge is
    set (``livesum``: the live workers' values add up; ``callengine_ready`` is ``livemax``,
    1 while any worker accepts calls)."""

    def __init__(self, collector: Collector, directory: str, interval_s: float = 1.0) -> None:
        from prometheus_client import values

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != directory or values.ValueClass.__name__ == "MutexValue":
            raise ValueError(f"metrics_dir {directory!r} needs PROMETHEUS_MULTIPROC_DIR={directory} set before prometheus_client is imported")
        self.collector = collector
        self.directory = directory
        self.interval_s = interval_s
        self._metrics: dict[str, Counter | Gauge] = {}
        self._copied: dict[tuple[str, tuple[str, ...]], float] = {}

    def publish(self) -> None:
        for family in self.collector.collect():
            for sample in family.samples:
                labels = tuple(sample.labels)
                metric = self._metrics.get(family.name)
                if metric is None:
                    if family.type == "counter":
                        metric = Counter(family.name, family.documentation, labels, registry=None)
                    else:
                        metric = Gauge(family.name, family.documentation, labels, registry=None, multiprocess_mode=_GAUGE_MODES.get(family.name, "livesum"))  # type: ignore[arg-type]
                    self._metrics[family.name] = metric
                child = metric.labels(*sample.labels.values()) if labels else metric
                if isinstance(child, Gauge):
                    child.set(sample.value)
                    continue
                key = (family.name, tuple(sample.labels.values()))
                grown = sample.value - self._copied.get(key, 0.0)
                if grown > 0:  # never below: the figures only grow
                    child.inc(grown)
                    self._copied[key] = sample.value

    def render(self) -> bytes:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.publish()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        return generate_latest(registry)

    async def run(self) -> None:
        while True:
            self.publish()
            await trio.sleep(self.interval_s)


@attrs.define(eq=False)  # registered by identity
class _ServerCollector(Collector):
    server: "CallServer"
    metrics: ServerMetrics

    def collect(self) -> Iterator[Metric]:
        server, m = self.server, self.metrics
        sessions = list(server.sessions())
        active = GaugeMetricFamily("callengine_calls_active", "Calls in progress.", labels=["provider"])
        per_provider: dict[str, int] = {}
        for session in sessions:
            if session.report is None:
                per_provider[session.provider] = per_provider.get(session.provider, 0) + 1
        for provider in sorted(set(per_provider) | set(m.started)):
            active.add_metric([provider], per_provider.get(provider, 0))
        yield active
        yield GaugeMetricFamily("callengine_ready", "1 while the server accepts calls (what /readyz says).", value=1 if server.ready() else 0)
        started = CounterMetricFamily("callengine_calls_started_total", "Calls started.", labels=["provider"])
        for provider, n in sorted(m.started.items()):
            started.add_metric([provider], n)
        yield started
        ended = CounterMetricFamily("callengine_calls_ended_total", "Calls ended, by end cause.", labels=["provider", "end_cause"])
        for (provider, cause), n in sorted(m.ended.items()):
            ended.add_metric([provider, cause], n)
        yield ended
        rejected = CounterMetricFamily("callengine_rejections_total", "Connections refused, by HTTP status or reason.", labels=["reason"])
        for reason, n in sorted(server.rejections.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily("callengine_connections_total", "TCP connections accepted.", value=server.counters["connections"])
        yield CounterMetricFamily("callengine_handshake_failures_total", "Connections that failed before the WebSocket was open.", value=server.counters["handshake_failures"])
        yield CounterMetricFamily("callengine_connection_errors_total", "Connections that ended in an engine error.", value=server.counters["errors"])
        from .call.recording import FAILURES

        yield CounterMetricFamily("callengine_recording_failures_total", "Call recordings stopped by a disk error (the calls went on).", value=FAILURES[0])
        yield GaugeMetricFamily("callengine_pending_handshakes", "Connections accepted whose upgrade request is not read yet.", value=server.pending_handshakes)
        totals = m.live_totals(sessions)
        for name, (field, doc) in _CALL_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["provider"])
            for provider in sorted(totals):
                family.add_metric([provider], totals[provider][field])
            yield family

    def describe(self) -> list[Any]:
        return []  # collected fresh on every scrape; nothing to check at registration


async def run_loop_lag_probe(metrics: ServerMetrics, interval_s: float = 0.25) -> None:
    """Sleep ``interval_s`` again and again and record how late each wake-up was: the
    delay every call on this loop sees."""
    while True:
        due = trio.current_time() + interval_s
        await trio.sleep_until(due)
        metrics.loop_lag.observe(max(0.0, trio.current_time() - due))
