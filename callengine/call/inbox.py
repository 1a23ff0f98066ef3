"""The agent's inbox: the events of one call, in order, from a producer that never blocks.

The reader task must never wait for the agent (a reader that waits stops answering pings and
close frames), so everything for the agent goes through this queue with ``put_*_nowait``.
Each kind of item has its own bound, and over its bound the oldest item of that kind goes:

* caller audio is bounded by duration (``max_audio_s``), not by message count, so a peer
  that sends few huge frames cannot park minutes of audio in memory;
* mark events (MarkReached / MarkCleared) and other events (DTMF, speech, barge-in) are
  bounded by count, so an agent that never reads the call holds a bounded inbox for a call
  of any length.

Every operation is O(1): one deque per kind, each item tagged with its sequence number, and
``get`` takes the lowest-numbered head.

A dropped audio frame is counted as *dropped* when the agent took something from the inbox
within the last half of ``max_audio_s`` (it is reading, but too slowly) and as *unread*
otherwise (it is not reading the call: a prompt-only agent, or one waiting for its
playback to finish before it hangs up).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

__all__ = ["Inbox"]

#: puts between two looks at whether the agent is reading (16 frames: 320 ms of audio)
_LOOK_EVERY = 16

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, max_audio_s: float, *, max_marks: int = 256, max_events: int = 1024) -> None:
        if max_audio_s <= 0 or max_marks < 1 or max_events < 1:
            raise ValueError("inbox bounds must be positive")
        self.max_audio_s = max_audio_s
        self.max_marks = max_marks
        self.max_events = max_events
        self._audio: deque[tuple[int, T, float]] = deque()
        self._audio_s = 0.0
        self._marks: deque[tuple[int, T]] = deque()
        self._events: deque[tuple[int, T]] = deque()
        self._seq = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._last_get = float("-inf")  # when the agent was last seen reading (sampled)
        self._gets = 0
        self._gets_seen = 0
        self._puts_since_look = 0
        #: times the consumer yielded in get() (parked, or took its checkpoint)
        self.yields = 0
        self.audio_dropped = 0
        self.audio_unread = 0
        self.events_dropped = 0

    def __len__(self) -> int:
        return len(self._audio) + len(self._marks) + len(self._events)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def audio_seconds(self) -> float:
        return self._audio_s

    def _wake(self) -> None:
        if self._lot:  # unpark() walks a generator even when nobody waits
            self._lot.unpark()

    def put_audio_nowait(self, item: T, seconds: float) -> None:
        if self._closed:
            return
        self._seq += 1
        self._audio.append((self._seq, item, seconds))
        self._audio_s += seconds
        self._puts_since_look += 1
        if self._puts_since_look >= _LOOK_EVERY:
            self._look()
        if self._audio_s > self.max_audio_s + 1e-9:
            self._look()
            reading = trio.current_time() - self._last_get < self.max_audio_s / 2
            audio = self._audio
            while self._audio_s > self.max_audio_s + 1e-9 and len(audio) > 1:
                _, _, s = audio.popleft()
                self._audio_s -= s
                if reading:
                    self.audio_dropped += 1
                else:
                    self.audio_unread += 1
        self._wake()

    def _look(self) -> None:
        """Note whether the agent has read since the last look. Sampled every few puts
        rather than timed at every get: reading the clock per frame costs more than the
        rest of a get."""
        self._puts_since_look = 0
        if self._gets != self._gets_seen:
            self._gets_seen = self._gets
            self._last_get = trio.current_time()

    def put_mark_nowait(self, item: T) -> None:
        self._put_counted(self._marks, item, self.max_marks)

    def put_event_nowait(self, item: T) -> None:
        self._put_counted(self._events, item, self.max_events)

    def _put_counted(self, queue: deque[tuple[int, T]], item: T, bound: int) -> None:
        if self._closed:
            return
        self._seq += 1
        queue.append((self._seq, item))
        if len(queue) > bound:
            queue.popleft()
            self.events_dropped += 1
        self._wake()

    def get_nowait(self) -> T:
        """Raise trio.WouldBlock when empty, trio.EndOfChannel when closed and drained."""
        audio, marks, events = self._audio, self._marks, self._events
        best: deque | None = None
        seq = 0
        for q in (audio, marks, events):
            if q and (best is None or q[0][0] < seq):
                best, seq = q, q[0][0]
        if best is None:
            if self._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        self._gets += 1
        if best is audio:
            _, item, s = audio.popleft()
            self._audio_s -= s
            if not audio:
                self._audio_s = 0.0  # no drift from summing floats
            return item
        return best.popleft()[1]

    async def get(self) -> T:
        """Wait for the next item. Raises trio.EndOfChannel once closed and drained."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            try:
                item = self.get_nowait()
            except trio.WouldBlock:
                self._gets += 1  # a waiting agent is a reading agent
                self.yields += 1
                await self._lot.park()
                parked = True
                continue
            if not parked:
                # parking was already a full checkpoint; a second yield per item would
                # cost a trip through the scheduler for every audio frame
                self.yields += 1
                await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def close(self) -> None:
        """No more items; the consumer drains what is left, then gets EndOfChannel."""
        self._closed = True
        self._lot.unpark_all()

    def clear(self) -> None:
        """Forget what is queued (the call is over and nobody will read it)."""
        self._audio.clear()
        self._marks.clear()
        self._events.clear()
        self._audio_s = 0.0
