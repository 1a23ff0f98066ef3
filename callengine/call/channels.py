"""A bounded queue whose producer never blocks: when full it drops the oldest droppable item.

The reader task must never wait for the agent (a reader that waits stops answering pings
and close frames), so audio for the agent and for barge-in goes
through this queue. Control events (DTMF, marks, speech events) are never dropped: only
items the producer marks as droppable (audio frames) count against the bound.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

__all__ = ["LossyQueue"]

T = TypeVar("T")


class LossyQueue(Generic[T]):
    """``put_nowait`` never blocks; ``get`` waits; ``close`` ends the consumer's iteration.

    At most ``max_droppable`` droppable items are held; putting one more drops the oldest
    droppable item and counts it in ``dropped``.
    """

    def __init__(self, max_droppable: int) -> None:
        if max_droppable < 1:
            raise ValueError("max_droppable must be at least 1")
        self.max_droppable = max_droppable
        self._items: deque[tuple[T, bool]] = deque()
        self._droppable = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T, droppable: bool = False) -> None:
        if self._closed:
            return  # the consumer is gone; nothing waits for this item
        self.put_count += 1
        if droppable:
            if self._droppable >= self.max_droppable:
                self._drop_oldest()
            self._droppable += 1
        self._items.append((item, droppable))
        if self._lot:  # unpark() walks a generator even when nobody waits
            self._lot.unpark()

    def _drop_oldest(self) -> None:
        for i, (_, droppable) in enumerate(self._items):
            if droppable:
                del self._items[i]
                self._droppable -= 1
                self.dropped += 1
                return

    def get_nowait(self) -> T:
        """Raise trio.WouldBlock when empty, trio.EndOfChannel when closed and drained."""
        if self._items:
            item, droppable = self._items.popleft()
            if droppable:
                self._droppable -= 1
            return item
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def get(self) -> T:
        """Wait for the next item. Raises trio.EndOfChannel once closed and drained."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            try:
                item = self.get_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                parked = True
                continue
            if not parked:
                # parking was already a full checkpoint; a second yield per item would
                # cost a trip through the scheduler for every audio frame
                await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def __aiter__(self):
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
