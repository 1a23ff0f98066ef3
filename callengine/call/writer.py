"""The writer task: the only task that sends on the socket.

It follows the playout plan (:class:`~callengine.call.playout.Playout`): audio paced with a
bounded lead over the provider's playout clock, marks, the hang-up or transfer once the
queued audio has played. A clear is applied atomically: unsent audio dropped, marks settled
and the provider told, all before the writer's next await.

It also watches that the provider still reads:

* a send the connection has not taken within ``send_timeout_s`` (the socket buffer is
  full) ends the call ("send_timeout", 1001);
* where the transport can tell (the server's own WebSocket connection), a provider whose
  kernel keeps our bytes unsent (its window is closed) for ``send_timeout_s``, or which
  leaves a keepalive ping unanswered that long after it has answered one before, has
  stopped reading, and the call ends the same way. The keepalive task looks every
  ``keepalive_s`` and asks the writer for a ping; a peer that never answers pings is not
  judged by them. (A separate task, so that the writer's waits stay without a deadline
  when nothing is due: a cancel scope per wait costs as much as framing a message.)

However the plan misbehaves, the writer never spins: a wake time that is not in the future
is waited for at most once in a row; after that it waits a chunk and logs the bug once.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Awaitable, Callable

import attrs
import trio

from ..errors import CloseCode
from ..events import Clear, Command, Hangup, Mark, PlayAudio, PlaybackResult, Transfer
from ..protocols.base import Codec, WireMessage
from .causes import ControlKind, Counters, EndCause
from .playout import Control, ControlTimedOut, Playout, SendChunk, SendControl, SendMark
from .recording import CallRecording
from .transport import Transport, TransportClosed

__all__ = ["Writer", "PlayoutRequest", "ClearRequest"]

log = logging.getLogger("callengine.call")

_EPS = 1e-9

End = Callable[[EndCause, "int | None", str], None]


class _SendTimeout(Exception):
    """The connection did not take a message within ``send_timeout_s``."""


@attrs.define
class PlayoutRequest:
    """What another task asks of the playout, applied by the writer between two sends:
    ``kind`` "clear" (drop the audio), "pause" (hold it back), "resume" (send it on) or
    "cut" (drop the audio held back by a pause; nothing if there is no pause).
    ``result``: the playbacks a clear or cut interrupted; ``applied``: whether a pause,
    resume or cut found something to act on."""

    reason: str
    kind: str = "clear"
    done: trio.Event = attrs.field(factory=trio.Event)
    result: list[PlaybackResult] = attrs.field(factory=list)
    applied: bool = False


ClearRequest = PlayoutRequest


class Writer:
    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        playout: Playout,
        *,
        label: str,
        counters: Counters,
        send_timeout_s: float | None,
        keepalive_s: float | None,
        end: End,
        ended: Callable[[], bool],
        on_closed: Callable[[TransportClosed, str], None],
        remote_control: "Callable[[ControlKind, str], Awaitable[str]] | None" = None,
        remote_timeout_s: float = 5.0,
        recording: CallRecording | None = None,
    ) -> None:
        self._transport = transport
        self._codec = codec
        self._playout = playout
        self._label = label
        self._counters = counters
        self._send_timeout = send_timeout_s
        self._end = end
        self._ended = ended
        self._on_closed = on_closed
        self._hangup_is_message = codec.capabilities.hangup_message
        self._remote = remote_control
        self._remote_timeout = remote_timeout_s
        self._recording = recording
        self._wake = trio.Event()
        self._send_scope: trio.CancelScope | None = None
        self._deadline_per_send = True
        self.clear_requests: list[ClearRequest] = []
        # liveness, where the transport offers it
        self._keepalive = keepalive_s
        self._send_ping: Any = getattr(transport, "send_ping", None) if keepalive_s else None
        self._unsent_bytes: Any = getattr(transport, "unsent_bytes", None)
        self._ping_due = False
        self._unsent_since: float | None = None
        self._spin_logged = False

    @property
    def watches_liveness(self) -> bool:
        """The transport can tell whether the provider still reads (run :meth:`keepalive`)."""
        return self._send_ping is not None or self._unsent_bytes is not None

    def poke(self) -> None:
        """There is new work (audio, a mark, a control, a clear)."""
        self._wake.set()

    async def request_clear(self, reason: str) -> list[PlaybackResult]:
        """Ask the writer to clear; wait until it has. Returns the interrupted results."""
        return (await self.request(PlayoutRequest(reason))).result

    async def request(self, req: PlayoutRequest) -> PlayoutRequest:
        """Ask the writer for a clear, pause, resume or cut; wait until it has applied it
        (at its next turn, before its next send). Returns ``req``, filled in."""
        self.clear_requests.append(req)
        self._wake.set()
        await req.done.wait()
        return req

    def release_clear_requests(self) -> None:
        """The call is over: wake everyone waiting for a clear (nothing was cut)."""
        for req in self.clear_requests:
            req.done.set()
        self.clear_requests.clear()

    # --- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self._send_timeout is None:
                await self._loop()
            else:
                self._send_scope = trio.CancelScope()
                watch = getattr(self._transport, "watch_send_blocking", None)
                # where the connection says when a send waits, the deadline is armed only
                # then (moving a scope's deadline costs about as much as framing a message)
                self._deadline_per_send = not (watch is not None and watch(self._send_waits))
                with self._send_scope:
                    await self._loop()
                if self._send_scope.cancelled_caught:
                    raise _SendTimeout
        except TransportClosed as exc:
            self._on_closed(exc, "send failed, closed")
        except _SendTimeout:
            log.warning(
                "call %s: the provider has not taken a message for %.1f s (it stopped reading); ending",
                self._label,
                self._send_timeout,
            )
            self._end(EndCause.SEND_TIMEOUT, CloseCode.GOING_AWAY, "send timeout")

    async def _loop(self) -> None:
        playout = self._playout
        past_waits = 0
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            if self.clear_requests:
                await self._apply_clear(now)
                continue
            action = playout.next_action(now)
            kind = type(action)
            if kind is SendChunk:
                assert isinstance(action, SendChunk)
                past_waits = 0
                if self._recording is not None:
                    rate = action.playback.rate
                    # the ledger has just placed this chunk: it ends at play_end
                    self._recording.bot(action.pcm, rate, playout.ledger.play_end - len(action.pcm) / (2 * rate))
                await self._send(PlayAudio(action.pcm, action.playback.rate))
                continue
            if kind is SendMark:
                assert isinstance(action, SendMark)
                await self._send(Mark(action.mark.name))
                continue
            if kind is SendControl:
                assert isinstance(action, SendControl)
                await self._send_control(action.control)
                continue
            if kind is ControlTimedOut:
                assert isinstance(action, ControlTimedOut)
                control = action.control
                log.info("call %s: provider did not close %.1f s after %s; closing", self._label, playout.hangup_timeout_s, control.kind)
                self._end(control.cause, CloseCode.NORMAL, str(control.kind))
                return
            if self._ping_due:
                self._ping_due = False
                await self._send_ping()
                self._counters.pings_sent += 1
                continue
            until = action.until  # type: ignore[union-attr]
            if until <= now + _EPS:
                past_waits += 1
                if past_waits >= 2:
                    if not self._spin_logged:
                        self._spin_logged = True
                        log.error("call %s: the playout plan asked to wait until %.6f at %.6f again; waiting a chunk (a bug)", self._label, until, now)
                    until = now + playout.chunk_s
            else:
                past_waits = 0
            if until == math.inf:
                await self._wake.wait()
            else:
                with trio.move_on_at(until):
                    await self._wake.wait()

    async def keepalive(self) -> None:
        """The keepalive task: every ``keepalive_s``, judge whether the provider still reads,
        and have the writer ping it when no ping is outstanding. Ends the call
        ("send_timeout", 1001) for a provider that stopped reading."""
        transport: Any = self._transport
        timeout = self._send_timeout
        interval = self._keepalive or 1.0
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            stalled_since = math.inf
            if self._send_ping is not None:
                since = transport.ping_outstanding_since
                if since is None:
                    self._ping_due = True
                    self._wake.set()
                elif transport.pongs_received > 0:
                    stalled_since = since
            if self._unsent_bytes is not None:
                if self._unsent_bytes():
                    if self._unsent_since is None:
                        self._unsent_since = now
                    stalled_since = min(stalled_since, self._unsent_since)
                else:
                    self._unsent_since = None
            if timeout is not None and now - stalled_since >= timeout - _EPS:
                log.warning("call %s: the provider has not read what was sent for %.1f s (it stopped reading); ending", self._label, now - stalled_since)
                self._end(EndCause.SEND_TIMEOUT, CloseCode.GOING_AWAY, "provider stopped reading")
                return

    async def _send(self, command: Command) -> None:
        for msg in self._codec.send(command):
            if self._ended():
                return  # nothing goes out after the end
            await self._send_message(msg)

    async def _send_message(self, msg: WireMessage) -> None:
        """Send one message. If the connection has not taken it within ``send_timeout_s``
        (a provider that stopped reading: its socket buffer is full), the writer's send
        scope is cancelled and :meth:`run` ends the call."""
        scope = self._send_scope
        if scope is None or not self._deadline_per_send:
            await self._transport.send_message(msg)
        else:
            # The writer runs inside ``scope``, whose deadline is finite only while a message
            # is being sent: when it expires, the cancellation lands in that send. A send that
            # outlasts the deadline counts as timed out even if it then completes.
            scope.deadline = trio.current_time() + self._send_timeout  # type: ignore[operator]
            try:
                await self._transport.send_message(msg)
            finally:
                scope.deadline = math.inf
        self._counters.frames_out += 1

    def _send_waits(self, waiting: bool) -> None:
        """The connection's word that a send has to wait (True) or is over (False): the
        send deadline runs only while it waits."""
        scope = self._send_scope
        if scope is not None:
            scope.deadline = trio.current_time() + self._send_timeout if waiting else math.inf  # type: ignore[operator]

    async def _send_control(self, control: Control) -> None:
        transfer = control.kind is ControlKind.TRANSFER
        on_socket = self._codec.capabilities.transfer if transfer else self._hangup_is_message
        if not on_socket and self._remote is not None:
            # the provider's API ends or moves the call; the socket closes after it
            reason = f"{control.kind} ({await self._remote_control(control)})"
            self._end(control.cause, CloseCode.NORMAL, reason)
            return
        command = Transfer(control.target) if transfer else Hangup()
        msgs = self._codec.send(command)
        for msg in msgs:
            await self._send_message(msg)
        if not self._hangup_is_message or not msgs:
            # hang-up is closing the socket (Awaaz): do it now
            self._end(control.cause, CloseCode.NORMAL, str(control.kind))

    async def _remote_control(self, control: Control) -> str:
        """Run the REST hang-up or transfer, bounded; any failure is the outcome, not an
        engine error (the socket is closed next either way)."""
        assert self._remote is not None
        outcome = "API timed out"
        with trio.move_on_after(self._remote_timeout) as scope:
            try:
                outcome = await self._remote(control.kind, control.target)
            except Exception as exc:  # a provider's API must not crash the call's teardown
                log.warning("call %s: %s through the provider's API failed: %s", self._label, control.kind, exc)
                return f"API failed: {type(exc).__name__}"
        if scope.cancelled_caught:
            log.warning("call %s: %s through the provider's API took over %.1f s; closing the socket", self._label, control.kind, self._remote_timeout)
            return "API timed out"
        log.info("call %s: %s through the provider's API: %s", self._label, control.kind, outcome)
        return f"API: {outcome}"

    async def _apply_clear(self, now: float) -> None:
        """Apply the requests in order (drop unsent audio, settle marks, pause, resume) and
        release the requesters, all before the first await; then tell the provider, once."""
        requests, self.clear_requests = self.clear_requests, []
        playout = self._playout
        tell_provider = False
        cleared: list[PlaybackResult] | None = None  # clears in a row are one clear
        for req in requests:
            kind = req.kind
            if kind == "pause":
                req.applied = not playout.paused
                tell_provider |= playout.pause(now)
                cleared = None
            elif kind == "resume":
                req.applied = playout.resume(now)
                cleared = None
            elif kind == "cut" and not playout.paused:
                req.applied = False  # no pause to resolve (a clear or the agent ended it)
            else:  # a clear, or the cut that resolves a pause
                req.applied = True
                if cleared is None:
                    cleared, tell = playout.clear(now)
                    tell_provider |= tell
                req.result = cleared
            req.done.set()
        if tell_provider:
            if self._recording is not None:
                self._recording.cut(now)
            await self._send(Clear())
