"""Shutdown never hangs on a stuck agent: the drain waits with deadlines, the server names
the agents that did not exit, and `callengine serve` exits (3 after abandoning them, 0
after a clean drain, 128 + signal at once on a second signal).

Real subprocesses and the real clock: the bounds asserted on elapsed time are the
documented deadlines plus a generous allowance for a slow machine, far below what the
stuck agent would hold (60 s).
"""

from __future__ import annotations

import logging
import signal

import pytest
import trio

from callengine.call.config import CallConfig
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import DialError, open_dialed_call

from .serve_process import start_serve

SLOW_MACHINE_ALLOWANCE_S = 3.0


async def _call_started(sp) -> None:
    await sp.wait_for(rb"call started awaaz:sim-call-1")


async def test_sigterm_with_an_agent_stuck_in_cleanup_exits_nonzero_within_the_graces(nursery):
    drain_grace, cleanup_grace = 0.5, 0.5
    sp = await start_serve(nursery, ["tests.cli_agents:stuck", "--port", "0", "--drain-grace", str(drain_grace), "--cleanup-grace", str(cleanup_grace)])
    async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz") as sim:
        await _call_started(sp)
        t0 = trio.current_time()
        sp.proc.send_signal(signal.SIGTERM)
        code = await sp.wait(timeout=30)
        elapsed = trio.current_time() - t0
        with trio.fail_after(10):
            await sim.closed.wait()
    assert code == 3, sp.stderr_text
    assert elapsed < drain_grace + cleanup_grace + 1.0 + SLOW_MACHINE_ALLOWANCE_S, (elapsed, sp.stderr_text)
    assert sim.closed_code == 1001  # the call itself was ended properly; only the agent lingered
    stuck_lines = [line for line in sp.stderr_text.splitlines() if " ERROR " in line and "abandoning call" in line]
    assert len(stuck_lines) == 1, sp.stderr_text
    assert "awaaz:sim-call-1" in stuck_lines[0] and "the agent waits at " in stuck_lines[0]
    assert "Traceback" not in sp.stderr_text


async def test_a_second_signal_exits_at_once(nursery):
    # the default drain grace (30 s) would hold the live call; the second signal does not wait
    sp = await start_serve(nursery, ["tests.cli_agents:stuck", "--port", "0"])
    async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz"):
        await _call_started(sp)
        sp.proc.send_signal(signal.SIGTERM)
        await sp.wait_for(rb"draining: 1 live call")
        t0 = trio.current_time()
        sp.proc.send_signal(signal.SIGINT)
        code = await sp.wait(timeout=30)
        elapsed = trio.current_time() - t0
    assert code == 128 + signal.SIGINT, sp.stderr_text
    assert elapsed < SLOW_MACHINE_ALLOWANCE_S, elapsed
    assert "received SIGINT again: exiting now" in sp.stderr_text
    assert "Traceback" not in sp.stderr_text


async def test_a_drain_in_which_every_agent_exited_exits_0(nursery):
    sp = await start_serve(nursery, ["tests.cli_agents:tidy", "--port", "0", "--drain-grace", "0.3"])
    async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz") as sim:
        await _call_started(sp)
        sp.proc.send_signal(signal.SIGTERM)
        code = await sp.wait(timeout=30)
    assert code == 0, sp.stderr_text
    assert sim.closed_code == 1001
    assert "abandoning" not in sp.stderr_text and " ERROR " not in sp.stderr_text
    assert "callengine stopped" in sp.stderr_text


async def test_drain_waits_with_deadlines_and_reports_the_stuck_agent(nursery, caplog):
    caplog.set_level(logging.INFO)
    release = trio.Event()

    async def stuck(call):
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await release.wait()

    cfg = ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(cleanup_grace_s=0.3, close_timeout_s=0.5))
    server = CallServer(stuck, cfg)
    serve_done = trio.Event()

    async def run_serve(task_status=trio.TASK_STATUS_IGNORED):
        await server.serve(task_status=task_status)
        serve_done.set()

    await nursery.start(run_serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        with trio.fail_after(10):
            while not server.live_call_labels() or server.live_call_labels() == ["awaaz:?"]:
                await trio.sleep(0.02)
        assert server.stuck_agents() == []  # a live call's agent is not stuck
        with trio.fail_after(10):  # drain 0.2 + cleanup 0.3 (+ close 0.5 at most)
            stuck_agents = await server.drain(grace_s=0.2)
        await sim.closed.wait()
    assert [a.label for a in stuck_agents] == ["awaaz:sim-call-1"]
    assert stuck_agents[0].waited_s >= 0.3 and stuck_agents[0].location
    assert server.stuck_agents() == stuck_agents or [a.label for a in server.stuck_agents()] == ["awaaz:sim-call-1"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "abandoning call" in r.getMessage()]
    assert len(errors) == 1 and "awaaz:sim-call-1" in errors[0]
    assert server.end_causes == {"shutdown": 1}  # its summary was logged when its socket closed
    assert server.active_calls == 0
    # serve() cannot return while the agent's task lingers; it does once the agent exits
    assert not serve_done.is_set()
    release.set()
    with trio.fail_after(10):
        await serve_done.wait()
    assert server.live_call_labels() == []


async def test_drain_reports_nothing_when_every_agent_exits(nursery):
    async def tidy(call):
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)

    server = CallServer(tidy, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz"):
        await trio.sleep(0.2)
        with trio.fail_after(10):
            assert await server.drain(grace_s=0.1) == []
    assert server.live_call_labels() == []


async def test_the_kubernetes_drain_sequence(nursery):
    """As a cluster stops a pod: the preStop hook sends SIGUSR1 (the drain starts, /readyz
    turns 503, live calls go on, new ones are refused), the kubelet's SIGTERM follows and
    does not cut the drain short, the live call ends by itself, and the process exits 0."""
    from .test_health_metrics import get, http

    sp = await start_serve(nursery, ["echo", "--port", "0", "--drain-grace", "20"])
    assert (await http(sp.port, get("/readyz")))[0] == 200
    async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz") as sim:
        await _call_started(sp)
        sp.proc.send_signal(signal.SIGUSR1)  # preStop
        await sp.wait_for(rb"draining: 1 live call")
        assert await http(sp.port, get("/readyz")) == (503, {"content-type": "text/plain; charset=utf-8", "content-length": "9", "connection": "close"}, b"draining\n")
        assert (await http(sp.port, get("/healthz")))[0] == 200  # alive: no liveness restart mid-drain
        with pytest.raises(DialError, match="503"):  # a new call goes to another pod
            async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz"):
                pass
        sp.proc.send_signal(signal.SIGTERM)  # the kubelet, after preStop
        await sp.wait_for(rb"received SIGTERM during the drain SIGUSR1 started: draining on")
        await trio.sleep(0.5)
        assert sp.proc.returncode is None and not sim.closed.is_set()  # the call is still up
        sim.say(b"\x00\x01" * 4000)
        await trio.sleep(0.3)
    # leaving the block hangs up as the caller would: the drain is then complete
    code = await sp.wait(timeout=30)
    assert code == 0, sp.stderr_text
    assert sim.closed_code == 1000
    assert "Traceback" not in sp.stderr_text
