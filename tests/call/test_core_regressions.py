"""Regression tests for the call core's known defects, each named after its bug.

In memory on virtual time, except where the socket is the point."""

from __future__ import annotations

import gc
import json
import logging

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call import playout as playout_module
from callengine.call.config import CallConfig
from callengine.call.session import CallSession
from callengine.call.transport import memory_transport_pair
from callengine.errors import UnsupportedCommand
from callengine.events import CallerAudio, Dtmf, MarkReached
from callengine.protocols import AwaazCodec, KnowlarityCodec
from callengine.protocols.base import Role
from callengine.protocols.registry import create_codec
from callengine.testing.harness import open_simulated_call
from callengine.testing.provider import SimulatedProvider, default_start

from .conftest import call_tasks_alive


# --- 1: a lead below one chunk ----------------------------------------------------------


def test_regression_lead_below_chunk_is_refused_at_config_time():
    with pytest.raises(ValueError, match="lead_ms .100. is below chunk_ms .200."):
        CallConfig(lead_ms=100, chunk_ms=200)
    # the provider's default chunk decides when only one of the two is set
    with pytest.raises(ValueError, match="on knowlarity"):
        CallConfig(lead_ms=100).pacing(KnowlarityCodec.capabilities, "knowlarity")
    with pytest.raises(ValueError, match="on awaaz"):
        CallConfig(chunk_ms=200).pacing(AwaazCodec.capabilities, "awaaz")
    engine, _ = memory_transport_pair()
    with pytest.raises(ValueError, match="lead"):
        CallSession(engine, lambda call: None, create_codec("knowlarity", Role.ENGINE), CallConfig(lead_ms=100))


async def test_regression_writer_never_spins_on_a_wake_time_in_the_past(autojump_clock, monkeypatch, caplog):
    """Whatever the plan says, a past wake time is awaited at most once in a row: under
    MockClock a spinning writer would never let virtual time advance."""
    calls = {"n": 0}
    real = playout_module.Playout.next_action

    def broken(self, now):
        calls["n"] += 1
        if calls["n"] > 100_000:
            raise AssertionError("the writer is spinning")
        action = real(self, now)
        if isinstance(action, playout_module.Wait) and self.outbox:
            return playout_module.Wait(now - 1.0)  # a plan bug: always "already due"
        return action

    monkeypatch.setattr(playout_module.Playout, "next_action", broken)

    async def agent(call):
        await call.play(tone(440, 1.0, 16000))
        await trio.sleep(2.0)

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert sim.report.end_cause == "agent_returned"
    # about one plan per chunk sent plus one per chunk waited, not a spin
    assert calls["n"] < 2000
    assert "asked to wait until" in caplog.text
    assert sim.provider.heard_seconds() == pytest.approx(1.0)


# --- 3: an agent stuck in cleanup -------------------------------------------------------


def _stubborn_agent(released: trio.Event, started: trio.Event):
    async def agent(call):
        await call.play(tone(440, 5.0, 16000))
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await released.wait()  # ignores its cleanup grace

    return agent


