"""An asyncio SDK under Trio: a plain asyncio async generator stands in for one (real
clock, real threads; every wait bounded)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from callengine.bridges.asyncio_bridge import open_asyncio_stream, run_asyncio


class FakeSDK:
    """An asyncio-only client: its coroutines need a running asyncio loop."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.cancelled = threading.Event()
        self.closed = threading.Event()

    async def tokens(self, n: int, delay: float = 0.0):
        asyncio.get_running_loop()  # fails outside asyncio
        self.threads.add(threading.get_ident())
        try:
            for i in range(n):
                await asyncio.sleep(delay)
                yield f"t{i}"
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.closed.set()

    async def transcribe(self, audio: bytes) -> str:
        await asyncio.sleep(0.01)
        return f"{len(audio)} bytes"

    async def broken(self):
        yield "first"
        raise ConnectionError("the vendor hung up")


async def test_items_of_an_asyncio_generator_arrive_in_trio():
    sdk = FakeSDK()
    with trio.fail_after(10):
        async with open_asyncio_stream(lambda: sdk.tokens(5)) as items:
            got = [item async for item in items]
    assert got == ["t0", "t1", "t2", "t3", "t4"]
    assert sdk.threads and threading.get_ident() not in sdk.threads  # it ran in a worker thread
    assert sdk.closed.is_set()


async def test_a_trio_cancel_cancels_the_asyncio_task():
    sdk = FakeSDK()
    got = []
    with trio.fail_after(10):
        with trio.move_on_after(0.3):
            async with open_asyncio_stream(lambda: sdk.tokens(1000, delay=0.05)) as items:
                async for item in items:
                    got.append(item)
    assert 1 <= len(got) < 20
    assert sdk.cancelled.is_set() and sdk.closed.is_set()  # stopped inside asyncio, not left running


async def test_leaving_the_block_early_stops_the_generator():
    sdk = FakeSDK()
    with trio.fail_after(10):
        async with open_asyncio_stream(lambda: sdk.tokens(1000, delay=0.01)) as items:
            async for item in items:
                break
    assert sdk.closed.is_set()


async def test_an_sdk_error_is_raised_in_trio():
    sdk = FakeSDK()
    got = []
    with trio.fail_after(10), pytest.raises(ConnectionError, match="hung up"):
        async with open_asyncio_stream(sdk.broken) as items:
            async for item in items:
                got.append(item)
    assert got == ["first"]


async def test_run_asyncio_awaits_one_coroutine():
    sdk = FakeSDK()
    with trio.fail_after(10):
        assert await run_asyncio(lambda: sdk.transcribe(b"1234")) == "4 bytes"
