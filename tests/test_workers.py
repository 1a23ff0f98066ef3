"""`callengine serve --workers N`: worker processes sharing the call port under a supervisor
(callengine/workers.py), with real processes and loopback sockets.

Which worker took a call is read from its "call started" log line (a worker's lines carry
its pid). SO_REUSEPORT spreads connections by a hash of their addresses, so the tests that
need both workers open calls until both have some (bounded). Every wait has a deadline,
and every process is killed when a test ends, whatever happened.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from callengine.cli import add_serve_arguments
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.provider import default_start
from callengine.workers import next_wait, worker_argv, worker_env

from .cli_agents import echo
from .serve_process import PY, ServeProcess, start_serve
from .test_health_metrics import get, http, scrape, value

STARTED = re.compile(rb"worker (\d+) started: pid (\d+)")
CALL_ON = re.compile(rb"\[(\d+)\]: call started awaaz:(\S+)")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def _kill_worker(pid: int) -> None:
    try:
        if "--worker-of" in Path(f"/proc/{pid}/cmdline").read_text():  # still ours
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@asynccontextmanager
async def workers(nursery, *args: str, env: dict | None = None):
    sp = await start_serve(nursery, ["--workers", "2", "--port", "0", *args], env=env)
    try:
        yield sp
    finally:
        if sp.proc.returncode is None:
            sp.proc.kill()
        for pid in pids(sp):
            _kill_worker(pid)


def pids(sp: ServeProcess) -> list[int]:
    return [int(m.group(2)) for m in STARTED.finditer(sp.stderr)]


def served_by(sp: ServeProcess) -> dict[str, int]:
    """call id -> pid of the worker that logged its start"""
    return {m.group(2).decode(): int(m.group(1)) for m in CALL_ON.finditer(sp.stderr)}


async def wait_until(predicate, timeout: float = 10, what: str = "") -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def url(sp: ServeProcess) -> str:
    return f"ws://127.0.0.1:{sp.port}/awaaz"


async def _hold_call(sp: ServeProcess, call_id: str, calls: dict, bearer: str | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A call that stays up until its entry's "done" event is set (or the engine ends it)."""
    done = trio.Event()
    headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else None
    async with open_dialed_call(url(sp), "awaaz", start=default_start("awaaz", call_id=call_id), extra_headers=headers) as sim:
        calls[call_id] = (sim, done)
        task_status.started()
        async with trio.open_nursery() as either:

            async def until(event: trio.Event) -> None:
                await event.wait()
                either.cancel_scope.cancel()

            either.start_soon(until, done)
            either.start_soon(until, sim.closed)
            either.cancel_scope.deadline = trio.current_time() + 60


async def calls_on_both(nursery, sp: ServeProcess, calls: dict, at_most: int = 40, bearer: str | None = None) -> dict[str, int]:
    """Open held calls until both workers have at least one; call id -> pid."""
    for i in range(at_most):
        await nursery.start(_hold_call, sp, f"c{i}", calls, bearer)
        await wait_until(lambda: f"c{i}" in served_by(sp))
        if len(set(served_by(sp).values())) == 2 and i >= 3:
            return served_by(sp)
    raise AssertionError(f"{at_most} calls all went to one worker: {served_by(sp)}")


# --- the supervisor's pieces --------------------------------------------------------------


def test_worker_argv_gives_the_workers_the_same_options():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    given = [
        "mypkg.agent:handler", "--host", "0.0.0.0", "--port", "0", "--workers", "3", "--route", "/k=knowlarity,lead_ms=200",
        "--route", "/raw=awaaz,wav_wrap=off", "--token=-starts-with-a-dash", "--no-barge-in", "--drain-grace", "0.5",
        "--max-calls", "7", "--log-format", "json", "--codec-option", "awaaz.mark_echo=off",
    ]  # fmt: skip
    args = parser.parse_args(given)
    again = parser.parse_args(worker_argv(args))
    # the token goes by the environment (worker_env), never the command line
    assert vars(again) == {**vars(args), "workers": 1, "port": 8080, "token": None}
    assert not any("starts-with-a-dash" in a for a in worker_argv(args))
    assert worker_env(args) == {"CALLENGINE_TOKEN": "-starts-with-a-dash"}
    assert worker_argv(parser.parse_args(["echo"])) == ["echo"]  # defaults are not repeated
    assert worker_env(parser.parse_args(["echo"])) == {"CALLENGINE_TOKEN": ""}  # removed


def test_the_token_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("CALLENGINE_TOKEN", "from-env")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args(["echo"]).token == "from-env"
    assert parser.parse_args(["echo", "--token", "given"]).token == "given"
    monkeypatch.setenv("CALLENGINE_TOKEN", "")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args(["echo"]).token is None


