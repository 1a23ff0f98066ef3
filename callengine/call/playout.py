"""Playout arithmetic: what the writer sends next, when, and what the caller has heard.

Pure: no trio, no I/O. Times are seconds on whatever clock the caller passes in (the
session uses trio's), so every rule here is tested synchronously. The ledger and its
records are in :mod:`.ledger`.

:class:`Playout` is the writer's plan over an outbox of playbacks, marks and at most one
hang-up or transfer: :meth:`Playout.next_action` says what to do now (send a chunk, send a
mark, send the control, give up on the control) or until when to wait. It chunks audio
(codecs get one chunk per command and do not re-chunk), keeps at most ``lead_s`` queued at
the provider, settles playbacks and marks as their time comes, and applies a clear, or a
pause (barge-in that may be a backchannel) and the resume or cut that resolves it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Union

import attrs

from ..events import PlaybackResult
from .ledger import Control, MarkPoint, MarkState, PlaybackAudio, PlayoutLedger

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


# --- what the writer does next (plain attrs classes, not frozen: one is made per chunk
# sent, and a frozen class's init costs several times more)


@attrs.define
class SendChunk:
    """Send ``pcm`` (one chunk of ``playback``, already recorded in the ledger)."""

    playback: PlaybackAudio
    pcm: bytes


@attrs.define
class SendMark:
    mark: MarkPoint


@attrs.define
class SendControl:
    control: Control


@attrs.define
class ControlTimedOut:
    """The provider did not close within the hang-up timeout after the control was sent."""

    control: Control


@attrs.define
class Wait:
    """Nothing to do before ``until`` (``inf``: until new work arrives)."""

    until: float


Action = Union[SendChunk, SendMark, SendControl, ControlTimedOut, Wait]

#: the common wait: nothing is due until new work arrives
WAIT_FOR_WORK = Wait(float("inf"))
OutboxItem = Union[PlaybackAudio, MarkPoint, Control]


@attrs.define
class PlayoutCounters:
    marks: int = 0
    mark_echoes: int = 0
    mark_fallbacks: int = 0
    clears: int = 0
    pauses: int = 0


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
        frame_s: float = 0.0,
        min_chunk_bytes: int = 0,
        one_clip_in_flight: bool = False,
        start_delay_s: float = 0.0,
        on_mark: Callable[[MarkPoint], None] = lambda mark: None,
    ) -> None:
        if lead_s < chunk_s:
            raise ValueError(f"the lead ({lead_s} s) must hold at least one chunk ({chunk_s} s)")
        self.chunk_s = chunk_s
        # the provider's frame (Capabilities.frame_ms): chunks are whole frames, a short
        # tail is padded with silence; 0: any length
        self.frame_s = frame_s
        self.min_chunk_bytes = min_chunk_bytes  # Capabilities.min_chunk_bytes
        # Capabilities.one_clip_in_flight: a provider whose application may cut the clip
        # playing gets the next clip only once the ledger says the previous one has played
        self.one_clip_in_flight = one_clip_in_flight
        self.ledger = PlayoutLedger(lead_s, gaps_expected=one_clip_in_flight, start_delay=start_delay_s)
        self.outbox: deque[OutboxItem] = deque()
        self.mark_echo = mark_echo
        self.clear_flushes = clear_flushes
        self.mark_grace_s = mark_grace_s
        self.hangup_timeout_s = hangup_timeout_s
        self.counters = PlayoutCounters()
        self._on_mark = on_mark
        # a pause holds back audio until it is resolved: resume() sends it, clear() drops it
        self.paused = False

    def bytes_per_chunk(self, rate: int) -> int:
        return 2 * max(1, int(round(self.chunk_s * rate)))

    def frame_bytes(self, rate: int) -> int:
        """Bytes of one provider frame at ``rate`` (0: the provider takes any length)."""
        return 2 * max(1, int(round(self.frame_s * rate))) if self.frame_s else 0

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
                if self.paused and (head.has_unsent or head.has_partial):
                    break  # held back until the pause is resolved
                if head.has_unsent:
                    seconds = len(head.peek_chunk()) / (2 * head.rate)
                    if self.one_clip_in_flight:
                        # one clip at the provider at a time: an application that cuts the
                        # playing clip for a new one then never cuts audio
                        may, send_at = not ledger.audible(now), ledger.play_end
                    else:
                        may, send_at = ledger.may_send(now, seconds), ledger.send_time(seconds)
                    if may:
                        chunk = head.pop_chunk()
                        ledger.record(head, now, seconds, ready_at=head.ready_at)
                        head.keep_sent(chunk, now, ledger.play_end)
                        return SendChunk(head, chunk)
                    wake_at = min(wake_at, send_at)
                elif head.has_partial and not self.one_clip_in_flight:
                    # A streaming playback paused (nothing fed for a whole chunk) with less
                    # than a chunk buffered: rather than hold it back until more audio
                    # comes, send it as a short chunk once the provider is about to run dry.
                    # A producer that keeps feeding still gets whole chunks (Knowlarity
                    # plays each clip as a file; tiny clips would be wasteful). With one
                    # clip in flight a playback goes out whole (or at the cap): it waits for
                    # the agent to close it or for a chunk's worth of audio.
                    flush_at = max(ledger.play_end - 0.25 * self.chunk_s, head.ready_at + self.chunk_s)
                    if now >= flush_at - _EPS:
                        head.flush_partial()
                        continue
                    wake_at = min(wake_at, flush_at)
                break
            if isinstance(head, MarkPoint):
                outbox.popleft()
                head.due = max(now, ledger.play_end)
                if not head.placed:  # placed again after a pause: counted once
                    head.placed = True
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
        return WAIT_FOR_WORK if wake_at == float("inf") else Wait(wake_at)

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

    # --- clear ------------------------------------------------------------------------

    def clear(self, now: float) -> tuple[list[PlaybackResult], bool]:
        """Drop unsent audio and settle marks; returns the interrupted results and whether
        the provider must be told (it has a clear command: then what it had queued is gone
        too, and the caller heard only what played until ``now``).

        During a pause this is the cut that resolves it: the audio held back is dropped,
        each playback settles at the position heard when the pause began, and the provider
        is not told again (its queue was cleared at the pause, nothing was sent since)."""
        ledger = self.ledger
        flushes = self.clear_flushes
        was_paused, self.paused = self.paused, False
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
                # placed during a pause, after audio all heard: reached, echo or not
                heard = was_paused and m.due is not None and m.due <= now + _EPS
                if m.settle(MarkState.REACHED if heard else MarkState.CLEARED):
                    self._on_mark(m)
            ledger.marks.clear()
            ledger.flush(now)
        if was_paused and flushes:
            return interrupted, False
        self.counters.clears += 1
        return interrupted, flushes

    # --- pause and resume -------------------------------------------------------------

    def pause(self, now: float) -> bool:
        """Hold back the audio (speech over the bot that may be a backchannel): nothing more
        is sent until :meth:`resume` (send it on) or :meth:`clear` (drop it). Returns True
        when the provider must be told to clear.

        With a provider that clears, its queue is dropped too, and every playback it had
        not finished is taken back from the exact position heard at ``now``
        (:meth:`PlaybackAudio.rewind`), so that a resume sends on from there: the playbacks
        and the marks between them go back to the front of the outbox in the order they
        were sent, each mark pending again (placed anew on resume, its echo expected only
        then: an echo a provider sends for the clear finds no pending mark). A mark whose
        audio has all played is reached now. With one that cannot clear, what it has queued
        plays out and the position is where that ends: only sending stops."""
        if self.paused:
            return False
        self.settle_due(now)
        self.paused = True
        self.counters.pauses += 1
        if not self.clear_flushes:
            return False
        ledger = self.ledger
        back: list[tuple[float, int, OutboxItem]] = []
        for pb in ledger.in_flight:
            if pb.done:
                continue
            first_start = pb.segments[0][0] if pb.segments else now
            pb.rewind(now)
            back.append((first_start, 1, pb))
        for m in ledger.marks:
            due = m.due if m.due is not None else now
            if due <= now + _EPS:
                if m.settle(MarkState.REACHED):
                    self._on_mark(m)
            elif m.state is MarkState.PENDING:
                m.due = m.deadline = None
                m.echo_expected = False
                back.append((due, 0, m))
        ledger.marks.clear()
        ledger.in_flight.clear()
        ledger.flush(now)
        # in the order they were sent: a mark placed at a playback's start goes before it
        back.sort(key=lambda entry: (entry[0], entry[1]))
        outbox = self.outbox
        if outbox and any(item is outbox[0] for _, _, item in back):
            outbox.popleft()  # the playback being sent: it is in ``back`` already
        outbox.extendleft(item for _, _, item in reversed(back))
        self.counters.clears += 1
        return True

    def resume(self, now: float) -> bool:
        """End a pause: the held-back audio goes out again (the writer's next actions).
        False if there was no pause (a clear ended it first)."""
        if not self.paused:
            return False
        self.paused = False
        self.ledger.resume(now)
        return True

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
