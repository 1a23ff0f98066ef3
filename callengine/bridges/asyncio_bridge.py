"""Vendor SDKs written for asyncio, used from the engine's Trio tasks.

The supported way: the SDK runs on its own asyncio loop in a worker thread
(``asyncio.run`` inside ``trio.to_thread.run_sync``), and its items come back to Trio
through a memory channel (``trio.from_thread.run``, which also holds the SDK back while
Trio is not reading). Cancelling the Trio side cancels the asyncio task; an exception
in the SDK is raised in Trio. No extra dependency (trio-asyncio is not needed)::

    async with open_asyncio_stream(lambda: sdk_client.stream_tokens(prompt)) as items:
        async for token in items:
            ...

``run_asyncio(fn)`` is the one-shot form: ``await run_asyncio(lambda: sdk.transcribe(wav))``.
Each call takes a worker thread for as long as its asyncio work runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import trio

__all__ = ["open_asyncio_stream", "run_asyncio"]

T = TypeVar("T")


class _Loop:
    """The asyncio task running in the worker thread, to cancel it from Trio."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.lock = threading.Lock()
        self.stopped = False
        self.error: BaseException | None = None  # what the asyncio side raised

    def started(self) -> None:
        with self.lock:
            self.loop = asyncio.get_running_loop()
            self.task = asyncio.current_task()
            if self.stopped and self.task is not None:
                self.task.cancel()

    def cancel(self) -> None:
        with self.lock:
            self.stopped = True
            if self.loop is not None and self.task is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.task.cancel)


@contextlib.asynccontextmanager
async def open_asyncio_stream(factory: Callable[[], AsyncIterator[T]], *, buffer: int = 0) -> AsyncIterator[trio.MemoryReceiveChannel[T]]:
    """Run the asyncio async iterator ``factory()`` in a worker thread; its items arrive on
    the yielded channel, which ends when the iterator does. Leaving the block (or a Trio
    cancellation) cancels the asyncio task and waits for the thread to finish."""
    send, receive = trio.open_memory_channel[T](buffer)
    token = trio.lowlevel.current_trio_token()
    state = _Loop()

    async def pump() -> None:
        state.started()
        agen = factory()
        try:
            async for item in agen:
                try:
                    trio.from_thread.run(send.send, item, trio_token=token)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.Cancelled, trio.RunFinishedError):
                    return  # Trio stopped reading
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

    def worker() -> None:
        try:
            asyncio.run(pump())
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # raised in Trio once the block ends
            state.error = exc
        finally:
            trio.from_thread.run_sync(send.close, trio_token=token)

    async with trio.open_nursery() as nursery:
        # not abandoned on cancel: the cancel stops the asyncio task, and the thread is awaited
        nursery.start_soon(trio.to_thread.run_sync, worker)
        try:
            async with receive:
                yield receive
        finally:
            state.cancel()
    if state.error is not None:
        raise state.error


async def run_asyncio(fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()`` on an asyncio loop in a worker thread; Trio cancellation cancels it."""
    result: list[T] = []

    async def one() -> AsyncIterator[T]:
        yield await fn()

    async with open_asyncio_stream(one) as items:
        async for item in items:
            result.append(item)
    if not result:
        raise RuntimeError("the asyncio call gave no result")
    return result[0]
