"""The reader task: the provider's messages, decoded and routed. It never waits for anyone
but the socket (a reader that waits stops answering pings and close frames).

::

    transport.get_message() -> codec.receive() -> route:
        caller audio -> the agent's inbox (bounded, never blocks), then VAD and in-band DTMF
        mark echo    -> the playout plan
        dtmf         -> the agent's inbox
        stop / close -> end the call

What is not audio is counted; DTMF and mark echoes are rate-limited per call (a token
bucket) and unknown messages are logged a bounded number of times, so a peer that floods a
call with them costs the agent and the log a bounded amount. A stop is always honoured.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Sequence

import trio

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallerAudio, CallStopped, Connected, Dtmf, Event, MarkEchoed, UnknownMessage
from ..protocols.base import Codec, WireMessage
from .analyzer import Analyzer
from .causes import Counters, EndCause
from .inbox import Inbox
from .playout import Playout
from .recording import CallRecording
from .port import AgentPort
from .transport import Transport, TransportClosed

__all__ = ["Reader", "TokenBucket", "log_unknown", "UNKNOWN_LOGGED"]

log = logging.getLogger("callengine.call")

_EPS = 1e-9

#: Unknown messages logged per call at INFO; the rest are counted (and logged at DEBUG), so
#: a provider that floods a call with them cannot flood the log.
UNKNOWN_LOGGED = 5

End = Callable[[EndCause, "int | None", str], None]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. Pure: the caller passes the time."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class Reader:
    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        *,
        label: str,
        pending: Sequence[WireMessage],
        pending_events: Sequence[Event] = (),
        idle_timeout_s: float | None,
        inbox: Inbox[Event],
        port: AgentPort,
        analyzer: Analyzer,
        playout: Playout,
        counters: Counters,
        control_rate: TokenBucket,
        end: End,
        on_closed: Callable[[TransportClosed, str], None],
        recording: CallRecording | None = None,
    ) -> None:
        self._transport = transport
        self._codec = codec
        self._label = label
        self._pending = deque(pending)
        self._pending_events = list(pending_events)
        self._idle = idle_timeout_s
        self._inbox = inbox
        self._port = port  # read for .listening: whether the agent may still read audio
        self._analyzer = analyzer
        self._playout = playout
        self._counters = counters
        self._control_rate = control_rate
        self._end = end
        self._on_closed = on_closed
        self._recording = recording
        self._rate_limit_logged = False

    async def run(self) -> None:
        transport = self._transport
        receive = self._codec.receive
        route = self._route_all
        idle = self._idle
        try:
            route(self._pending_events)  # decoded before the reader ran (with the start)
            self._pending_events = []
            while self._pending:
                route(receive(self._pending.popleft()))
            if idle is None:
                while True:
                    route(receive(await transport.get_message()))
            # One cancel scope per idle period, not per message (entering and leaving a
            # scope with a deadline costs about as much as decoding a media frame): when the
            # deadline fires, it is re-armed from the last message's arrival if one came.
            last = trio.current_time()
            while True:
                with trio.move_on_at(last + idle):
                    while True:
                        msg = await transport.get_message()
                        last = trio.current_time()
                        route(receive(msg))
                if trio.current_time() >= last + idle - _EPS:
                    log.warning("call %s: no message for %.1f s, ending", self._label, idle)
                    self._end(EndCause.IDLE_TIMEOUT, CloseCode.GOING_AWAY, "idle timeout")
                    return
        except TransportClosed as exc:
            self._on_closed(exc, "provider closed")
        except RemoteProtocolError as exc:
            log.warning("call %s: protocol error: %s", self._label, exc)
            self._end(EndCause.PROTOCOL_ERROR, exc.close_code, str(exc)[:120])

    def _route_all(self, events: Sequence[Event]) -> None:
        for ev in events:
            if type(ev) is CallerAudio:
                self._audio(ev)
            else:
                self._control(ev)

    def _audio(self, ev: CallerAudio) -> None:
        counters = self._counters
        counters.frames_in += 1
        pcm = ev.pcm
        if not pcm:
            return
        seconds = len(pcm) / (2 * ev.sample_rate)
        counters.audio_in_s += seconds
        if self._port.listening:
            self._inbox.put_audio_nowait(ev, seconds)
        else:
            self._inbox.audio_unread += 1
        self._analyzer.process(pcm, ev.sample_rate)
        if self._recording is not None:
            self._recording.caller(pcm)

    def _control(self, ev: Event) -> None:
        counters = self._counters
        if isinstance(ev, CallerAudio):  # a subclass: same path
            self._audio(ev)
            return
        if isinstance(ev, CallStopped):
            log.info("call %s: provider stopped the call (%s)", self._label, ev.reason or "no reason")
            self._end(EndCause.PROVIDER_STOP, CloseCode.NORMAL, "call stopped")
            return
        counters.control_messages += 1
        if isinstance(ev, UnknownMessage):
            self.unknown(ev, "ignored")  # counted; its log lines are bounded
            return
        if isinstance(ev, Connected):
            return
        # what reaches the agent or the playout plan is rate-limited
        if not self._control_rate.take(trio.current_time()):
            counters.control_dropped += 1
            if not self._rate_limit_logged:
                self._rate_limit_logged = True
                log.warning("call %s: DTMF or mark messages over the per-call rate limit; ignoring the excess (counted)", self._label)
            return
        if isinstance(ev, Dtmf):
            counters.dtmf += 1
            self._inbox.put_event_nowait(ev)
        elif isinstance(ev, MarkEchoed):
            if not self._playout.mark_echoed(ev.name):
                log.debug("call %s: echo of unknown or settled mark %r", self._label, ev.name)
        else:
            log.debug("call %s: ignoring %r", self._label, ev)

    def unknown(self, ev: UnknownMessage, what: str) -> None:
        log_unknown(self._counters, self._label, ev, what)


def log_unknown(counters: Counters, label: str, ev: UnknownMessage, what: str) -> None:
    """Count an unknown message; log the first few at INFO, the rest at DEBUG."""
    n = counters.unknown_messages = counters.unknown_messages + 1
    if n < UNKNOWN_LOGGED:
        log.info("call %s: unknown message %r %s", label, ev.kind, what)
    elif n == UNKNOWN_LOGGED:
        log.info("call %s: unknown message %r %s; further ones are only counted", label, ev.kind, what)
    else:
        log.debug("call %s: unknown message %r %s", label, ev.kind, what)
