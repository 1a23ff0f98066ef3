"""The playout ledger: for every chunk sent, when it plays at the provider.

The provider plays what we send, in order, from its own buffer. The ledger models that
buffer with one number, ``play_end``: the time at which everything sent so far will have
finished playing. A chunk of duration ``d`` sent at ``now`` starts playing at
``max(now, play_end)``. From this follow pacing (how much is queued ahead), mark times,
what each playback has played when it is cleared, and underruns.

Times are trio clock seconds, passed in by the writer: the ledger does no I/O.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque

import attrs
import trio

from ..events import PlaybackResult

__all__ = ["Playback", "MarkHandle", "MarkState", "PlayoutLedger"]

_EPS = 1e-9
_ids = itertools.count(1)


class Playback:
    """A handle to one ``call.play``: audio queued for the caller, and what became of it.

    ``await playback.wait()`` returns a :class:`~callengine.events.PlaybackResult` once the
    audio has played to the end (``interrupted=False``) or was cut short by a clear, a
    barge-in or the end of the call (``interrupted=True``, ``played_ms`` what was heard).
    """

    def __init__(self, rate: int, bytes_per_chunk: int) -> None:
        self.id = next(_ids)
        self.rate = rate
        self._bytes_per_chunk = bytes_per_chunk
        self._unsent: deque[bytes] = deque()
        self._partial = bytearray()
        self.open = True  # more audio may still be written (streaming playback)
        self.queued_at: float | None = None  # when it entered the writer's queue
        self.ready_at = 0.0  # when its latest audio reached the engine (for underrun blame)
        self.resampler = None  # a streaming playback's resampler (StreamResampler), kept across writes
        self.segments: list[tuple[float, float]] = []  # (start at provider, seconds)
        self.sent_seconds = 0.0
        self.total_seconds = 0.0
        self._result: PlaybackResult | None = None
        self._done = trio.Event()

    # --- fed by the agent side ------------------------------------------------------

    def _feed(self, pcm: bytes) -> None:
        """Append outbound-rate PCM, cut into chunks (the last partial one waits for more)."""
        self._partial += pcm
        n = self._bytes_per_chunk
        whole = len(self._partial) - len(self._partial) % n
        for i in range(0, whole, n):
            self._unsent.append(bytes(self._partial[i : i + n]))
        del self._partial[:whole]
        self.total_seconds += len(pcm) / (2 * self.rate)

    def _finish(self) -> None:
        if self._partial:
            self._unsent.append(bytes(self._partial[: len(self._partial) & ~1]))
            self._partial.clear()
        self.open = False

    # --- read by the writer -----------------------------------------------------------

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
        if not self.exhausted:
            return None
        return self.segments[-1][0] + self.segments[-1][1] if self.segments else None

    # --- the agent's view -------------------------------------------------------------

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

    def _settle(self, interrupted: bool, played_seconds: float) -> PlaybackResult:
        if self._result is None:
            played_ms = min(played_seconds, self.total_seconds) * 1000
            self._result = PlaybackResult(
                interrupted=interrupted, played_ms=round(played_ms, 6), duration_ms=round(self.duration_ms, 6)
            )
            self._done.set()
        return self._result

    async def wait(self) -> PlaybackResult:
        """Wait until the playback has finished or was interrupted; return what happened."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        return f"<Playback {self.id} {self.duration_ms:.0f} ms {self._result or 'pending'}>"


class MarkState(enum.Enum):
    PENDING = "pending"
    REACHED = "reached"
    CLEARED = "cleared"


class MarkHandle:
    """A handle to one ``call.mark``; ``await mark.wait()`` returns its final state."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = MarkState.PENDING
        self.due: float | None = None  # when the ledger says it is reached
        self.deadline: float | None = None  # when it is reached at the latest
        self.echo_expected = False
        self._done = trio.Event()

    def _settle(self, state: MarkState) -> bool:
        if self.state is not MarkState.PENDING:
            return False
        self.state = state
        self._done.set()
        return True

    async def wait(self) -> MarkState:
        await self._done.wait()
        return self.state

    def __repr__(self) -> str:
        return f"<Mark {self.name!r} {self.state.value}>"


class PlayoutLedger:
    """The provider's playout clock as the engine believes it."""

    def __init__(self, lead: float) -> None:
        self.lead = lead
        self.play_end = float("-inf")
        self.in_flight: deque[Playback] = deque()  # sent (partly), not yet settled
        self.marks: deque[MarkHandle] = deque()  # sent, not yet settled
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
        return self.queued(now) + seconds <= self.lead + _EPS

    def send_time(self, seconds: float) -> float:
        """Earliest time at which a chunk of ``seconds`` fits under the lead."""
        return self.play_end + seconds - self.lead

    def record(self, playback: Playback, now: float, seconds: float, *, ready_at: float) -> None:
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
        if playback.segments and abs(playback.segments[-1][0] + playback.segments[-1][1] - start) < 1e-9:
            s, d = playback.segments[-1]
            playback.segments[-1] = (s, d + seconds)
        else:
            playback.segments.append((start, seconds))
        if not self.in_flight or self.in_flight[-1] is not playback:
            self.in_flight.append(playback)

    def flush(self, now: float) -> None:
        """The provider dropped everything queued (clear)."""
        self.play_end = min(self.play_end, now)
