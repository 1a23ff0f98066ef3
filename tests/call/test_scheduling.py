"""How often the call's tasks go through the scheduler: the cost the capacity benchmark
pays per frame, pinned where it is a property of the code and not of the machine.

In memory on virtual time: a trio Instrument counts each task's steps while an echo call
streams, and the steps per inbound 20 ms frame must stay at one per task (reader, agent,
writer). A regression that adds a schedule point per frame (an extra checkpoint, a task
between the reader and the agent) shows up here as 2.0 instead of 1.0.
"""

from __future__ import annotations

import collections

import trio

from callengine.agents.echo import agent as echo
from callengine.call.config import CallConfig
from callengine.call.port import WORK_BETWEEN_YIELDS
from callengine.events import CallerAudio
from callengine.server import CallServer, ServerConfig
from callengine.testing.harness import open_simulated_call
from callengine.testing.load import LoadConfig, LoadGenerator


class StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()
        self.on = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on:
            self.steps[task.name.split(" ")[0]] += 1


async def test_an_echo_call_costs_one_step_per_frame_for_the_reader_and_the_agent(autojump_clock):
    """In memory (the memory transport's send is a schedule point of its own, so the
    writer's count is checked over a real socket below)."""
    counter = StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        config = CallConfig(agent_rate=8000, barge_in=False)
        async with open_simulated_call(echo, "awaaz", config) as sim:
            await trio.sleep(1.0)
            before = sim.session.counters.frames_in
            counter.on = True
            await trio.sleep(2.0)
            counter.on = False
            frames = sim.session.counters.frames_in - before
            await sim.provider.stop()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert frames == 100
    for task in ("reader", "agent"):
        assert counter.steps[task] / frames <= 1.05, (task, dict(counter.steps))


async def test_over_a_socket_each_call_task_takes_one_step_per_frame():
    """A real server on loopback under the load generator's echo calls: the reader, agent
    and writer each go through the scheduler at most once per 20 ms frame. (A slow machine
    can only merge steps, never add them: the bound holds at any speed.)"""
    counter = StepCounter()
    calls, window = 3, 1.0
    server = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=8000, barge_in=False)))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        generator = LoadGenerator(LoadConfig(url=f"ws://127.0.0.1:{server.port}/awaaz", calls=calls, seconds=2.5, ramp=0.1))

        async def count() -> None:
            await trio.sleep(1.0)
            trio.lowlevel.add_instrument(counter)
            counter.on = True
            await trio.sleep(window)
            counter.on = False
            trio.lowlevel.remove_instrument(counter)

        nursery.start_soon(count)
        result = await generator.run()
        nursery.cancel_scope.cancel()
    assert result.ok, result.format_table()
    frames = calls * window / 0.020
    for task in ("reader", "agent", "writer"):
        assert counter.steps[task] / frames <= 1.1, (task, dict(counter.steps))


async def test_on_knowlarity_the_writer_wakes_about_once_per_clip_not_per_frame():
    """Knowlarity gets 200 ms clips: the echo's 20 ms writes fill a partial clip nine
    frames in ten, and the writer is not woken for those (it already planned the partial's
    flush); reader and agent still take one step per frame."""
    counter = StepCounter()
    calls, window = 3, 1.0
    server = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=16000, barge_in=False, inband_dtmf=False)))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        generator = LoadGenerator(
            LoadConfig(url=f"ws://127.0.0.1:{server.port}/knowlarity", provider="knowlarity", calls=calls, seconds=2.5, ramp=0.1)
        )

        async def count() -> None:
            await trio.sleep(1.0)
            trio.lowlevel.add_instrument(counter)
            counter.on = True
            await trio.sleep(window)
            counter.on = False
            trio.lowlevel.remove_instrument(counter)

        nursery.start_soon(count)
        result = await generator.run()
        nursery.cancel_scope.cancel()
    assert result.ok, result.format_table()
    frames = calls * window / 0.020
    for task in ("reader", "agent"):
        assert counter.steps[task] / frames <= 1.1, (task, dict(counter.steps))
    # one send per clip, plus a wake-up per clip for the partial's planned flush (which
    # finds it grown): 2 per 10 frames, against 1 per frame when every write woke it
    assert counter.steps["writer"] / frames <= 0.3, dict(counter.steps)


async def test_an_agent_that_only_writes_still_yields(autojump_clock):
    """play/mark/write skip their schedule point only when the agent has just yielded: one
    that writes in a loop without awaiting anything else yields every WORK_BETWEEN_YIELDS
    calls, so other tasks run."""
    counter = StepCounter()
    writes = 10 * WORK_BETWEEN_YIELDS

    async def writer_agent(call) -> None:
        async with call.open_playback(8000) as playback:
            counter.on = True
            for _ in range(writes):
                await playback.write(b"\0\0" * 8)
            counter.on = False

    trio.lowlevel.add_instrument(counter)
    try:
        async with open_simulated_call(writer_agent, "awaaz", CallConfig(agent_rate=8000)) as sim:
            await trio.sleep(0.5)
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert sim.report.end_cause in ("agent_returned", "hangup")
    assert counter.steps["agent"] >= writes // WORK_BETWEEN_YIELDS


async def test_a_cancelled_agent_learns_it_at_a_write_that_does_not_yield(autojump_clock):
    """The first write after the agent's inbox wait skips its schedule point; a cancel
    pending at that moment still lands in it."""
    reached = []

    async def agent(call) -> None:
        async with call.open_playback(8000) as playback:
            async for event in call:
                if isinstance(event, CallerAudio):
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await playback.write(event.pcm)
                        reached.append("after")  # never: the write raised Cancelled
                    reached.append(scope.cancelled_caught)
                    return

    async with open_simulated_call(agent, "awaaz", CallConfig(agent_rate=8000)) as sim:
        await trio.sleep(0.2)
    assert reached == [True]
    assert sim.report.end_cause == "agent_returned" or sim.report.end_cause == "hangup"
