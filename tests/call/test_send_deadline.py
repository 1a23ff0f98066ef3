"""The writer's send timeout is one cancel scope around the writer whose deadline is finite
only while a message is being sent (a scope per message cost 5-10% of the engine's CPU).
These pin that it never fires between sends, however long the call, and that it still
fires, on time, in a send the provider does not take."""

from __future__ import annotations

import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.call.session import CallSession
from callengine.call.transport import memory_transport_pair
from callengine.events import CallerAudio, CallStopped, PlayAudio
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.testing.provider import default_start

RATE = 8000


async def test_a_long_healthy_call_never_times_out(autojump_clock):
    """Sends keep succeeding for four send timeouts, with idle stretches longer than the
    timeout between playbacks: nothing fires."""

    async def talker(call):
        while True:
            await call.play(tone(440, 1.0, RATE), RATE)
            await trio.sleep(3.0)  # idle, nothing to send, longer than the timeout

    engine, provider = memory_transport_pair()
    session = CallSession(engine, talker, create_codec("awaaz", Role.ENGINE), CallConfig(agent_rate=RATE, send_timeout_s=2.0))
    codec = create_codec("awaaz", Role.PROVIDER)
    heard = 0.0

    async def provider_side():
        nonlocal heard
        for msg in codec.send(default_start("awaaz")):
            await provider.send_message(msg)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def read():
                nonlocal heard
                while True:
                    for ev in codec.receive(await provider.get_message()):
                        if isinstance(ev, PlayAudio):
                            heard += ev.duration

            nursery.start_soon(read)
            k = 0
            while trio.current_time() - t0 < 10.0:
                await trio.sleep_until(t0 + k * 0.02)
                for msg in codec.send(CallerAudio(b"\0\0" * 160, RATE)):
                    await provider.send_message(msg)
                k += 1
            for msg in codec.send(CallStopped()):
                await provider.send_message(msg)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider_side)
        report = await session.run()
    assert report.end_cause == "provider_stop"
    assert report.duration_s == pytest.approx(10.0, abs=0.05)
    assert heard >= 2.5  # three playbacks or so went out, over 10 s


async def test_the_deadline_is_counted_from_the_stuck_send(autojump_clock):
    """The provider reads for 3 s, then stops: the call ends send_timeout_s after the
    first send that could not complete, not after the first send of the call."""
    engine, provider = memory_transport_pair(buffer=4)
    codec = create_codec("awaaz", Role.PROVIDER)

    async def talker(call):
        async with call.open_playback(RATE) as playback:
            while True:
                await playback.write(b"\0\0" * 160)
                await trio.sleep(0.02)

    session = CallSession(engine, talker, create_codec("awaaz", Role.ENGINE), CallConfig(agent_rate=RATE, send_timeout_s=2.0, idle_timeout_s=None))
    stopped_reading = None

    async def provider_side():
        nonlocal stopped_reading
        for msg in codec.send(default_start("awaaz")):
            await provider.send_message(msg)
        t0 = trio.current_time()
        with trio.move_on_after(3.0):
            while True:
                await provider.get_message()
        stopped_reading = trio.current_time() - t0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider_side)
        t_start = trio.current_time()
        report = await session.run()
    assert report.end_cause == "send_timeout"
    # after the reader stopped, the buffer (4 messages) filled within ~0.1 s, then 2 s passed
    assert stopped_reading == pytest.approx(3.0, abs=1e-6)
    assert 3.0 + 2.0 <= report.duration_s <= 3.0 + 0.2 + 2.0


# --- over a real socket: the deadline is armed only while a send waits --------------------


async def test_on_a_socket_the_send_deadline_moves_only_when_a_send_has_to_wait():
    """sockio.send_all tells its caller when a write has to wait for the kernel, and when
    it is over; a write the kernel takes at once never touches the deadline."""
    import socket as stdlib_socket

    from callengine.call import sockio

    a, b = trio.socket.socketpair(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    with a, b:
        a.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
        calls: list[bool] = []
        await sockio.send_all(a, b"x" * 100, calls.append)
        assert calls == []
        assert await b.recv(1000) == b"x" * 100

        big = b"y" * (1 << 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sockio.send_all, a, big, calls.append)
            await trio.sleep(0.05)
            assert calls == [True]  # waiting for the peer to read
            got = 0
            while got < len(big):
                got += len(await b.recv(65536))
        assert calls == [True, False]

