"""The reader's idle timeout uses one cancel scope per idle period and re-arms it from the
last message when it fires (a scope per message cost as much as decoding the frame). These
pin the timing: a call that keeps talking never times out, and a call that falls silent
ends exactly ``idle_timeout_s`` after its last message."""

from __future__ import annotations

import pytest
import trio

from callengine.call.config import CallConfig
from callengine.call.session import CallSession
from callengine.call.transport import memory_transport_pair
from callengine.events import CallerAudio
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.testing.provider import default_start


@pytest.mark.parametrize("gap", [0.02, 1.0, 2.9])
async def test_idle_timeout_counts_from_the_last_message(autojump_clock, gap):
    async def agent(call):
        async for _ in call:
            pass

    engine_end, provider_end = memory_transport_pair()
    session = CallSession(engine_end, agent, create_codec("awaaz", Role.ENGINE), CallConfig(idle_timeout_s=3.0))
    provider = create_codec("awaaz", Role.PROVIDER)
    last_sent = 0.0

    async def talk():
        nonlocal last_sent
        for msg in provider.send(default_start("awaaz")):
            await provider_end.send_message(msg)
        t0 = trio.current_time()
        k = 0
        while trio.current_time() - t0 < 7.5:  # longer than two idle periods
            await trio.sleep_until(t0 + k * gap)
            for msg in provider.send(CallerAudio(b"\0\0" * 160, 8000)):
                await provider_end.send_message(msg)
            last_sent = trio.current_time()
            k += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(talk)
        t_start = trio.current_time()
        report = await session.run()
    assert report.end_cause == "idle_timeout"
    assert last_sent - t_start >= 7.5
    assert report.duration_s == pytest.approx(last_sent - t_start + 3.0, abs=1e-6)