def test_restart_waits_grow_while_a_worker_keeps_dying_young():
    assert next_wait(1.0, lived=120) == 1.0  # lived long: at most one restart a second
    assert next_wait(1.0, lived=0.2) == 2.0 and next_wait(16.0, lived=0.2) == 30.0
    assert next_wait(8.0, lived=60) == 1.0 and next_wait(8.0, lived=10) == 8.0


# --- real processes -----------------------------------------------------------------------


@pytest.mark.parametrize("socket_mode", ["reuseport", "inherited"])
async def test_two_workers_serve_calls_and_metrics_add_up_across_them(nursery, socket_mode):
    env = dict(os.environ, CALLENGINE_NO_REUSEPORT="1" if socket_mode == "inherited" else "0")
    async with workers(nursery, "echo", "--drain-grace", "1", env=env) as sp:
        assert len(pids(sp)) == 2
        listening = [line for line in (sp.stdout_text + sp.stderr_text).splitlines() if "listening on" in line]
        assert len(listening) == 1 and "2 workers" in listening[0], listening  # one line, from the supervisor
        n = 16
        async with trio.open_nursery() as calls:
            for i in range(n):

                async def one(i=i):
                    async with open_dialed_call(url(sp), "awaaz", start=default_start("awaaz", call_id=f"m{i}")) as sim:
                        await wait_until(lambda: sim.frames_sent >= 5)

                calls.start_soon(one)
        await wait_until(lambda: len(served_by(sp)) == n)
        taken = served_by(sp)
        assert set(taken.values()) <= set(pids(sp))
        if socket_mode == "reuseport":  # the kernel spreads them; an inherited socket goes to whoever accepts first
            assert len(set(taken.values())) == 2, taken
        # any worker's /metrics has every worker's calls (another worker's within a second)
        for _ in range(4):
            with trio.fail_after(10):
                while True:
                    samples = await scrape(sp.port)
                    if value(samples, "callengine_calls_ended_total", provider="awaaz", end_cause="provider_stop") == n:
                        break
                    await trio.sleep(0.1)
            assert value(samples, "callengine_calls_started_total", provider="awaaz") == n
            assert value(samples, "callengine_call_duration_seconds_count", provider="awaaz") == n
            assert value(samples, "callengine_calls_active", provider="awaaz") == 0
            assert value(samples, "callengine_ready") == 1
            assert value(samples, "callengine_audio_frames_in_total", provider="awaaz") >= 5 * n
            assert not [key for key in samples if "pid" in dict(key[1])]  # label sets stay bounded
        # the same series as one process serves (which also has the histograms' _created)
        single = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None))
        await nursery.start(single.serve)
        async with open_dialed_call(f"ws://127.0.0.1:{single.port}/awaaz", "awaaz") as sim:
            await wait_until(lambda: sim.frames_sent >= 5)
        await wait_until(lambda: single.counters["calls_ended"] == 1)
        alone = {name for name, _ in await scrape(single.port) if not name.endswith("_created")}
        assert {name for name, _ in samples} == alone
        status, _, body = await http(sp.port, get("/readyz"))
        assert (status, body) == (200, b"ready\n")  # per worker: whichever took the connection
        sp.proc.send_signal(signal.SIGTERM)
        assert await sp.wait(timeout=30) == 0, sp.stderr_text
    assert "Traceback" not in sp.stderr_text


async def test_the_token_reaches_the_workers_by_their_environment_not_their_command_line(nursery):
    secret = "tok-7f3a9c"
    async with workers(nursery, "echo", "--token", secret, "--drain-grace", "1") as sp:
        assert len(pids(sp)) == 2
        for pid in pids(sp):
            assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert f"CALLENGINE_TOKEN={secret}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        # calls with the token are served, by both workers; without it they are refused
        calls: dict = {}
        taken = await calls_on_both(nursery, sp, calls, bearer=secret)
        assert set(taken.values()) == set(pids(sp))
        for _, done in calls.values():
            done.set()
        status, _, _ = await http(sp.port, get("/metrics"))
        assert status == 401
        sp.proc.send_signal(signal.SIGTERM)
        assert await sp.wait(timeout=30) == 0, sp.stderr_text
    assert secret not in sp.stderr_text + sp.stdout_text


