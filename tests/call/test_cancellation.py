"""Strict cancellation: whatever ends a call, every task ends, the agent's finally runs,
nothing is sent after the end, the close code says why, and every handle is settled."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.call.handles import MarkState
from callengine.call.session import CallSession
from callengine.call.transport import TransportClosed, memory_transport_pair
from callengine.errors import UnsupportedCommand
from callengine.events import Hangup, PlayAudio, Transfer
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.testing.harness import open_simulated_call
from callengine.testing.provider import SimulatedProvider

from .conftest import call_tasks_alive


class Probe:
    """An agent that plays forever and records what happened to it."""

    def __init__(self, *, then=None, raise_after=None, ignore_cancel=False) -> None:
        self.finally_ran = False
        self.cleanup_done = False
        self.playbacks = []
        self.marks = []
        self.then = then
        self.raise_after = raise_after

    async def __call__(self, call):
        try:
            for i in range(1000):
                self.playbacks.append(await call.play(tone(440, 0.5, 16000)))
                self.marks.append(await call.mark(f"m{i}"))
                if self.then is not None and i == 1:
                    await self.then(call)
                    return
                if self.raise_after is not None and i == self.raise_after:
                    raise RuntimeError("agent bug")
                await trio.sleep(0.45)
        finally:
            self.finally_ran = True
            with call.cleanup_scope():
                await trio.sleep(0.01)  # cleanup that awaits still runs, shielded
                self.cleanup_done = True


def _assert_clean(sim, probe, code, cause):
    assert sim.report.end_cause == cause, sim.report
    assert sim.report.close_code == code
    assert probe.finally_ran and probe.cleanup_done
    assert all(pb.done for pb in probe.playbacks)
    assert all(m.state is not MarkState.PENDING for m in probe.marks)
    assert call_tasks_alive() == []
    # nothing sent after the end: the engine's last message precedes its close
    engine = sim.engine_transport
    assert engine.closed


async def _end_by(cause: str, autojump_clock=None):
    probe_kwargs = {}
    provider = "awaaz"
    if cause == "agent_returned":
        async def then(call):
            return None
        probe_kwargs["then"] = then
    elif cause == "hangup":
        async def then(call):
            await call.hangup()
        probe_kwargs["then"] = then
    elif cause == "transfer":
        provider = "knowlarity"

        async def then(call):
            await call.transfer("sales")
        probe_kwargs["then"] = then
    elif cause == "agent_error":
        probe_kwargs["raise_after"] = 2
    probe = Probe(**probe_kwargs)
    async with open_simulated_call(probe, provider) as sim:
        await trio.sleep(1.3)
        if cause == "provider_stop":
            await sim.provider.stop()
        elif cause == "disconnected":
            await sim.provider.drop()
    return sim, probe


@pytest.mark.parametrize(
    "cause,code",
    [
        ("provider_stop", 1000),
        ("disconnected", None),
        ("agent_returned", 1000),
        ("hangup", 1000),
        ("transfer", None),  # the provider closes after the transfer message
        ("agent_error", 1011),
    ],
)
async def test_each_ending_cause_tears_down_completely(autojump_clock, cause, code):
    sim, probe = await _end_by(cause)
    _assert_clean(sim, probe, code, cause)
    if cause == "transfer":
        assert sim.provider.hangups == [(pytest.approx(sim.provider.hangups[0][0]), "transfer:sales")]
        # the transfer waited for the queued audio to play out
        heard_end = max(s.end for s in sim.provider.heard)
        assert sim.provider.hangups[0][0] >= heard_end - 1e-9
    if cause == "hangup":
        # Awaaz: hang-up is the close itself, after the queued audio played
        heard_end = max(s.end for s in sim.provider.heard)
        assert sim.provider.closed_code == 1000
        assert sim.report.duration_s >= heard_end - 1e-6


async def test_server_shutdown_cancels_the_call_with_going_away(autojump_clock):
    probe = Probe()
    engine_end, provider_end = memory_transport_pair()
    session = CallSession(engine_end, probe, create_codec("awaaz", Role.ENGINE))
    provider = SimulatedProvider(provider_end, "awaaz")
    with trio.move_on_after(2.0):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(provider.run)
            await session.run()
    assert session.end_cause == "shutdown" and session.close_code == 1001
    assert probe.finally_ran and probe.cleanup_done
    assert all(pb.done for pb in probe.playbacks)
    assert call_tasks_alive() == []


async def test_transfer_on_awaaz_is_a_clear_error_and_the_call_goes_on(autojump_clock):
    errors = []

    async def agent(call):
        try:
            await call.transfer()
        except UnsupportedCommand as exc:
            errors.append(str(exc))
        pb = await call.play(tone(440, 0.2, 16000))
        await pb.wait()

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert errors and "transfer" in errors[0]
    assert sim.report.end_cause == "agent_returned"


async def test_knowlarity_hangup_message_is_exact_and_waits_for_audio(autojump_clock):
    async def agent(call):
        await call.play(tone(440, 0.6, 16000))
        await call.hangup()

    async with open_simulated_call(agent, "knowlarity") as sim:
        pass
    (t, what), = sim.provider.hangups
    assert what == "hangup" and t == pytest.approx(0.6, abs=1e-6)
    assert isinstance(sim.provider.received[-1][1], Hangup)
    assert sim.report.end_cause == "hangup"


async def test_agent_that_swallows_cancellation_is_reported_and_the_socket_still_closes(autojump_clock, caplog):
    released = trio.Event()

    async def stubborn(call):
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await released.wait()

    async with trio.open_nursery() as nursery:

        async def release_later():
            await trio.sleep(10)
            released.set()

        nursery.start_soon(release_later)
        async with open_simulated_call(stubborn, "awaaz") as sim:
            await trio.sleep(0.5)
            await sim.provider.stop()
            await sim.provider.closed.wait()
            # the provider saw the close long before the agent let go
            assert trio.current_time() - sim.provider.t0 < 1.0
    assert "has not exited" in caplog.text
    assert sim.report.end_cause == "provider_stop"


async def test_idle_timeout_ends_a_silent_connection(autojump_clock):
    async def agent(call):
        await trio.sleep_forever()

    engine_end, provider_end = memory_transport_pair()
    codec = create_codec("awaaz", Role.ENGINE)
    session = CallSession(engine_end, agent, codec, CallConfig(idle_timeout_s=3.0))
    provider_codec = create_codec("awaaz", Role.PROVIDER)
    for msg in provider_codec.send(SimulatedProvider(provider_end, "awaaz").start_event):
        await provider_end.send_message(msg)
    report = await session.run()
    assert report.end_cause == "idle_timeout" and report.close_code == 1001
    assert report.duration_s == pytest.approx(3.0, abs=1e-6)


async def test_no_start_message_times_out(autojump_clock):
    async def agent(call):
        raise AssertionError("never called")

    engine_end, provider_end = memory_transport_pair()
    session = CallSession(engine_end, agent, create_codec("awaaz", Role.ENGINE), CallConfig(start_timeout_s=2))
    report = await session.run()
    assert report.end_cause == "start_timeout" and report.close_code == 1002
    assert provider_end.closed is False and engine_end.closed


# --- Hypothesis: end the call at random points --------------------------------------------


def _run_virtual(fn):
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0), strict_exception_groups=True)


@settings(max_examples=60, deadline=None)
@given(
    cause=st.sampled_from(["provider_stop", "disconnected", "hangup", "clear_then_stop", "agent_error", "shutdown", "cleanup_stop"]),
    at=st.floats(min_value=0.0, max_value=2.5),
    provider=st.sampled_from(["awaaz", "knowlarity"]),
)
def test_random_end_points_leave_nothing_behind(cause, at, provider):
    async def main():
        state = {"finally": False, "cleanup": False, "handles": []}
        in_cleanup = trio.Event()

        async def agent(call):
            try:
                for i in range(100):
                    state["handles"].append(await call.play(tone(440, 0.3, 16000)))
                    state["handles"].append(await call.mark(f"m{i}"))
                    await trio.sleep(0.17)
                    if cause == "clear_then_stop" and i % 3 == 2:
                        await call.clear()
                    if cause == "agent_error" and trio.current_time() >= at:
                        raise ValueError("boom")
                    if cause == "hangup" and trio.current_time() >= at:
                        await call.hangup()
            finally:
                state["finally"] = True
                with call.cleanup_scope():
                    in_cleanup.set()
                    await trio.sleep(0.05)
                    state["cleanup"] = True

        sent_at_end = {}
        async with trio.open_nursery() as outer:
            with trio.CancelScope() as scope:
                async with open_simulated_call(agent, provider) as sim:
                    t0 = trio.current_time()
                    await trio.sleep_until(t0 + at)
                    if cause in ("provider_stop", "clear_then_stop"):
                        await sim.provider.stop()
                    elif cause == "disconnected":
                        await sim.provider.drop()
                    elif cause == "shutdown":
                        scope.cancel()
                    elif cause == "cleanup_stop":
                        await sim.provider.stop()
                        await in_cleanup.wait()
                        await sim.provider.drop()  # the socket dies during the agent's cleanup
                    await sim.finished.wait()
                    sent_at_end["n"] = len(sim.engine_transport.sent)
            await trio.sleep(1.0)
        session = sim.session
        assert session.end_cause is not None
        assert state["finally"]
        assert all(h.done if hasattr(h, "done") else h.state is not MarkState.PENDING for h in state["handles"])
        assert call_tasks_alive() == []
        if "n" in sent_at_end:
            assert len(sim.engine_transport.sent) == sent_at_end["n"]  # nothing after the end
        # Awaaz stops with a message, Knowlarity with mod_audio_fork's empty frame; either way
        # the engine then closes with 1000
        stop_code = 1000
        expected_code = {
            "provider_stop": stop_code,
            "clear_then_stop": stop_code,
            "cleanup_stop": stop_code,
            "disconnected": None,
            "agent_error": 1011,
            "shutdown": 1001,
        }
        if cause == "hangup":
            assert session.close_code in (1000, None)  # Knowlarity's provider closes first
        elif session.end_cause == cause or (cause in ("clear_then_stop", "cleanup_stop") and session.end_cause == "provider_stop"):
            assert session.close_code == expected_code[cause]

    _run_virtual(main)


async def test_many_calls_one_ended_by_each_cause_others_unaffected(autojump_clock):
    causes = ["provider_stop", "disconnected", "agent_returned", "hangup", "transfer", "agent_error", "shutdown"]
    sims = {}

    async def long_agent(call):
        pb = await call.play(tone(330, 3.0, 16000))
        result = await pb.wait()
        assert not result.interrupted

    def agent_for(cause):
        async def agent(call):
            await call.play(tone(440, 0.5, 16000))
            await trio.sleep(0.3)
            if cause == "agent_returned":
                return
            if cause == "hangup":
                await call.hangup()
            if cause == "transfer":
                await call.transfer("support")
            if cause == "agent_error":
                raise RuntimeError("one bad agent")
            await trio.sleep_forever()

        return agent

    async def run_one(name, agent):
        provider = "knowlarity" if name == "transfer" else "awaaz"
        with trio.CancelScope() as scope:
            async with open_simulated_call(agent, provider) as sim:
                sims[name] = sim
                await trio.sleep(0.4)
                if name == "provider_stop":
                    await sim.provider.stop()
                elif name == "disconnected":
                    await sim.provider.drop()
                elif name == "shutdown":
                    scope.cancel()  # the server going away cancels this call's scope only

    async with trio.open_nursery() as nursery:
        for cause in causes:
            nursery.start_soon(run_one, cause, agent_for(cause))
        for i in range(5):
            nursery.start_soon(run_one, f"ok{i}", long_agent)
    for cause in causes:
        assert sims[cause].session.end_cause == cause
    assert sims["shutdown"].session.close_code == 1001
    for i in range(5):
        sim = sims[f"ok{i}"]
        assert sim.report.end_cause == "agent_returned"
        assert sim.provider.heard_seconds() == pytest.approx(3.0)
        assert sim.provider.gaps() == []
    assert call_tasks_alive() == []


async def test_regression_writer_noticing_a_clean_close_first_is_provider_stop(autojump_clock):
    """A clean close (1000) seen first by the writer's send used to end the call as
    'disconnected'; the reader called the same close 'provider_stop'."""

    class CloseOnSend:
        def __init__(self, inner):
            self.inner = inner
            self.armed = False

        async def get_message(self):
            return await self.inner.get_message()

        async def send_message(self, message):
            if self.armed:
                raise TransportClosed(1000, "caller hung up")
            await self.inner.send_message(message)

        async def aclose(self, code=1000, reason=None):
            await self.inner.aclose(code, reason)

    async def agent(call):
        while True:
            await call.play(tone(440, 0.2, 16000))
            await trio.sleep(0.1)

    engine_end, provider_end = memory_transport_pair()
    wrapped = CloseOnSend(engine_end)
    session = CallSession(wrapped, agent, create_codec("knowlarity", Role.ENGINE))
    provider = SimulatedProvider(provider_end, "knowlarity")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider.run)

        async def arm():
            await trio.sleep(1.0)
            wrapped.armed = True

        nursery.start_soon(arm)
        report = await session.run()
        nursery.cancel_scope.cancel()
    assert report.end_cause == "provider_stop"