@pytest.mark.parametrize("how", ["shutdown", "engine_error", "provider_stop"])
async def test_regression_stuck_agent_never_holds_the_socket(autojump_clock, caplog, how, monkeypatch):
    """On server shutdown and after an engine error the socket used to close only when the
    agent let go (60 s later): now it closes and the report is released at once, the agent
    gets cleanup_grace_s and is then logged as stuck, on every path."""
    released, started = trio.Event(), trio.Event()
    config = CallConfig(cleanup_grace_s=2.0)
    engine, provider_end = memory_transport_pair()
    codec = create_codec("awaaz", Role.ENGINE)
    armed = []
    if how == "engine_error":
        real_send = codec.send

        def send(command):
            if armed:
                raise RuntimeError("an engine bug")
            return real_send(command)

        codec.send = send  # type: ignore[method-assign]
    session = CallSession(engine, _stubborn_agent(released, started), codec, config)
    provider = SimulatedProvider(provider_end, "awaaz")
    seen = {}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(provider.run)
            scope = trio.CancelScope()  # the server's scope around this call
            if True:

                async def run_session():
                    with scope:
                        await _run_and_note(session, seen)

                nursery.start_soon(run_session)

                async def end_it():
                    await started.wait()
                    await trio.sleep(0.5)
                    seen["t_end"] = trio.current_time()
                    if how == "shutdown":
                        scope.cancel()
                    elif how == "engine_error":
                        armed.append(True)  # the writer's next send fails
                    else:
                        await provider.stop()

                nursery.start_soon(end_it)
                await session.closed.wait()
                seen["closed"] = trio.current_time()
                await provider.closed.wait()
                seen["provider_saw_close"] = trio.current_time()
                await trio.sleep(config.cleanup_grace_s + 1.0)
                seen["stuck"] = session.agent_stuck
                released.set()
                await session.agent_done.wait()
            nursery.cancel_scope.cancel()
    finally:
        released.set()  # a failing assertion must not leave the stuck agent holding the test
    assert seen["stuck"]
    assert "has not exited" in caplog.text and "awaaz:sim-call-1" in caplog.text
    bound = config.close_timeout_s
    assert seen["closed"] - seen["t_end"] <= bound
    assert seen["provider_saw_close"] - seen["t_end"] <= bound
    expected = {"shutdown": ("shutdown", 1001), "engine_error": ("engine_error", 1011), "provider_stop": ("provider_stop", 1000)}[how]
    assert (session.report.end_cause, session.report.close_code) == expected
    assert session.report.stats.agent_stuck
    assert [n for n in call_tasks_alive() if not n.startswith("<test")] == []


async def _run_and_note(session, seen):
    try:
        seen["report"] = await session.run()
    except trio.Cancelled:
        seen["cancelled"] = True
        raise


# --- 7: calls free by reference counting --------------------------------------------------


async def test_regression_finished_calls_leave_no_reference_cycles(autojump_clock):
    """Call <-> CallSession, the tasks' bound methods and the queues used to form cycles
    that the server's tuned collector rarely reached (about 9 KiB per call)."""

    async def agent(call):
        await call.play(tone(440, 0.3, 16000))
        await call.mark("m")
        async for ev in call:
            if isinstance(ev, MarkReached):
                break
        if call.info.custom.get("raise"):
            raise RuntimeError("boom")
        await call.hangup()

    async def calls(n):
        for i in range(n):
            for provider in ("awaaz", "knowlarity"):
                start = default_start(provider, call_id=f"c{i}", **({"raise": "1"} if i % 2 else {}))
                async with open_simulated_call(agent, provider, start=start) as sim:
                    pass
                del sim

    await calls(2)  # warm-up: caches, lazy imports
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        await calls(10)
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("callengine")]
        assert ours == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


# --- 9, 12: the agent's inbox -------------------------------------------------------------


async def test_regression_inbox_is_bounded_by_audio_duration_not_messages(autojump_clock):
    """100 near-limit media messages (1,229 s of audio) used to be queued whole."""
    engine, provider_end = memory_transport_pair()
    codec = create_codec("awaaz", Role.PROVIDER)

    async def deaf(call):
        await trio.sleep_forever()

    session = CallSession(engine, deaf, create_codec("awaaz", Role.ENGINE), CallConfig(agent_rate=8000))
    async with trio.open_nursery() as nursery:

        async def flood():
            for msg in codec.send(default_start("awaaz")):
                await provider_end.send_message(msg)
            big = b"\x01\x00" * 98_304  # 12.3 s at 8 kHz, 256 KiB of base64
            for _ in range(100):
                for msg in codec.send(CallerAudio(big, 8000)):
                    await provider_end.send_message(msg)
                await trio.sleep(0)
            await trio.sleep(0.5)
            assert session.inbox.audio_seconds <= 12.3 + 1e-6  # the newest message, at most
            await provider_end.aclose(1000)

        nursery.start_soon(flood)
        report = await session.run()
    assert report.stats.frames_in == 100
    assert report.stats.frames_unread >= 99


