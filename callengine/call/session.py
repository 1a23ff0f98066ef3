"""One call = one nursery: the reader, writer, barge-in and agent tasks.

::

    reader    transport.get_message() in a tight loop -> codec -> route:
                audio -> agent queue (bounded, never blocks: drops the oldest), then VAD
                  and in-band DTMF on the frame; speech over the bot -> barge-in queue
                mark echo -> ledger;  dtmf -> agent;  stop / close -> end the call
    writer    the only task that sends: paces audio with a bounded lead over the provider's
              playout clock, sends marks, applies clears atomically, hangs up, transfers
    barge-in  acts on the reader's barge-in decisions: asks the writer to clear, waits
              until it has, tells the agent what was cut
    agent     the user's code, in its own cancel scope

The analysis (VAD, DTMF) runs in the reader, on the frame it just decoded: handing every
frame to a separate task cost a task switch and two queue operations per 20 ms frame, about
as much as the energy VAD itself. The barge-in task wakes only when the caller barges in.

Whoever ends the call calls :meth:`CallSession._end`, which records the cause and close code
and cancels the I/O scope. Then, shielded and bounded: every playback and mark is settled,
the socket is closed with the code, and the agent is cancelled; an agent that does not exit
within its grace is logged as stuck. Nothing is sent after the end.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Awaitable, Callable

import attrs
import trio

from ..audio.pcm import as_pcm16
from ..audio.resample import StreamResampler, resample
from ..audio.dtmf import DtmfDetector
from ..audio.vad import SpeechSegmenter, SpeechStart, make_vad
from ..errors import CloseCode, ProtocolError, RemoteProtocolError, UnsupportedCommand
from ..events import (
    BargeIn,
    CallerAudio,
    CallStarted,
    CallStopped,
    Clear,
    Command,
    Connected,
    Dtmf,
    Event,
    Hangup,
    Mark,
    MarkCleared,
    MarkEchoed,
    MarkReached,
    PlayAudio,
    SpeechEnded,
    SpeechStarted,
    Transfer,
    UnknownMessage,
)
from ..protocols.base import Codec
from .api import Call, CallEnded, CallInfo
from .channels import LossyQueue
from .config import CallConfig
from .ledger import MarkHandle, MarkState, Playback, PlayoutLedger
from .transport import Transport, TransportClosed

__all__ = ["CallSession", "CallReport", "run_call", "Agent"]

log = logging.getLogger("callengine.call")

Agent = Callable[[Call], Awaitable[Any]]

_EPS = 1e-9

#: Unknown messages logged per call at INFO; the rest are counted (and logged at DEBUG), so
#: a provider that floods a call with them cannot flood the log.
_UNKNOWN_LOGGED = 5


class _SendTimeout(Exception):
    """The connection did not take a message within ``send_timeout_s``."""


@attrs.frozen
class CallReport:
    """How a call went: the summary the server logs as one JSON line."""

    call_id: str
    provider: str
    caller: str
    called: str
    duration_s: float
    end_cause: str
    close_code: int | None
    close_reason: str
    teardown_s: float
    stats: dict
    agent_error: str | None = None

    def as_dict(self) -> dict:
        d = attrs.asdict(self)
        stats = d.pop("stats")
        d.update(stats)
        return d


@attrs.define
class _Control:
    kind: str  # "hangup" | "transfer"
    target: str = "default"
    cause: str = ""


@attrs.define
class _ClearRequest:
    reason: str
    done: trio.Event = attrs.field(factory=trio.Event)
    result: list = attrs.field(factory=list)


class CallSession:
    """Runs one call over ``transport`` with ``codec`` (ENGINE role) and the ``agent``."""

    def __init__(
        self,
        transport: Transport,
        agent: Agent,
        codec: Codec,
        config: CallConfig | None = None,
        *,
        provider: str | None = None,
        pending_messages: list | None = None,
    ) -> None:
        self.transport = transport
        self.agent = agent
        self.codec = codec
        self.config = config or CallConfig()
        self.provider = provider or codec.name
        self._pending_messages = deque(pending_messages or ())
        caps = codec.capabilities
        self.caps = caps
        self.chunk_s = (self.config.chunk_ms or caps.chunk_ms) / 1000
        self.lead_s = (self.config.lead_ms or caps.lead_ms) / 1000
        self.ledger = PlayoutLedger(self.lead_s)
        self.barge_in = self.config.barge_in
        self.info: CallInfo | None = None
        self.call: Call | None = None
        self.outbox: deque[Playback | MarkHandle | _Control] = deque()
        self._clear_requests: list[_ClearRequest] = []
        self._control: _Control | None = None  # hang-up / transfer requested
        self._control_sent_at: float | None = None
        self._wake = trio.Event()
        self._send_scope: trio.CancelScope | None = None  # the writer's (see _send_message)
        self._io_scope = trio.CancelScope()
        self._agent_scope = trio.CancelScope()
        self._agent_done = trio.Event()
        self._ended_event = trio.Event()
        self.closed = trio.Event()  # set once the socket is closed and the report is ready
        self._finalized = False
        self.end_cause: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.agent_error: BaseException | None = None
        self._t_start = trio.current_time()
        self._t_end: float | None = None
        self.teardown_s = 0.0
        self.report: CallReport | None = None
        self._agent_queue: LossyQueue[Event] | None = None
        self._bargein_queue: LossyQueue[float] | None = None  # onsets (s) of barge-ins to act on
        self._segmenter = None  # SpeechSegmenter on the wire-rate caller audio
        self._dtmf = None  # DtmfDetector when in-band DTMF is on
        self._min_speech_s = 0.0
        self._barged_this_segment = False
        self._inbound_resampler: StreamResampler | None = None
        self.stats = {
            "frames_in": 0,
            "frames_out": 0,
            "audio_in_s": 0.0,
            "audio_out_s": 0.0,
            "frames_dropped": 0,
            "underruns": 0,
            "starved": 0,
            "barge_ins": 0,
            "clears": 0,
            "marks": 0,
            "mark_echoes": 0,
            "mark_fallbacks": 0,
            "dtmf": 0,
            "speech_segments": 0,
            "unknown_messages": 0,
            "max_queued_ms": 0.0,
        }

    # ================================================================== the agent's side

    async def next_agent_event(self) -> Event:
        assert self._agent_queue is not None
        event = await self._agent_queue.get()
        resampler = self._inbound_resampler
        if isinstance(event, CallerAudio) and resampler is not None and not resampler.passthrough:
            out = resampler.process(event.pcm)
            event = CallerAudio(out.astype("<i2", copy=False).tobytes(), resampler.out_rate)
        return event

    def _check_open(self) -> None:
        if self.end_cause is not None or self._finalized:
            raise CallEnded(f"the call has ended ({self.end_cause})")
        if self._control is not None:
            raise CallEnded(f"a {self._control.kind} is in progress")

    def _to_wire(self, audio, sample_rate: int) -> bytes:
        pcm = as_pcm16(audio)
        out_rate = self.codec.outbound_rate
        if sample_rate == out_rate or not pcm:
            return pcm
        return resample(pcm, sample_rate, out_rate).astype("<i2", copy=False).tobytes()

    def enqueue_audio(self, audio, sample_rate: int, *, finish: bool) -> Playback:
        self._check_open()
        out_rate = self.codec.outbound_rate
        pb = Playback(out_rate, 2 * max(1, int(round(self.chunk_s * out_rate))))
        if not finish:
            pb.resampler = StreamResampler(sample_rate, out_rate, low_latency=True)
            self._feed(pb, audio)
        else:
            pb._feed(self._to_wire(audio, sample_rate))
            pb._finish()
        pb.queued_at = trio.current_time()
        pb.ready_at = pb.queued_at
        self.outbox.append(pb)
        self._wake.set()
        return pb

    def _feed(self, pb: Playback, audio) -> None:
        resampler = pb.resampler
        pcm = as_pcm16(audio)
        if not resampler.passthrough:
            pcm = resampler.process(pcm).astype("<i2", copy=False).tobytes()
        pb._feed(pcm)
        pb.ready_at = trio.current_time()

    def extend_audio(self, pb: Playback, audio) -> None:
        if pb.done or not pb.open:
            return  # cleared or finished: the rest of a cut playback is dropped
        self._check_open()
        self._feed(pb, audio)
        self._wake.set()

    def finish_audio(self, pb: Playback) -> None:
        if pb.open and not pb.done:
            tail = pb.resampler.flush().astype("<i2", copy=False).tobytes()
            pb._feed(tail)
            pb._finish()
            self._wake.set()

    def enqueue_mark(self, name: str) -> MarkHandle:
        self._check_open()
        handle = MarkHandle(str(name))
        self.outbox.append(handle)
        self._wake.set()
        return handle

    async def request_clear(self, reason: str) -> list:
        """Ask the writer to clear; wait until it has. Returns the interrupted results."""
        if self.end_cause is not None:
            await trio.lowlevel.checkpoint()
            return []
        req = _ClearRequest(reason)
        self._clear_requests.append(req)
        self._wake.set()
        await req.done.wait()
        return req.result

    async def request_control(self, kind: str, target: str = "default", cause: str | None = None) -> None:
        if kind == "transfer" and not self.caps.transfer:
            raise UnsupportedCommand(f"{self.provider} cannot transfer a call from the media socket")
        if kind == "transfer":
            # codecs encode a transfer without touching their state: encoding it here checks
            # the target and gives the agent the error at its call site
            self.codec.send(Transfer(target))
        self._request_control_nowait(kind, target, cause or kind)
        await self._ended_event.wait()

    def _request_control_nowait(self, kind: str, target: str = "default", cause: str = "") -> None:
        if self.end_cause is not None or self._control is not None:
            return
        self._control = _Control(kind, target, cause or kind)
        self.outbox.append(self._control)
        self._wake.set()

    def statistics(self) -> dict:
        s = dict(self.stats)
        if self._agent_queue is not None:
            s["frames_dropped"] = self._agent_queue.dropped
        s["underruns"] = self.ledger.underruns
        s["starved"] = self.ledger.starved
        s["max_queued_ms"] = round(self.ledger.max_queued * 1000, 3)
        s["audio_out_s"] = round(self.ledger.seconds_sent, 6)
        s["audio_in_s"] = round(s["audio_in_s"], 6)
        return s

    # ================================================================== lifecycle

    def _end(self, cause: str, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """End the call (first caller wins): record why, cancel the I/O tasks."""
        if self.end_cause is not None:
            return
        self.end_cause = cause
        self.close_code = code
        self.close_reason = reason or cause
        self._t_end = trio.current_time()
        self._io_scope.cancel()

    async def run(self) -> CallReport:
        """Run the call to its end. Returns its report; re-raises only outside cancellation
        (server shutdown), after the call was closed with 1001."""
        try:
            started = await self._await_start()
            if started is not None:
                self._setup(started)
                await self._run_tasks()
        except BaseException as exc:
            cancelled, rest = _split_cancelled(exc)
            if rest is not None and not isinstance(rest, Exception):
                raise  # KeyboardInterrupt, SystemExit: not ours to handle
            if self.end_cause is None:
                if rest is None:
                    self._end("shutdown", CloseCode.GOING_AWAY, "server shutting down")
                else:
                    log.error("engine error in call %s", self._label(), exc_info=rest)
                    self._end("engine_error", CloseCode.INTERNAL_ERROR, "engine error")
            elif rest is not None:
                log.error("engine error in call %s while ending", self._label(), exc_info=rest)
            await self._finalize()
            if cancelled is not None:
                raise
        else:
            await self._finalize()
        assert self.report is not None
        return self.report

    def _label(self) -> str:
        return f"{self.provider}:{self.info.call_id if self.info else '?'}"

    @property
    def label(self) -> str:
        """``provider:call_id`` ("?" until the start message named the call), for logs."""
        return self._label()

    @property
    def agent_done(self) -> trio.Event:
        """Set once the agent's task has exited (or never started)."""
        return self._agent_done

    def agent_location(self) -> str:
        """Where the agent's task is waiting now (file:line in function, innermost first)."""
        return "unknown"

    async def _await_start(self) -> CallStarted | None:
        with trio.move_on_after(self.config.start_timeout_s) as scope:
            try:
                while True:
                    msg = self._pending_messages.popleft() if self._pending_messages else await self.transport.get_message()
                    for ev in self.codec.receive(msg):
                        if isinstance(ev, CallStarted):
                            return ev
                        if isinstance(ev, UnknownMessage):
                            self._on_unknown(ev, "before start")
            except TransportClosed as exc:
                if exc.code == CloseCode.MESSAGE_TOO_BIG:
                    log.warning("call %s: closed with 1009 before start: %s", self._label(), exc.reason or "message too big")
                    self._end("message_too_big", CloseCode.MESSAGE_TOO_BIG, exc.reason or "message too big")
                else:
                    self._end("disconnected", None, "closed before start")
                return None
            except ProtocolError as exc:
                log.warning("call %s: protocol error before start: %s", self._label(), exc)
                self._end("protocol_error", exc.close_code, str(exc)[:120])
                return None
        if scope.cancelled_caught:
            log.warning("call %s: no start message within %.1f s", self._label(), self.config.start_timeout_s)
            self._end("start_timeout", CloseCode.PROTOCOL_ERROR, "no start message")
        return None

    def _setup(self, started: CallStarted) -> None:
        cfg = self.config
        wire_rate = started.sample_rate or self.codec.inbound_rate
        self.info = CallInfo(
            call_id=started.call_id,
            provider=self.provider,
            caller=started.caller,
            called=started.called,
            custom=dict(started.custom),
            stream_id=started.stream_id,
            direction=started.direction,
            sample_rate=cfg.agent_rate,
            wire_rate=wire_rate,
        )
        frame_s = 0.02
        max_frames = max(1, int(cfg.inbound_queue_ms / 1000 / frame_s))
        self._agent_queue = LossyQueue(max_frames)
        self._bargein_queue = LossyQueue(1)
        self._inbound_resampler = StreamResampler(wire_rate, cfg.agent_rate, low_latency=True)
        self._segmenter = SpeechSegmenter(make_vad(cfg.vad, sample_rate=wire_rate))
        self._min_speech_s = cfg.min_speech_ms / 1000
        inband = cfg.inband_dtmf if cfg.inband_dtmf is not None else not self.caps.dtmf_events
        if inband:
            self._dtmf = DtmfDetector(sample_rate=wire_rate)
        self.call = Call(self, self.info)
        log.info(
            "call started %s caller=%s called=%s wire_rate=%d",
            self._label(),
            self.info.caller,
            self.info.called,
            wire_rate,
        )

    async def _run_tasks(self) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(self._agent_task)
            try:
                with self._io_scope:
                    async with trio.open_nursery() as io:
                        io.start_soon(self._reader)
                        io.start_soon(self._writer)
                        io.start_soon(self._bargein)
            finally:
                self._agent_scope.cancel()
            if self.end_cause is not None:
                await self._finalize()
                outer.start_soon(self._agent_watchdog)

    async def _agent_task(self) -> None:
        assert self.call is not None
        try:
            with self._agent_scope:
                try:
                    await self.agent(self.call)
                except CallEnded:
                    pass  # the agent touched the call after its end: that is how it learns
                except Exception as exc:
                    self.agent_error = exc
                    log.error("call %s: agent raised %r", self._label(), exc, exc_info=exc)
                    self._end("agent_error", CloseCode.INTERNAL_ERROR, f"agent error: {type(exc).__name__}")
                else:
                    # the agent is done talking: let queued audio play, then hang up
                    self._request_control_nowait("hangup", cause="agent_returned")
        finally:
            self._agent_done.set()

    async def _agent_watchdog(self) -> None:
        with trio.move_on_after(self.config.cleanup_grace_s + 0.1):
            await self._agent_done.wait()
            return
        log.error(
            "call %s: the agent has not exited %.1f s after the call ended; it swallows "
            "trio.Cancelled or shields an endless wait. The call is closed; its task lingers.",
            self._label(),
            self.config.cleanup_grace_s,
        )
        self.stats["agent_stuck"] = 1
        await self._agent_done.wait()

    async def _finalize(self) -> None:
        """Settle everything and close the socket (shielded, bounded). Idempotent."""
        if self._finalized:
            return
        self._finalized = True
        now = trio.current_time()
        if self._t_end is None:
            self._t_end = now
        self._settle_all(now)
        if self._agent_queue is not None:
            self._agent_queue.close()
        if self._bargein_queue is not None:
            self._bargein_queue.close()
        self._ended_event.set()
        if self.close_code is not None:
            with trio.move_on_after(self.config.close_timeout_s, shield=True):
                try:
                    await self.transport.aclose(self.close_code, self.close_reason[:120])
                except Exception as exc:  # a broken socket: nothing more to do
                    log.debug("call %s: close failed: %r", self._label(), exc)
        else:
            # the peer closed or dropped: just release our side
            with trio.move_on_after(self.config.close_timeout_s, shield=True):
                try:
                    await self.transport.aclose(CloseCode.NORMAL)
                except Exception:
                    pass
        self.teardown_s = trio.current_time() - self._t_end
        info = self.info
        self.report = CallReport(
            call_id=info.call_id if info else "",
            provider=self.provider,
            caller=info.caller if info else "",
            called=info.called if info else "",
            duration_s=round(self._t_end - self._t_start, 6),
            end_cause=self.end_cause or "unknown",
            close_code=self.close_code,
            close_reason=self.close_reason,
            teardown_s=round(self.teardown_s, 6),
            stats=self.statistics(),
            agent_error=repr(self.agent_error) if self.agent_error else None,
        )
        self.closed.set()

    def _settle_all(self, now: float) -> None:
        for pb in list(self.ledger.in_flight) + [x for x in self.outbox if isinstance(x, Playback)]:
            if not pb.done:
                end = pb.end_time
                complete = end is not None and now >= end - _EPS
                pb._settle(not complete, pb.played_seconds(now))
            pb.drop_unsent()
        self.ledger.in_flight.clear()
        for m in list(self.ledger.marks) + [x for x in self.outbox if isinstance(x, MarkHandle)]:
            m._settle(MarkState.CLEARED)
        self.ledger.marks.clear()
        self.outbox.clear()
        for req in self._clear_requests:
            req.done.set()
        self._clear_requests.clear()

    # ================================================================== reader

    async def _reader(self) -> None:
        idle = self.config.idle_timeout_s
        try:
            while self._pending_messages:
                self._route_all(self.codec.receive(self._pending_messages.popleft()))
            if idle is None:
                while True:
                    self._route_all(self.codec.receive(await self.transport.get_message()))
            # One cancel scope per idle period, not per message (entering and leaving a
            # scope with a deadline costs about as much as decoding a media frame): when the
            # deadline fires, it is re-armed from the last message's arrival if one came.
            last = trio.current_time()
            while True:
                with trio.move_on_at(last + idle):
                    while True:
                        msg = await self.transport.get_message()
                        last = trio.current_time()
                        self._route_all(self.codec.receive(msg))
                if trio.current_time() >= last + idle - _EPS:
                    log.warning("call %s: no message for %.1f s, ending", self._label(), idle)
                    self._end("idle_timeout", CloseCode.GOING_AWAY, "idle timeout")
                    return
        except TransportClosed as exc:
            self._on_transport_closed(exc, "provider closed")
        except RemoteProtocolError as exc:
            log.warning("call %s: protocol error: %s", self._label(), exc)
            self._end("protocol_error", exc.close_code, str(exc)[:120])

    def _on_transport_closed(self, exc: TransportClosed, what: str) -> None:
        """Why the call ended when the connection closed under the reader or the writer:
        both see the same close, and whichever notices first must reach the same cause."""
        if self._control is not None and self._control_sent_at is not None:
            self._end(self._control.cause, None, f"provider closed after {self._control.kind}")
        elif exc.code in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
            # a clean close is how a provider without a stop message hangs up
            self._end("provider_stop", None, f"{what} (code {exc.code})")
        elif exc.code == CloseCode.MESSAGE_TOO_BIG:
            # the transport refused an inbound message over its size limit and closed
            if self.end_cause is None:
                log.warning("call %s: closed with 1009: %s", self._label(), exc.reason or "message too big")
            self._end("message_too_big", CloseCode.MESSAGE_TOO_BIG, exc.reason or "message too big")
        else:
            if self.end_cause is None:
                log.warning("call %s: connection lost (%s, close code %s)", self._label(), what, exc.code)
            self._end("disconnected", None, f"{what} (code {exc.code})")

    def _route_all(self, events) -> None:
        for ev in events:
            self._route(ev)

    def _route(self, ev: Event) -> None:
        if isinstance(ev, CallerAudio):
            self.stats["frames_in"] += 1
            if ev.pcm:
                self.stats["audio_in_s"] += ev.duration
                self._agent_queue.put_nowait(ev, droppable=True)
                self._analyze(ev)
        elif isinstance(ev, Dtmf):
            self.stats["dtmf"] += 1
            self._agent_queue.put_nowait(ev)
        elif isinstance(ev, MarkEchoed):
            self._on_mark_echo(ev.name)
        elif isinstance(ev, CallStopped):
            log.info("call %s: provider stopped the call (%s)", self._label(), ev.reason or "no reason")
            self._end("provider_stop", CloseCode.NORMAL, "call stopped")
        elif isinstance(ev, UnknownMessage):
            self._on_unknown(ev, "ignored")
        elif isinstance(ev, Connected):
            pass
        else:
            log.debug("call %s: ignoring %r", self._label(), ev)

    def _on_unknown(self, ev: UnknownMessage, what: str) -> None:
        n = self.stats["unknown_messages"] = self.stats["unknown_messages"] + 1
        if n < _UNKNOWN_LOGGED:
            log.info("call %s: unknown message %r %s", self._label(), ev.kind, what)
        elif n == _UNKNOWN_LOGGED:
            log.info("call %s: unknown message %r %s; further ones are only counted", self._label(), ev.kind, what)
        else:
            log.debug("call %s: unknown message %r %s", self._label(), ev.kind, what)

    def _on_mark_echo(self, name: str) -> None:
        for m in self.ledger.marks:
            if m.name == name and m.echo_expected and m.state is MarkState.PENDING:
                self.ledger.marks.remove(m)
                self.stats["mark_echoes"] += 1
                self._reach_mark(m)
                return
        log.debug("call %s: echo of unknown or settled mark %r", self._label(), name)

    def _reach_mark(self, m: MarkHandle) -> None:
        if m._settle(MarkState.REACHED):
            self._agent_queue.put_nowait(MarkReached(m.name))

    # ================================================================== writer

    async def _send(self, command: Command) -> None:
        for msg in self.codec.send(command):
            if self._finalized:
                return  # nothing goes out after the end
            await self._send_message(msg)

    async def _send_message(self, msg) -> None:
        """Send one message (writer task only). If the connection has not taken it within
        ``send_timeout_s`` (a provider that stopped reading: its socket buffer is full), the
        writer's send scope is cancelled and :meth:`_writer` ends the call."""
        scope = self._send_scope
        if scope is None:
            await self.transport.send_message(msg)
        else:
            # The writer runs inside ``scope``, whose deadline is finite only while a message
            # is being sent: when it expires, the cancellation lands in that send. (A cancel
            # scope per message cost 5-10% of the engine's CPU.) A send that outlasts the
            # deadline counts as timed out even if it then completes.
            scope.deadline = trio.current_time() + self.config.send_timeout_s
            try:
                await self.transport.send_message(msg)
            finally:
                scope.deadline = math.inf
        self.stats["frames_out"] += 1

    async def _writer(self) -> None:
        try:
            if self.config.send_timeout_s is None:
                await self._writer_loop()
            else:
                self._send_scope = trio.CancelScope()
                with self._send_scope:
                    await self._writer_loop()
                if self._send_scope.cancelled_caught:
                    raise _SendTimeout
        except TransportClosed as exc:
            self._on_transport_closed(exc, "send failed, closed")
        except _SendTimeout:
            timeout = self.config.send_timeout_s
            log.warning("call %s: the provider has not taken a message for %.1f s (it stopped reading); ending", self._label(), timeout)
            self._end("send_timeout", CloseCode.GOING_AWAY, "send timeout")

    async def _writer_loop(self) -> None:
        ledger = self.ledger
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            if self._clear_requests:
                await self._apply_clear(now)
                continue
            self._settle_due(now)
            wake_at = self._next_due()
            head = self.outbox[0] if self.outbox else None
            if isinstance(head, Playback):
                if head.exhausted:
                    self.outbox.popleft()
                    if not head.segments:
                        head._settle(False, 0.0)  # an empty playback is done at once
                    continue
                if head.has_unsent:
                    seconds = len(head.peek_chunk()) / (2 * head.rate)
                    if ledger.may_send(now, seconds):
                        chunk = head.pop_chunk()
                        ledger.record(head, now, seconds, ready_at=head.ready_at)
                        await self._send(PlayAudio(chunk, head.rate))
                        continue
                    wake_at = min(wake_at, ledger.send_time(seconds))
                elif head.has_partial:
                    # A streaming playback paused (nothing fed for a whole chunk) with less
                    # than a chunk buffered: rather than hold it back until more audio
                    # comes, send it as a short chunk once the provider is about to run dry.
                    # A producer that keeps feeding still gets whole chunks (Knowlarity
                    # plays each 200 ms clip as a file; 20 ms clips would be wasteful).
                    flush_at = max(ledger.play_end - 0.25 * self.chunk_s, head.ready_at + self.chunk_s)
                    if now >= flush_at - _EPS:
                        head.flush_partial()
                        continue
                    wake_at = min(wake_at, flush_at)
            elif isinstance(head, MarkHandle):
                self.outbox.popleft()
                head.due = max(now, ledger.play_end)
                self.stats["marks"] += 1
                if self.caps.mark_echo:
                    head.echo_expected = True
                    head.deadline = head.due + self.config.mark_grace_s
                    ledger.marks.append(head)
                    await self._send(Mark(head.name))
                else:
                    head.deadline = head.due
                    ledger.marks.append(head)
                continue
            elif isinstance(head, _Control):
                if self._control_sent_at is None:
                    if ledger.audible(now) or ledger.in_flight:
                        wake_at = min(wake_at, ledger.play_end)
                    else:
                        await self._send_control(head, now)
                        continue
                else:
                    deadline = self._control_sent_at + self.config.hangup_timeout_s
                    if now >= deadline - _EPS:
                        log.info("call %s: provider did not close %.1f s after %s; closing", self._label(), self.config.hangup_timeout_s, head.kind)
                        self._end(head.cause, CloseCode.NORMAL, head.kind)
                        return
                    wake_at = min(wake_at, deadline)
            if wake_at == math.inf:
                await self._wake.wait()
            else:
                with trio.move_on_at(wake_at):
                    await self._wake.wait()

    async def _send_control(self, control: _Control, now: float) -> None:
        command = Transfer(control.target) if control.kind == "transfer" else Hangup()
        msgs = self.codec.send(command)
        self._control_sent_at = now
        for msg in msgs:
            await self._send_message(msg)
        if not self.caps.hangup_message or not msgs:
            # hang-up is closing the socket (Awaaz): do it now
            self._end(control.cause, CloseCode.NORMAL, control.kind)

    def _settle_due(self, now: float) -> None:
        ledger = self.ledger
        while ledger.in_flight:
            pb = ledger.in_flight[0]
            end = pb.end_time
            if pb.done:
                ledger.in_flight.popleft()
            elif end is not None and now >= end - _EPS:
                ledger.in_flight.popleft()
                pb._settle(False, pb.played_seconds(end))
            else:
                break
        if ledger.marks:
            for m in list(ledger.marks):
                limit = m.deadline if m.deadline is not None else m.due
                if limit is not None and now >= limit - _EPS:
                    ledger.marks.remove(m)
                    if m.echo_expected:
                        self.stats["mark_fallbacks"] += 1
                        log.debug("call %s: mark %r reached by deadline, no echo", self._label(), m.name)
                    self._reach_mark(m)

    def _next_due(self) -> float:
        t = math.inf
        for pb in self.ledger.in_flight:
            end = pb.end_time
            if end is not None:
                t = min(t, end)
        for m in self.ledger.marks:
            limit = m.deadline if m.deadline is not None else m.due
            if limit is not None:
                t = min(t, limit)
        return t

    async def _apply_clear(self, now: float) -> None:
        """Drop unsent audio, tell the provider, settle marks: all before the first await."""
        requests, self._clear_requests = self._clear_requests, []
        ledger = self.ledger
        flushes = self.caps.clear
        self._settle_due(now)
        interrupted = []
        for pb in list(ledger.in_flight):
            if pb.done:
                continue
            if flushes:
                interrupted.append(pb._settle(True, pb.played_seconds(now)))
                pb.drop_unsent()
            elif not pb.exhausted:
                # the provider keeps playing what it has: the caller hears all that was sent
                pb.drop_unsent()
                interrupted.append(pb._settle(True, pb.sent_seconds))
        if flushes:
            ledger.in_flight.clear()
        kept: deque = deque()
        for item in self.outbox:
            if isinstance(item, Playback):
                if not item.done:
                    item.drop_unsent()
                    interrupted.append(item._settle(True, item.sent_seconds if not flushes else item.played_seconds(now)))
            elif isinstance(item, MarkHandle):
                if item._settle(MarkState.CLEARED):
                    self._agent_queue.put_nowait(MarkCleared(item.name))
            else:
                kept.append(item)
        self.outbox = kept
        if flushes:
            for m in ledger.marks:
                if m._settle(MarkState.CLEARED):
                    self._agent_queue.put_nowait(MarkCleared(m.name))
            ledger.marks.clear()
            ledger.flush(now)
        self.stats["clears"] += 1
        for req in requests:
            req.result = interrupted
            req.done.set()
        if flushes:
            await self._send(Clear())

    # ================================================================== barge-in

    def _analyze(self, audio: CallerAudio) -> None:
        """VAD and in-band DTMF on one inbound frame (reader task, no await). Tells the
        agent about keys and speech; hands a barge-in to the barge-in task."""
        assert self.info is not None and self._segmenter is not None
        if audio.sample_rate != self.info.wire_rate:
            return  # a rate change mid-call is not a thing providers do
        queue = self._agent_queue
        if self._dtmf is not None:
            for key in self._dtmf.process(audio.pcm):
                self.stats["dtmf"] += 1
                queue.put_nowait(Dtmf(key.digit))
        segmenter = self._segmenter
        for seg in segmenter.process(audio.pcm):
            if type(seg) is SpeechStart:
                self.stats["speech_segments"] += 1
                self._barged_this_segment = False
                queue.put_nowait(SpeechStarted(seg.at_seconds))
            else:
                queue.put_nowait(SpeechEnded(seg.at_seconds, seg.duration_seconds))
        onset = segmenter.current
        if (
            onset is not None
            and not self._barged_this_segment
            and self.barge_in
            and segmenter.speech_seconds >= self._min_speech_s - _EPS  # hang-over is not speech
            and self.ledger.audible(trio.current_time())
        ):
            self._barged_this_segment = True
            self.stats["barge_ins"] += 1
            self._bargein_queue.put_nowait(onset.at_seconds)

    async def _bargein(self) -> None:
        assert self._bargein_queue is not None
        async for onset_s in self._bargein_queue:
            interrupted = await self.request_clear("barge-in")
            log.info("call %s: barge-in at %.3f s, %d playback(s) cut", self._label(), onset_s, len(interrupted))
            self._agent_queue.put_nowait(BargeIn(onset_s, tuple(interrupted)))


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
    pending_messages: list | None = None,
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
