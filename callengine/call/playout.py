"""Playout arithmetic: what the writer sends next, when, and what the caller has heard.

Pure: no trio, no I/O. Times are seconds on whatever clock the caller passes in (the
session uses trio's), so every rule here is tested synchronously.

The provider plays what we send, in order, from its own buffer. :class:`PlayoutLedger`
models that buffer with one number, ``play_end``: the time at which everything sent so far
will have finished playing. A chunk of duration ``d`` sent at ``now`` starts playing at
``max(now, play_end)``. From it follow pacing (how much is queued ahead), mark times, what
each playback has played when it is cleared, and underruns.

:class:`Playout` is the writer's plan over an outbox of playbacks, marks and at most one
hang-up or transfer: :meth:`Playout.next_action` says what to do now (send a chunk, send a
mark, send the control, give up on the control) or until when to wait. It chunks audio
(codecs get one chunk per command and do not re-chunk), keeps at most ``lead_s`` queued at
the provider, settles playbacks and marks as their time comes, and applies a clear.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from typing import Callable, Union

import attrs

from ..events import PlaybackResult
from .causes import ControlKind, EndCause

__all__ = [
    "PlaybackAudio",
    "MarkPoint",
    "MarkState",
    "Control",
    "PlayoutLedger",
    "Playout",
    "SendChunk",
    "SendMark",
    "SendControl",
    "ControlTimedOut",
    "Wait",
    "Action",
]

_EPS = 1e-9
_ids = itertools.count(1)


class MarkState(enum.Enum):
    PENDING = "pending"
    REACHED = "reached"
    CLEARED = "cleared"


class PlaybackAudio:
    """The audio of one playback and where it played. The agent's handle
    (:class:`~callengine.call.handles.Playback`) adds waiting for the result."""

    def __init__(self, rate: int, bytes_per_chunk: int) -> None:
        self.id = next(_ids)
        self.rate = rate
        self._bytes_per_chunk = bytes_per_chunk
        self._unsent: deque[bytes] = deque()
        self._partial = bytearray()
        self.open = True  # more audio may still be written (streaming playback)
        self.ready_at = 0.0  # when its latest audio reached the engine (for underrun blame)
        self.segments: list[tuple[float, float]] = []  # (start at provider, seconds)
        self.sent_seconds = 0.0
        self.total_seconds = 0.0
        self._result: PlaybackResult | None = None

    # --- fed from the agent's side --------------------------------------------------

    def feed(self, pcm: bytes, now: float) -> None:
        """Append outbound-rate PCM, cut into chunks (the last partial one waits for more)."""
        self._partial += pcm
        n = self._bytes_per_chunk
        whole = len(self._partial) - len(self._partial) % n
        for i in range(0, whole, n):
            self._unsent.append(bytes(self._partial[i : i + n]))
        del self._partial[:whole]
        self.total_seconds += len(pcm) / (2 * self.rate)
        self.ready_at = now

    def finish(self) -> None:
        if self._partial:
            self._unsent.append(bytes(self._partial[: len(self._partial) & ~1]))
            self._partial.clear()
        self.open = False

    # --- read by the plan -----------------------------------------------------------

    @property
    def has_unsent(self) -> bool:
        return bool(self._unsent)

    @property
    def has_partial(self) -> bool:
        """Less than a chunk of audio is waiting for more (an open streaming playback)."""
        return len(self._partial) >= 2

    def flush_partial(self) -> None:
        """Make the waiting partial chunk sendable now, as a short chunk."""
        n = len(self._partial) & ~1
        if n:
            self._unsent.append(bytes(self._partial[:n]))
            del self._partial[:n]

    @property
    def exhausted(self) -> bool:
        """Nothing left to send and nothing more coming."""
        return not self._unsent and not self.open

    def peek_chunk(self) -> bytes:
        return self._unsent[0]

    def pop_chunk(self) -> bytes:
        return self._unsent.popleft()

    def drop_unsent(self) -> None:
        self._unsent.clear()
        self._partial.clear()
        self.open = False

    def played_seconds(self, now: float) -> float:
        return sum(min(max(now - start, 0.0), dur) for start, dur in self.segments)

    @property
    def end_time(self) -> float | None:
        """When the provider finishes playing it, once it has all been sent."""
        if not self.exhausted or not self.segments:
            return None
        start, dur = self.segments[-1]
        return start + dur

    # --- the outcome ----------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> PlaybackResult | None:
        return self._result

    @property
    def duration_ms(self) -> float:
        """Duration of the audio given so far (grows while a streaming playback is open)."""
        return self.total_seconds * 1000

    def settle(self, interrupted: bool, played_seconds: float) -> PlaybackResult:
        """Fix the outcome (first call wins) and return it."""
        if self._result is None:
            played_ms = min(played_seconds, self.total_seconds) * 1000
            self._result = PlaybackResult(
                interrupted=interrupted, played_ms=round(played_ms, 6), duration_ms=round(self.duration_ms, 6)
            )
            self._on_settled()
        return self._result

    def _on_settled(self) -> None:
        """Hook for the agent's handle (wakes its waiters)."""

    def __repr__(self) -> str:
        return f"<Playback {self.id} {self.duration_ms:.0f} ms {self._result or 'pending'}>"