async def test_regression_undelivered_marks_and_events_stay_bounded(autojump_clock):
    """An agent that never iterates the call used to grow its queue for the whole call,
    and dropping audio scanned past every undelivered control event."""
    events = []

    async def agent(call):
        for i in range(2000):
            await call.mark(f"m{i}")  # each is reached at once (nothing playing)
        await trio.sleep(3.0)
        while True:
            try:
                events.append(call._port._inbox.get_nowait())
            except trio.WouldBlock:
                break

    async with open_simulated_call(agent, "knowlarity") as sim:
        await trio.sleep(1.0)
        for _ in range(20):
            await sim.provider.press("5")
        await trio.sleep(3.0)
    stats = sim.report.stats
    marks = [e for e in events if isinstance(e, MarkReached)]
    assert len(marks) == 256 and marks[-1].name == "m1999"  # the newest kept
    assert stats.events_dropped == 2000 - 256
    assert stats.frames_dropped == 0


async def test_regression_frames_dropped_stays_zero_on_an_ordinary_goodbye(autojump_clock):
    """A 5 s goodbye then hangup() counted 149 dropped frames, while the README says the
    counter means the agent fell behind."""

    async def agent(call):
        async for ev in call:
            if isinstance(ev, CallerAudio) and call.statistics().frames_in > 50:
                break
        pb = await call.play(tone(440, 5.0, 16000))
        await pb.wait()
        await call.hangup()

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert sim.report.end_cause == "hangup"
    assert sim.report.stats.frames_dropped == 0
    assert sim.report.stats.frames_unread > 0  # the caller's audio during the goodbye


async def test_slow_reader_agent_counts_dropped_frames(autojump_clock):
    """An agent that reads, but slower than the audio arrives, is what frames_dropped means."""

    async def slow(call):
        async for ev in call:
            await trio.sleep(0.05)  # 20 ms frames, one every 50 ms read

    config = CallConfig(inbound_queue_ms=500)
    async with open_simulated_call(slow, "awaaz", config) as sim:
        await trio.sleep(3.0)
        await sim.provider.stop()
    assert sim.report.stats.frames_dropped > 50


# --- 10: except* --------------------------------------------------------------------------


async def test_regression_call_ended_inside_an_exception_group_is_not_an_agent_error(autojump_clock, caplog):
    caplog.set_level(logging.INFO)

    async def agent(call):
        async with trio.open_nursery() as nursery:

            async def touch_after_end():
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await call.play(tone(440, 0.1, 16000))  # after the end: CallEnded

            nursery.start_soon(touch_after_end)
            nursery.start_soon(touch_after_end)

    async with open_simulated_call(agent, "awaaz") as sim:
        await trio.sleep(0.5)
        await sim.provider.stop()
    assert sim.report.end_cause == "provider_stop"
    assert sim.report.agent_error is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_regression_shutdown_does_not_reraise_an_already_logged_error(autojump_clock, caplog):
    """On shutdown an agent that raised in its cleanup used to escape the session inside an
    exception group with the cancellation (a traceback, exit code 1)."""

    async def agent(call):
        try:
            await trio.sleep_forever()
        finally:
            raise RuntimeError("cleanup bug")

    engine, provider_end = memory_transport_pair()
    session = CallSession(engine, agent, create_codec("awaaz", Role.ENGINE))
    provider = SimulatedProvider(provider_end, "awaaz")
    escaped = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provider.run)
        with trio.move_on_after(1.0):
            try:
                await session.run()
            except BaseException as exc:  # what reaches the server's boundary
                escaped.append(exc)
                raise
        nursery.cancel_scope.cancel()
    assert session.report.end_cause == "shutdown" and session.report.close_code == 1001
    assert len(escaped) == 1
    cancelled, rest = (escaped[0].split(trio.Cancelled) if isinstance(escaped[0], BaseExceptionGroup) else (escaped[0], None))
    assert rest is None  # only the cancellation
    assert "agent raised RuntimeError" in caplog.text


# --- 11: a wire rate the VAD cannot take ---------------------------------------------------


