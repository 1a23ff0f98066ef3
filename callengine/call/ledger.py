"""The playout ledger and the records it keeps: pure, no trio, no I/O.

The provider plays what we send, in order, from its own buffer. :class:`PlayoutLedger`
models that buffer with one number, ``play_end``: the time at which everything sent so far
will have finished playing. A chunk of duration ``d`` sent at ``now`` starts playing at
``max(now, play_end)``. From it follow pacing (how much is queued ahead), mark times, what
each playback has played when it is cleared, and underruns. :class:`PlaybackAudio` and
:class:`MarkPoint` are what it knows of one playback and one mark; the agent's handles
(:mod:`.handles`) add waiting to them.

Times are seconds on whatever clock the caller passes in.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque

import attrs

from ..events import PlaybackResult
from .causes import ControlKind, EndCause

__all__ = ["MarkState", "PlaybackAudio", "MarkPoint", "Control", "PlayoutLedger"]

_EPS = 1e-9
_ids = itertools.count(1)


class MarkState(enum.Enum):
    PENDING = "pending"
    REACHED = "reached"
    CLEARED = "cleared"


class PlaybackAudio:
    """The audio of one playback and where it played. The agent's handle
    (:class:`~callengine.call.handles.Playback`) adds waiting for the result."""

    def __init__(self, rate: int, bytes_per_chunk: int, frame_bytes: int = 0, min_bytes: int = 0) -> None:
        self.id = next(_ids)
        self.rate = rate
        self._bytes_per_chunk = bytes_per_chunk
        # A provider that takes whole frames only (Awaaz's connector: 320 bytes) gets a
        # short tail padded with silence; 0: any length goes. ``bytes_per_chunk`` is then
        # a whole number of frames (the config refuses anything else).
        self._frame_bytes = frame_bytes
        self._min_bytes = min_bytes  # and one that takes no message below a size (Exotel)
        self.padding_seconds = 0.0  # silence added to reach whole frames (sent, played, not the agent's)
        self._chunked_bytes = 0  # bytes put into chunks so far, padding included
        self._pads: list[tuple[float, float]] = []  # (start, end) of each padding, in seconds of chunked audio
        self._unsent: deque[bytes] = deque()
        self._partial = bytearray()
        # the chunks sent and not yet played, with when each ends at the provider: a pause
        # takes back their unplayed part (:meth:`rewind`). At most the provider's lead.
        self._sent: deque[tuple[float, bytes]] = deque()
        self._sent_at = 0  # offset in the chunked audio (bytes) of the first of them
        self.open = True  # more audio may still be written (streaming playback)
        self.ready_at = 0.0  # when its latest audio reached the engine (for underrun blame)
        self.segments: list[tuple[float, float]] = []  # (start at provider, seconds)
        self.sent_seconds = 0.0
        self.total_seconds = 0.0
        self._result: PlaybackResult | None = None

    # --- fed from the agent's side --------------------------------------------------

    def feed(self, pcm: bytes, now: float) -> int:
        """Append outbound-rate PCM, cut into chunks (the last partial one waits for more).
        Returns how many chunks became ready to send."""
        self._partial += pcm
        n = self._bytes_per_chunk
        whole = len(self._partial) - len(self._partial) % n
        for i in range(0, whole, n):
            self._unsent.append(bytes(self._partial[i : i + n]))
        self._chunked_bytes += whole
        del self._partial[:whole]
        self.total_seconds += len(pcm) / (2 * self.rate)
        self.ready_at = now
        return whole // n

    def finish(self) -> None:
        if 2 <= len(self._partial) < self._min_bytes and self._unsent:
            # A tail too short for the provider (Exotel: under 100 ms) rides on the chunk
            # before it rather than being padded: silence the caller would hear before
            # the next playback, and a mark after it reached that much later.
            last = self._unsent.pop()
            self._chunked_bytes -= len(last)
            self._partial[:0] = last
        self.flush_partial()
        self._partial.clear()  # an odd trailing byte is not a sample
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
        """Make the waiting partial chunk sendable now, as a short chunk (padded with
        silence to whole frames where the provider needs them)."""
        n = len(self._partial) & ~1
        if n:
            tail = bytes(self._partial[:n])
            del self._partial[:n]
            want = max(n, self._min_bytes)
            if self._frame_bytes and want % self._frame_bytes:
                want += self._frame_bytes - want % self._frame_bytes
            if want > n:
                pad = want - n
                tail += bytes(pad)
                # the provider plays the silence too: the ledger counts it in the chunk's
                # duration (play_end, marks, later playbacks move by it), while
                # total_seconds, and so played_ms and duration_ms, stay the agent's audio
                self.padding_seconds += pad / (2 * self.rate)
                end = (self._chunked_bytes + len(tail)) / (2 * self.rate)
                self._pads.append((end - pad / (2 * self.rate), end))
            self._chunked_bytes += len(tail)
            self._unsent.append(tail)

    @property
    def exhausted(self) -> bool:
        """Nothing left to send and nothing more coming."""
        return not self._unsent and not self.open

    def peek_chunk(self) -> bytes:
        return self._unsent[0]

    def pop_chunk(self) -> bytes:
        return self._unsent.popleft()

    def keep_sent(self, pcm: bytes, now: float, ends_at: float) -> None:
        """``pcm``, a chunk just sent, plays until ``ends_at``: keep it until then (a pause
        may take it back), and forget the kept chunks that have played by ``now``."""
        sent = self._sent
        while sent and sent[0][0] <= now + _EPS:
            self._sent_at += len(sent.popleft()[1])
        sent.append((ends_at, pcm))

    def rewind(self, now: float) -> None:
        """The provider dropped what it had not played by ``now`` (a pause's clear): take
        that audio back, so that it goes out again from exactly the sample the caller heard
        last. The segments end at ``now``; what follows is chunked again from there, into
        whole chunks (whole frames, the provider's smallest message), a closed playback's
        tail padded as :meth:`finish` pads it. Nothing is repeated and nothing skipped."""
        rate = self.rate
        played = sum(min(max(now - start, 0.0), dur) for start, dur in self.segments)
        at = max(2 * int(round(played * rate)), self._sent_at)  # bytes of chunked audio heard
        # the segments, cut at that sample: they then say exactly what was heard
        heard = at / (2 * rate)
        segments: list[tuple[float, float]] = []
        total = 0.0
        for start, dur in self.segments:
            d = min(dur, heard - total)
            if d <= _EPS:
                break
            segments.append((start, d))
            total += d
        if segments and segments[-1][0] + segments[-1][1] > now:
            # rounded up to the sample: that sample was heard by ``now``
            segments[-1] = (now - segments[-1][1], segments[-1][1])
        self.segments = segments
        self.sent_seconds = heard
        rest = bytearray()
        offset = self._sent_at
        for _, pcm in self._sent:
            end = offset + len(pcm)
            if end > at:
                rest += pcm[max(0, at - offset) :]
            offset = end
        for chunk in self._unsent:
            rest += chunk
        rest += self._partial
        self._sent.clear()
        self._unsent.clear()
        self._sent_at = self._chunked_bytes = at
        n = self._bytes_per_chunk
        whole = len(rest) - len(rest) % n
        for i in range(0, whole, n):
            self._unsent.append(bytes(rest[i : i + n]))
        self._chunked_bytes += whole
        del rest[:whole]
        self._partial = rest
        if not self.open:
            self.finish()

    def drop_unsent(self) -> None:
        self._unsent.clear()
        self._partial.clear()
        self._sent.clear()
        self.open = False

    def played_seconds(self, now: float) -> float:
        """Seconds of the agent's audio the provider has played by ``now`` (padding is
        played too, but is not the agent's: it is not counted)."""
        position = sum(min(max(now - start, 0.0), dur) for start, dur in self.segments)
        padding = 0.0
        for start, end in self._pads:
            if start >= position:
                break
            padding += min(end, position) - start
        return position - padding

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
            self._sent.clear()
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
        self.placed = False  # on the wire or the clock once (a pause may take it back)

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

    def __init__(self, lead: float, *, gaps_expected: bool = False, start_delay: float = 0.0) -> None:
        self.lead = lead
        # the provider starts audio that arrives while nothing plays this long after it
        # arrives (Capabilities.start_delay_ms)
        self.start_delay = start_delay
        # one clip in flight: each clip goes out once the previous one has played, so the
        # provider runs dry between clips by design (for as long as the writer takes to wake
        # up), which is not an underrun
        self.gaps_expected = gaps_expected
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
        arrives = now + self.start_delay  # when the provider can start it
        start = max(arrives, self.play_end)
        gap = arrives - self.play_end
        if gap > 1e-6 and self.play_end != float("-inf") and not self.gaps_expected:
            if ready_at + self.start_delay <= self.play_end + 1e-6:
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

    def resume(self, now: float) -> None:
        """Sending resumes after a pause: the silence since is the pause's, not an underrun
        (the provider had nothing queued on purpose)."""
        if self.play_end <= now + _EPS:
            self.play_end = float("-inf")
