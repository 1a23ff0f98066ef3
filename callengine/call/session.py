"""One call = one nursery: the lifecycle of a call, from the start message to the report.

::

    start     wait for the provider's start message (bounded), build the call's parts
    tasks     reader, writer and barge-in in the I/O scope; the agent in its own scope
    end       the first to call CallState.end() records why and cancels the I/O scope
    finalize  on every path, shielded and bounded: settle every playback and mark, close
              the socket with the code that says why, release the report; then give the
              agent its cleanup grace, and report it as stuck if it does not exit

The tasks live in their own modules (:mod:`.reader`, :mod:`.writer`, :mod:`.bargein`, the
agent behind :mod:`.port`), built and connected by :mod:`.wiring`; the arithmetic between
them is in :mod:`.playout`, with no trio.
Nothing is sent after the end.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Awaitable, Callable, Sequence

import attrs
import trio

from ..errors import CloseCode, ProtocolError
from ..events import CallStarted, Event, MarkCleared, MarkReached, UnknownMessage
from ..protocols.base import Codec, WireMessage
from .agent import Agent, AgentRunner
from .api import Call, CallInfo
from .analyzer import Analyzer
from .bargein import BargeInControl
from .causes import CallReport, CallStatistics, ControlKind, Counters, EndCause
from .config import CallConfig
from .inbox import Inbox
from .logcontext import current_call, install_record_factory
from .playout import MarkPoint, MarkState, Playout
from .port import AgentPort, ClosedPort
from .recording import CallRecording, recording_path
from .reader import Reader, log_unknown
from .state import CallState
from .transport import Transport, TransportClosed
from .wiring import make_call_vad, wire_call
from .writer import Writer

#: Hang-up or transfer a call outside its socket (the provider's REST API): called with the
#: kind, the transfer target and the call's start; returns the outcome for the log. The
#: server builds one from :mod:`callengine.control` where a provider has credentials.
RemoteControl = Callable[[ControlKind, str, CallStarted], Awaitable[str]]

__all__ = ["CallSession", "CallReport", "run_call", "Agent", "current_call"]

log = logging.getLogger("callengine.call")

#: how long the close handshake may take with a provider that stopped reading
_STALLED_CLOSE_S = 0.05

install_record_factory()  # log records carry the call they belong to (record.call)


class CallSession:
    """Runs one call over ``transport`` with ``codec`` (ENGINE role) and the ``agent``.

    Raises ValueError at once for a config this provider cannot run (a lead below one
    chunk)."""

    def __init__(
        self,
        transport: Transport,
        agent: Agent,
        codec: Codec,
        config: CallConfig | None = None,
        *,
        provider: str | None = None,
        pending_messages: Sequence[WireMessage] | None = None,
        on_bargein_latency: Callable[[float], None] | None = None,
        remote_control: "RemoteControl | None" = None,
    ) -> None:
        self.transport = transport
        # speech onset to clear sent, per barge-in (the server's metrics)
        self._on_bargein_latency = on_bargein_latency or (lambda seconds: None)
        # hang-up and transfer where the socket cannot do them (the provider's REST API)
        self._remote_control = remote_control
        self.recording: CallRecording | None = None
        self.agent = agent
        self.codec = codec
        self.config = cfg = config or CallConfig()
        self.provider = provider or codec.name
        self.caps = caps = codec.capabilities
        pacing = cfg.pacing(caps, self.provider)
        self.chunk_s = pacing.chunk_s
        self.lead_s = pacing.lead_s
        self.start_delay_s = pacing.start_delay_s
        self._pending: deque[WireMessage] = deque(pending_messages or ())
        self._after_start: list[Event] = []  # events decoded with the start, for the reader
        self._io_scope = trio.CancelScope()
        self._agent_done = trio.Event()
        self.state = CallState(self._io_scope.cancel)
        self.counters = Counters()
        self.inbox: Inbox[Event] = Inbox(cfg.inbound_queue_ms / 1000)
        self.playout = Playout(
            self.chunk_s,
            self.lead_s,
            mark_echo=caps.mark_echo,
            clear_flushes=caps.clear,
            mark_grace_s=cfg.mark_grace_s,
            hangup_timeout_s=cfg.hangup_timeout_s,
            frame_s=caps.frame_ms / 1000,
            min_chunk_bytes=caps.min_chunk_bytes,
            one_clip_in_flight=caps.one_clip_in_flight,
            start_delay_s=pacing.start_delay_s,
            on_mark=self._on_mark,
        )
        self.info: CallInfo | None = None
        self.call: Call | None = None
        self._port: AgentPort | None = None
        self._writer: Writer | None = None
        self._analyzer: Analyzer | None = None
        self._control: BargeInControl | None = None
        self._runner: AgentRunner | None = None
        self._agent_started = False
        self._reader: Reader | None = None
        self._error_logged = False
        self.closed = trio.Event()  # set once the socket is closed and the report is ready
        self.report: CallReport | None = None
        self.teardown_s = 0.0
        self._t_start = trio.current_time()

    # --- what others read -------------------------------------------------------------

    @property
    def label(self) -> str:
        """``provider:call_id`` ("?" until the start message named the call), for logs."""
        return f"{self.provider}:{self.info.call_id if self.info else '?'}"

    @property
    def end_cause(self) -> EndCause | None:
        return self.state.end_cause

    @property
    def close_code(self) -> int | None:
        return self.state.close_code

    @property
    def ledger(self):  # the playout ledger, for tests and benchmarks
        return self.playout.ledger

    @property
    def outbox(self):
        return self.playout.outbox

    @property
    def agent_done(self) -> trio.Event:
        """Set once the agent's task has exited (or never started)."""
        return self._agent_done

    @property
    def agent_stuck(self) -> bool:
        return self._runner is not None and self._runner.stuck

    def agent_location(self) -> str:
        """Where the agent's task is waiting now (innermost frames outside trio), or
        "not running"."""
        return self._runner.location() if self._runner is not None else "not running"

    def statistics(self) -> CallStatistics:
        ledger = self.playout.ledger
        inbox = self.inbox
        counted = {**attrs.asdict(self.counters), **attrs.asdict(self.playout.counters)}
        counted["audio_in_s"] = round(counted["audio_in_s"], 6)
        return CallStatistics(
            **counted,
            audio_out_s=round(ledger.seconds_sent, 6),
            frames_dropped=inbox.audio_dropped,
            frames_unread=inbox.audio_unread,
            events_dropped=inbox.events_dropped,
            underruns=ledger.underruns,
            starved=ledger.starved,
            max_queued_ms=round(ledger.max_queued * 1000, 3),
            agent_stuck=self.agent_stuck,
        )

    # --- the lifecycle ----------------------------------------------------------------

    def _end(self, cause: EndCause, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        self.state.end(cause, code, reason)

    async def run(self) -> CallReport:
        """Run the call to its end and return its report. Re-raises only cancellation from
        outside (server shutdown), after the call was closed with 1001."""
        try:
            started = await self._await_start()
            if started is not None:
                await self._setup(started)
                await self._run_tasks()
        except BaseException as exc:
            cancelled, rest = _split_cancelled(exc)
            if rest is not None and not isinstance(rest, Exception):
                raise  # KeyboardInterrupt, SystemExit: not ours to handle
            self._classify(rest)
            await self._finalize()
            if cancelled is not None:
                raise cancelled from None  # only the cancellation: the rest was logged
        else:
            await self._finalize()
        assert self.report is not None
        return self.report

    def _classify(self, error: BaseException | None) -> None:
        """An exception (or cancellation from outside, ``None``) reached the call: say so
        once and end the call for it."""
        if error is not None and not self._error_logged:
            self._error_logged = True
            log.error("engine error in call %s", self.label, exc_info=error)
            if self.state.end_cause is None:
                self._end(EndCause.ENGINE_ERROR, CloseCode.INTERNAL_ERROR, "engine error")
        elif error is None:
            self._end(EndCause.SHUTDOWN, CloseCode.GOING_AWAY, "server shutting down")

    async def _await_start(self) -> CallStarted | None:
        codec = self.codec
        with trio.move_on_after(self.config.start_timeout_s) as scope:
            try:
                while True:
                    msg = self._pending.popleft() if self._pending else await self.transport.get_message()
                    events = codec.receive(msg)
                    for i, ev in enumerate(events):
                        if isinstance(ev, CallStarted):
                            # what came in the same frame after the start (texts joined in
                            # one frame by mod_audio_fork: a key pressed at once) is the call's
                            self._after_start = list(events[i + 1 :])
                            return ev
                        if isinstance(ev, UnknownMessage):
                            log_unknown(self.counters, self.label, ev, "before start")
            except TransportClosed as exc:
                if exc.code == CloseCode.MESSAGE_TOO_BIG:
                    log.warning("call %s: closed with 1009 before start: %s", self.label, exc.reason or "message too big")
                    self._end(EndCause.MESSAGE_TOO_BIG, CloseCode.MESSAGE_TOO_BIG, exc.reason or "message too big")
                else:
                    self._end(EndCause.DISCONNECTED, None, "closed before start")
                return None
            except ProtocolError as exc:
                log.warning("call %s: protocol error before start: %s", self.label, exc)
                self._end(EndCause.PROTOCOL_ERROR, exc.close_code, str(exc)[:120])
                return None
        if scope.cancelled_caught:
            log.warning("call %s: no start message within %.1f s", self.label, self.config.start_timeout_s)
            self._end(EndCause.START_TIMEOUT, CloseCode.PROTOCOL_ERROR, "no start message")
        return None

    async def _setup(self, started: CallStarted) -> None:
        cfg = self.config
        wire_rate = started.sample_rate or self.codec.inbound_rate
        self.info = info = CallInfo(
            call_id=started.call_id,
            provider=self.provider,
            caller=started.caller,
            called=started.called,
            custom=started.custom,
            stream_id=started.stream_id,
            direction=started.direction,
            sample_rate=cfg.agent_rate,
            wire_rate=wire_rate,
        )
        label = self.label
        current_call.set(label)  # the call's tasks inherit it: their log records name the call
        if cfg.record_dir is not None:
            path = recording_path(cfg.record_dir, self.provider, started.call_id or started.stream_id)
            self.recording = CallRecording(path, wire_rate, t0=trio.current_time())
        detector = await make_call_vad(cfg.vad, wire_rate, label)
        parts = wire_call(self, started, detector, wire_rate, label)
        self._writer, self._control, self._port = parts.writer, parts.control, parts.port
        self._analyzer, self._reader = parts.analyzer, parts.reader
        port = parts.port
        self._pending.clear()
        self.call = Call(port, info, self.recording)
        self._runner = AgentRunner(self.agent, self.call, port, label=label, done=self._agent_done, end=self.state.end)
        source = getattr(self.codec, "rate_source", "")
        log.info("call started %s caller=%s called=%s wire_rate=%d%s", label, info.caller, info.called, wire_rate, f" (from {source})" if source else "")

    async def _run_tasks(self) -> None:
        writer, reader = self._writer, self._reader
        assert writer is not None and reader is not None
        async with trio.open_nursery() as outer:
            assert self._runner is not None
            outer.start_soon(self._runner.run, name=f"agent {self.label}")
            self._agent_started = True
            try:
                with self._io_scope:
                    async with trio.open_nursery() as io:
                        io.start_soon(reader.run, name=f"reader {self.label}")
                        if self.recording is not None:
                            io.start_soon(self.recording.run, name=f"recording {self.label}")
                        io.start_soon(writer.run, name=f"writer {self.label}")
                        assert self._control is not None
                        io.start_soon(self._control.run, name=f"barge-in {self.label}")
                        if writer.watches_liveness:
                            io.start_soon(writer.keepalive, name=f"keepalive {self.label}")
                if self.state.end_cause is None:  # every task returned without ending the call: a bug
                    self._end(EndCause.ENGINE_ERROR, CloseCode.INTERNAL_ERROR, "engine error")
            except BaseException as exc:
                cancelled, rest = _split_cancelled(exc)
                if rest is None or isinstance(rest, Exception):
                    self._classify(rest)
                raise
            finally:
                # every path: the socket closes and the report is released now, whatever
                # the agent does; the agent gets its cleanup grace
                self._runner.scope.cancel()
                await self._finalize()
                await self._watch_agent()

    async def _watch_agent(self) -> None:
        assert self._runner is not None
        if not await self._runner.watch(self.config.cleanup_grace_s):
            if self.report is not None:
                self.report = attrs.evolve(self.report, stats=attrs.evolve(self.report.stats, agent_stuck=True))

    def _on_transport_closed(self, exc: TransportClosed, what: str) -> None:
        self.state.closed_under(exc, what, self.label)

    def _on_mark(self, mark: MarkPoint) -> None:
        event = MarkReached(mark.name) if mark.state is MarkState.REACHED else MarkCleared(mark.name)
        self.inbox.put_mark_nowait(event)

    async def _finalize(self) -> None:
        """Settle everything and close the socket (shielded, bounded). Idempotent."""
        state = self.state
        if state.finalized:
            return
        state.finalized = True
        if not self._agent_started:
            self._agent_done.set()  # there is no agent to wait for
        now = trio.current_time()
        if state.t_end is None:
            state.t_end = now
        self.playout.settle_all(now)
        if self._writer is not None:
            self._writer.release_clear_requests()
        self.inbox.close()
        if self._control is not None:
            self._control.close()
        state.ended.set()
        code = state.close_code
        # a provider that stopped reading will not read our close frame either: do not wait
        # for its reply
        close_timeout = _STALLED_CLOSE_S if state.end_cause is EndCause.SEND_TIMEOUT else self.config.close_timeout_s
        with trio.move_on_after(close_timeout, shield=True):
            try:
                # the peer closed or dropped (no code): just release our side
                await self.transport.aclose(code if code is not None else CloseCode.NORMAL, state.close_reason[:120] if code is not None else None)
            except Exception as exc:  # a broken socket: nothing more to do
                log.debug("call %s: close failed: %r", self.label, exc)
        if self._analyzer is not None:
            self._analyzer.close()
        recording = self.recording
        if recording is not None:
            # on every ending, an agent's crash included; bounded, and never an error
            with trio.move_on_after(self.config.close_timeout_s, shield=True):
                await recording.finish(state.t_end)
        self.teardown_s = trio.current_time() - state.t_end
        info = self.info
        stats = self.statistics()
        self.report = CallReport(
            call_id=info.call_id if info else "",
            provider=self.provider,
            caller=info.caller if info else "",
            called=info.called if info else "",
            duration_s=round(state.t_end - self._t_start, 6),
            end_cause=state.end_cause or EndCause.ENGINE_ERROR,
            close_code=state.close_code,
            close_reason=state.close_reason,
            teardown_s=round(self.teardown_s, 6),
            stats=stats,
            agent_error=self._runner.error if self._runner is not None else None,
            recording=str(recording.path) if recording is not None and (recording.error is None or recording.path.exists()) else None,
            recording_error=recording.error if recording is not None else None,
        )
        self._release(stats)
        self.closed.set()

    def _release(self, stats: CallStatistics) -> None:
        """Break the references between the call's parts, so that a finished call is freed
        by reference counting (the tuned collector of a server rarely runs a full pass)."""
        port = self._port
        if self.call is not None:
            self.call._detach(
                ClosedPort(
                    self.state.end_cause, stats, self.config.cleanup_grace_s, port.barge_in if port else False,
                    port.barge_in_mode if port else self.config.barge_in_mode,
                )
            )  # fmt: skip
        self.inbox.clear()
        self.playout._on_mark = _ignore_mark
        self._reader = None
        self._analyzer = None
        self._control = None
        self._port = None
        self._writer = None


def _ignore_mark(mark: MarkPoint) -> None:
    return None


def _split_cancelled(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(the cancellation part, the rest) of an exception or exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)
    if isinstance(exc, trio.Cancelled):
        return exc, None
    return None, exc


async def run_call(
    transport: Transport,
    agent: Agent,
    codec: Codec,
    config: CallConfig | None = None,
    *,
    provider: str | None = None,
    pending_messages: Sequence[WireMessage] | None = None,
) -> CallReport:
    """Run one call over ``transport`` to its end and return its :class:`CallReport`.

    Waits for the provider's start message (``config.start_timeout_s``), runs the agent
    with the reader, writer and barge-in tasks in one nursery, and closes the transport with
    a code that says why the call ended. Exceptions of the call (agent errors, protocol
    errors, a dropped socket) end the call and are reported, never raised; only
    cancellation from outside propagates, after the call has been closed with 1001.
    """
    session = CallSession(transport, agent, codec, config, provider=provider, pending_messages=pending_messages)
    return await session.run()