async def test_a_killed_worker_ends_only_its_calls_and_is_restarted(nursery):
    async with workers(nursery, "tests.cli_agents:echo", "--drain-grace", "2") as sp, trio.open_nursery() as held:
        calls: dict = {}
        taken = await calls_on_both(held, sp, calls)
        victim, survivor = pids(sp)
        os.kill(victim, signal.SIGKILL)
        theirs = [cid for cid, pid in taken.items() if pid == victim]
        ours = [cid for cid, pid in taken.items() if pid == survivor]
        await wait_until(lambda: all(calls[cid][0].closed.is_set() for cid in theirs))
        # the other worker's calls go on: still open, still echoing what the caller says
        for cid in ours:
            sim = calls[cid][0]
            assert not sim.closed.is_set()
            sim.say(b"\x10\x00" * 8000)
        await wait_until(lambda: all(calls[cid][0].heard_seconds() > 0.2 for cid in ours))
        assert not any(calls[cid][0].closed.is_set() for cid in ours)
        # the supervisor restarts the killed worker, and the new one serves
        m = await sp.wait_for(rb"worker \d+ \(pid %d\) killed by SIGKILL.*restarting" % victim)
        assert len(re.findall(rb"restarting", sp.stderr)) == 1, m
        await wait_until(lambda: len(pids(sp)) == 3)
        fresh = pids(sp)[2]
        await sp.wait_for(rb"\[%d\]: file descriptor limit" % fresh)  # listening
        for i in range(40):
            async with open_dialed_call(url(sp), "awaaz", start=default_start("awaaz", call_id=f"n{i}")) as sim:
                await wait_until(lambda: f"n{i}" in served_by(sp))
            if served_by(sp)[f"n{i}"] == fresh:
                break
        else:
            raise AssertionError(f"the restarted worker {fresh} took none of 40 calls: {served_by(sp)}")
        for cid in ours:
            calls[cid][1].set()
        await wait_until(lambda: all(calls[cid][0].closed.is_set() for cid in ours))
        assert all(calls[cid][0].closed_code == 1000 for cid in ours)
        sp.proc.send_signal(signal.SIGTERM)
        assert await sp.wait(timeout=30) == 0, sp.stderr_text


async def test_sigterm_drains_every_worker_and_the_live_calls_finish(nursery):
    grace = 8.0
    async with workers(nursery, "tests.cli_agents:echo", "--drain-grace", str(grace)) as sp, trio.open_nursery() as held:
        calls: dict = {}
        await calls_on_both(held, sp, calls)
        sp.proc.send_signal(signal.SIGTERM)
        for pid in pids(sp):
            await sp.wait_for(rb"\[%d\]: draining: \d+ live call" % pid)
        status, _, _ = await http(sp.port, get("/readyz"))
        assert status == 503  # draining, on whichever worker answered
        await trio.sleep(0.5)
        assert not any(sim.closed.is_set() for sim, _ in calls.values())  # the live calls go on
        t0 = trio.current_time()
        for _, done in calls.values():
            done.set()  # the callers hang up
        code = await sp.wait(timeout=30)
        assert code == 0, sp.stderr_text
        assert trio.current_time() - t0 < grace  # the drain ended with the calls, not the grace
        assert all(sim.closed_code == 1000 for sim, _ in calls.values())
        assert "all workers exited: exit code 0" in sp.stderr_text


async def test_a_second_sigterm_stops_the_workers_at_once(nursery):
    async with workers(nursery, "tests.cli_agents:hold") as sp:  # the default grace would hold the call 30 s
        async with open_dialed_call(url(sp), "awaaz"):
            await sp.wait_for(rb"call started awaaz:sim-call-1")
            sp.proc.send_signal(signal.SIGTERM)
            for pid in pids(sp):
                await sp.wait_for(rb"\[%d\]: draining" % pid)
            t0 = trio.current_time()
            sp.proc.send_signal(signal.SIGTERM)
            code = await sp.wait(timeout=30)
        assert code == 128 + signal.SIGTERM, sp.stderr_text
        assert trio.current_time() - t0 < 5


async def test_workers_drain_and_exit_when_the_supervisor_is_killed(nursery):
    async with workers(nursery, "echo", "--drain-grace", "0.5") as sp:
        workers_of = pids(sp)
        sp.proc.kill()
        await sp.wait(timeout=10)
        await wait_until(lambda: not any(_alive(pid) for pid in workers_of), timeout=15)
    assert sp.stderr_text.count("the supervisor is gone: draining") == 2


async def test_a_bad_agent_with_workers_is_one_error_and_exit_2():
    result = await trio.run_process(PY + ["serve", "no_such_module:agent", "--workers", "2", "--port", "0"], capture_stderr=True, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.decode().splitlines() if "callengine: error:" in line]
    assert len(errors) == 1 and "no_such_module" in errors[0], result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_serve_help_documents_workers():
    result = subprocess.run(PY + ["serve", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert "--workers N" in text and "in each worker process" in text
    assert "--worker-of" not in text and "--listen-fd" not in text