@pytest.mark.parametrize("vad", ["webrtc", "silero"])
async def test_regression_vad_that_cannot_take_the_wire_rate_never_kills_the_call(autojump_clock, vad):
    speech = tone(300, 1.0, 24000, dbfs=-10)
    got = []

    async def agent(call):
        await call.play(tone(440, 3.0, 16000))
        async for ev in call:
            got.append(type(ev).__name__)

    start = default_start("knowlarity", sample_rate=24000)
    async with open_simulated_call(agent, "knowlarity", CallConfig(vad=vad), start=start) as sim:
        await trio.sleep(0.5)
        sim.provider.say(speech)
        await trio.sleep(2.0)
        await sim.provider.drop()
    assert sim.report.end_cause == "disconnected"
    assert "CallerAudio" in got


# --- 13: audio the engine cannot play as given ---------------------------------------------


async def test_regression_stereo_play_is_refused_at_the_call_site(autojump_clock):
    errors = []

    async def agent(call):
        try:
            await call.play(np.zeros((1600, 2), dtype=np.int16))
        except ValueError as exc:
            errors.append(str(exc))
        await call.play(tone(440, 0.2, 16000))

    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert errors and "to_mono" in errors[0]
    assert sim.provider.heard_seconds() == pytest.approx(0.2)


# --- the rest of defect 2: DTMF floods -----------------------------------------------------


async def test_dtmf_flood_is_rate_limited_per_call(autojump_clock, caplog):
    keys = []

    async def agent(call):
        async for ev in call:
            if isinstance(ev, Dtmf):
                keys.append(ev.digit)

    async with open_simulated_call(agent, "awaaz", CallConfig(max_control_per_s=10)) as sim:
        for _ in range(500):
            await sim.provider._send(Dtmf("7"))
        await trio.sleep(0.5)
        await sim.provider.stop()
    stats = sim.report.stats
    assert stats.control_dropped == 500 - len(keys) and len(keys) <= 30
    assert stats.control_messages == 500
    assert caplog.text.count("over the per-call rate limit") == 1


# --- log lines name their call --------------------------------------------------------------


async def test_agent_log_lines_carry_the_call(autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    agent_log = logging.getLogger("mypkg.agent")

    async def agent(call):
        agent_log.info("hello from the agent")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _log_from_child(agent_log))

    async with open_simulated_call(agent, "awaaz", start=default_start("awaaz", call_id="MZ42")):
        pass
    mine = [r for r in caplog.records if r.name == "mypkg.agent"]
    assert [r.call for r in mine] == ["awaaz:MZ42", "awaaz:MZ42"]


async def _log_from_child(logger):
    logger.info("from a child task")


def test_report_end_cause_is_an_enum_that_serialises_as_its_value():
    from callengine.call.causes import CallReport, CallStatistics, EndCause

    report = CallReport("c", "awaaz", "", "", 1.0, EndCause.HANGUP, 1000, "hangup", 0.0, CallStatistics())
    assert report.end_cause == "hangup"
    assert json.loads(json.dumps(report.as_dict()))["end_cause"] == "hangup"
    with pytest.raises(Exception):
        report.stats.frames_in = 3  # frozen
    assert UnsupportedCommand  # the import is part of the public errors


async def test_awaaz_without_mark_echo_reaches_marks_on_time_without_sending_them(autojump_clock):
    """An account that never echoes marks: with mark_echo=False the playout clock reaches
    the mark when the audio before it has played, instead of mark_grace_s later."""
    from callengine.events import MarkReached as Reached

    times = {}

    async def agent(call):
        t0 = trio.current_time()
        await call.play(tone(440, 0.5, 16000))
        await call.mark("m")
        async for ev in call:
            if isinstance(ev, Reached):
                times["m"] = trio.current_time() - t0
                break

    async with open_simulated_call(agent, "awaaz", codec_options={"mark_echo": False}, echo_marks=False) as sim:
        pass
    assert times["m"] == pytest.approx(0.5, abs=1e-6)
    assert sim.provider.marks_received == []  # nothing on the wire
    assert sim.report.stats.mark_fallbacks == 0