class MarkPoint:
    """One mark: reached once everything queued before it has played, or cleared."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = MarkState.PENDING
        self.due: float | None = None  # when the ledger says it is reached
        self.deadline: float | None = None  # when it is reached at the latest
        self.echo_expected = False

    def settle(self, state: MarkState) -> bool:
        """Move out of PENDING (first call wins); True if this call did."""
        if self.state is not MarkState.PENDING:
            return False
        self.state = state
        self._on_settled()
        return True

    def _on_settled(self) -> None:
        """Hook for the agent's handle (wakes its waiters)."""

    def __repr__(self) -> str:
        return f"<Mark {self.name!r} {self.state.value}>"


@attrs.define
class Control:
    """A hang-up or transfer the agent asked for: sent once the queued audio has played."""

    kind: ControlKind
    cause: EndCause
    target: str = "default"
    sent_at: float | None = None


class PlayoutLedger:
    """The provider's playout clock as the engine believes it."""

    def __init__(self, lead: float) -> None:
        self.lead = lead
        self.play_end = float("-inf")
        self.in_flight: deque[PlaybackAudio] = deque()  # sent (partly), not yet settled
        self.marks: deque[MarkPoint] = deque()  # placed on the wire or the clock, not yet settled
        self.chunks_sent = 0
        self.seconds_sent = 0.0
        self.underruns = 0
        self.underrun_seconds = 0.0
        self.starved = 0  # gaps because a streaming playback's audio came late
        self.max_queued = 0.0

    def queued(self, now: float) -> float:
        """Seconds of audio sent but not yet played at ``now``."""
        return max(0.0, self.play_end - now)

    def audible(self, now: float) -> bool:
        return self.play_end > now + _EPS

    def may_send(self, now: float, seconds: float) -> bool:
        """A chunk of ``seconds`` fits under the lead now. When nothing is queued any chunk
        may go, so a chunk longer than the lead can never stall the writer."""
        return self.queued(now) + seconds <= self.lead + _EPS or not self.audible(now)

    def send_time(self, seconds: float) -> float:
        """Earliest time at which a chunk of ``seconds`` fits under the lead."""
        return min(self.play_end, self.play_end + seconds - self.lead)

    def record(self, playback: PlaybackAudio, now: float, seconds: float, *, ready_at: float) -> None:
        """Note that a chunk of ``seconds`` of ``playback`` was sent at ``now``.

        ``ready_at`` is when the chunk's audio reached the engine. A gap at the provider
        (it ran dry before this chunk arrived) is an underrun, the engine's fault, when the
        audio was ready before the provider ran dry; it is starvation when a streaming
        playback's audio came late; a new playback after silence is neither.
        """
        start = max(now, self.play_end)
        gap = now - self.play_end
        if gap > 1e-6 and self.play_end != float("-inf"):
            if ready_at <= self.play_end + 1e-6:
                self.underruns += 1
                self.underrun_seconds += gap
            elif playback.segments:
                self.starved += 1
        self.play_end = start + seconds
        self.max_queued = max(self.max_queued, self.play_end - now)
        self.chunks_sent += 1
        self.seconds_sent += seconds
        playback.sent_seconds += seconds
        segments = playback.segments
        if segments and abs(segments[-1][0] + segments[-1][1] - start) < 1e-9:
            s, d = segments[-1]
            segments[-1] = (s, d + seconds)
        else:
            segments.append((start, seconds))
        if not self.in_flight or self.in_flight[-1] is not playback:
            self.in_flight.append(playback)

    def flush(self, now: float) -> None:
        """The provider dropped everything queued (clear)."""
        self.play_end = min(self.play_end, now)


# --- what the writer does next ------------------------------------------------------


@attrs.frozen
class SendChunk:
    """Send ``pcm`` (one chunk of ``playback``, already recorded in the ledger)."""

    playback: PlaybackAudio
    pcm: bytes


@attrs.frozen
class SendMark:
    mark: MarkPoint


@attrs.frozen
class SendControl:
    control: Control


@attrs.frozen
class ControlTimedOut:
    """The provider did not close within the hang-up timeout after the control was sent."""

    control: Control


@attrs.frozen
class Wait:
    """Nothing to do before ``until`` (``inf``: until new work arrives)."""

    until: float


Action = Union[SendChunk, SendMark, SendControl, ControlTimedOut, Wait]
OutboxItem = Union[PlaybackAudio, MarkPoint, Control]


@attrs.define
class PlayoutCounters:
    marks: int = 0
    mark_echoes: int = 0
    mark_fallbacks: int = 0
    clears: int = 0


class Playout:
    """The outbox and the ledger of one call, and the rules that drive the writer.

    ``on_mark(mark)`` is called whenever a mark settles (reached or cleared), so the session
    can tell the agent; the plan itself calls nothing else.
    """

    def __init__(
        self,
        chunk_s: float,
        lead_s: float,
        *,
        mark_echo: bool,
        clear_flushes: bool,
        mark_grace_s: float,
        hangup_timeout_s: float,
        on_mark: Callable[[MarkPoint], None] = lambda mark: None,
    ) -> None:
        if lead_s < chunk_s:
            raise ValueError(f"the lead ({lead_s} s) must hold at least one chunk ({chunk_s} s)")
        self.chunk_s = chunk_s
        self.ledger = PlayoutLedger(lead_s)
        self.outbox: deque[OutboxItem] = deque()
        self.mark_echo = mark_echo
        self.clear_flushes = clear_flushes
        self.mark_grace_s = mark_grace_s
        self.hangup_timeout_s = hangup_timeout_s
        self.counters = PlayoutCounters()
        self._on_mark = on_mark

    def bytes_per_chunk(self, rate: int) -> int:
        return 2 * max(1, int(round(self.chunk_s * rate)))

    def add(self, item: OutboxItem) -> None:
        self.outbox.append(item)

    # --- the plan -------------------------------------------------------------------

    def next_action(self, now: float) -> Action:
        """What the writer does at ``now``. Settles what has become due on the way.

        A :class:`Wait` is always for a time after ``now``, except where nothing can move
        before new work arrives (``inf``)."""
        ledger = self.ledger
        self.settle_due(now)
        wake_at = self.next_due()
        outbox = self.outbox
        while outbox:
            head = outbox[0]
            if isinstance(head, PlaybackAudio):
                if head.exhausted:
                    outbox.popleft()
                    if not head.segments:
                        head.settle(False, 0.0)  # an empty playback is done at once
                    continue
                if head.has_unsent:
                    seconds = len(head.peek_chunk()) / (2 * head.rate)
                    if ledger.may_send(now, seconds):
                        chunk = head.pop_chunk()
                        ledger.record(head, now, seconds, ready_at=head.ready_at)
                        return SendChunk(head, chunk)
                    wake_at = min(wake_at, ledger.send_time(seconds))
                elif head.has_partial:
                    # A streaming playback paused (nothing fed for a whole chunk) with less
                    # than a chunk buffered: rather than hold it back until more audio
                    # comes, send it as a short chunk once the provider is about to run dry.
                    # A producer that keeps feeding still gets whole chunks (Knowlarity
                    # plays each clip as a file; tiny clips would be wasteful).
                    flush_at = max(ledger.play_end - 0.25 * self.chunk_s, head.ready_at + self.chunk_s)
                    if now >= flush_at - _EPS:
                        head.flush_partial()
                        continue
                    wake_at = min(wake_at, flush_at)
                break
            if isinstance(head, MarkPoint):
                outbox.popleft()
                head.due = max(now, ledger.play_end)
                self.counters.marks += 1
                ledger.marks.append(head)
                if self.mark_echo:
                    head.echo_expected = True
                    head.deadline = head.due + self.mark_grace_s
                    return SendMark(head)
                head.deadline = head.due
                self._settle_marks(now)
                wake_at = min(wake_at, self.next_due())
                continue
            # the control: after everything before it has played
            if head.sent_at is None:
                if ledger.audible(now) or ledger.in_flight:
                    wake_at = min(wake_at, ledger.play_end)
                    break
                head.sent_at = now
                return SendControl(head)
            deadline = head.sent_at + self.hangup_timeout_s
            if now >= deadline - _EPS:
                return ControlTimedOut(head)
            wake_at = min(wake_at, deadline)
            break
        return Wait(wake_at)

    def settle_due(self, now: float) -> None:
        """Settle the playbacks that have played to their end and the marks now due."""
        in_flight = self.ledger.in_flight
        while in_flight:
            pb = in_flight[0]
            end = pb.end_time
            if pb.done:
                in_flight.popleft()
            elif end is not None and now >= end - _EPS:
                in_flight.popleft()
                pb.settle(False, pb.played_seconds(end))
            else:
                break
        if self.ledger.marks:
            self._settle_marks(now)

    def _settle_marks(self, now: float) -> None:
        marks = self.ledger.marks
        for m in list(marks):
            limit = m.deadline if m.deadline is not None else m.due
            if limit is not None and now >= limit - _EPS:
                marks.remove(m)
                if m.echo_expected:
                    self.counters.mark_fallbacks += 1
                if m.settle(MarkState.REACHED):
                    self._on_mark(m)

    def next_due(self) -> float:
        """The earliest time a playback or mark settles by the clock."""
        t = float("inf")
        for pb in self.ledger.in_flight:
            end = pb.end_time
            if end is not None and end < t:
                t = end
        for m in self.ledger.marks:
            limit = m.deadline if m.deadline is not None else m.due
            if limit is not None and limit < t:
                t = limit
        return t

    def mark_echoed(self, name: str) -> bool:
        """The provider echoed mark ``name``: reach the oldest pending one of that name."""
        for m in self.ledger.marks:
            if m.name == name and m.echo_expected and m.state is MarkState.PENDING:
                self.ledger.marks.remove(m)
                self.counters.mark_echoes += 1
                if m.settle(MarkState.REACHED):
                    self._on_mark(m)
                return True
        return False

    @property
    def audio_pending(self) -> bool:
        """Audio is queued in the engine or still playing at the provider."""
        return bool(self.ledger.in_flight) or any(isinstance(x, PlaybackAudio) for x in self.outbox)

    # --- clear ------------------------------------------------------------------------

    def clear(self, now: float) -> tuple[list[PlaybackResult], bool]:
        """Drop unsent audio and settle marks; returns the interrupted results and whether
        the provider must be told (it has a clear command: then what it had queued is gone
        too, and the caller heard only what played until ``now``)."""
        ledger = self.ledger
        flushes = self.clear_flushes
        self.settle_due(now)
        interrupted: list[PlaybackResult] = []
        for pb in list(ledger.in_flight):
            if pb.done:
                continue
            if flushes:
                interrupted.append(pb.settle(True, pb.played_seconds(now)))
                pb.drop_unsent()
            elif not pb.exhausted:
                # the provider keeps playing what it has: the caller hears all that was sent
                pb.drop_unsent()
                interrupted.append(pb.settle(True, pb.sent_seconds))
        if flushes:
            ledger.in_flight.clear()
        kept: deque[OutboxItem] = deque()
        for item in self.outbox:
            if isinstance(item, PlaybackAudio):
                if not item.done:
                    item.drop_unsent()
                    heard = item.played_seconds(now) if flushes else item.sent_seconds
                    interrupted.append(item.settle(True, heard))
            elif isinstance(item, MarkPoint):
                if item.settle(MarkState.CLEARED):
                    self._on_mark(item)
            else:
                kept.append(item)
        self.outbox = kept
        if flushes:
            for m in ledger.marks:
                if m.settle(MarkState.CLEARED):
                    self._on_mark(m)
            ledger.marks.clear()
            ledger.flush(now)
        self.counters.clears += 1
        return interrupted, flushes

    def settle_all(self, now: float) -> None:
        """The call is over: settle every playback (by what has played) and mark (cleared)."""
        ledger = self.ledger
        playbacks = list(ledger.in_flight) + [x for x in self.outbox if isinstance(x, PlaybackAudio)]
        for pb in playbacks:
            if not pb.done:
                end = pb.end_time
                complete = end is not None and now >= end - _EPS
                pb.settle(not complete, pb.played_seconds(now))
            pb.drop_unsent()
        ledger.in_flight.clear()
        for m in list(ledger.marks) + [x for x in self.outbox if isinstance(x, MarkPoint)]:
            m.settle(MarkState.CLEARED)
        ledger.marks.clear()
        self.outbox.clear()
