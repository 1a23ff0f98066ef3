"""The command line, through real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import trio

from callengine.audio.generate import tone
from callengine.cli import AgentLoadError, load_agent
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call

PY = [sys.executable, "-m", "callengine"]


def test_bad_agent_path_is_a_one_line_error_and_exit_2():
    for spec, message in [
        ("no_such_pkg.mod:agent", "cannot import"),
        ("callengine.agents.echo:nope", "has no attribute"),
        ("callengine.events:Dtmf", "without an async __call__"),
        ("callengine.audio.pcm:dbfs", "not an async callable"),
        ("not a path", "package.module:attribute"),
    ]:
        result = subprocess.run(PY + ["serve", spec, "--port", "0"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (spec, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (spec, result.stderr)


def test_load_agent_forms():
    from callengine.agents import echo

    assert load_agent("echo") is echo.agent
    assert load_agent("callengine.agents.echo") is echo.agent
    assert load_agent("callengine.agents.echo:agent") is echo.agent
    with pytest.raises(AgentLoadError):
        load_agent("callengine.agents.echo:PRE_ROLL")


async def _read_port(proc: trio.Process, buf: bytearray) -> int:
    with trio.fail_after(30):
        while True:
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError("serve exited before listening: " + buf.decode())
            buf += chunk
            m = re.search(rb"listening on ws://127\.0\.0\.1:(\d+)", buf)
            if m:
                return int(m.group(1))


async def test_serve_answers_a_call_and_drains_on_sigterm():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            lambda task_status: trio.run_process(
                PY + ["serve", "echo", "--port", "0", "--drain-grace", "0.5", "--log-format", "json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                env=env,
                task_status=task_status,
            )
        )
        buf = bytearray()
        port = await _read_port(proc, buf)
        async with open_dialed_call(f"ws://127.0.0.1:{port}/awaaz", "awaaz") as sim:
            sim.say(tone(600, 0.5, 8000))
            with trio.fail_after(10):
                while sim.heard_seconds() < 0.4:
                    await trio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)  # with the call still live
            with trio.fail_after(15):
                await sim.closed.wait()
        assert sim.closed_code == 1001  # the drain grace ran out: the engine said "going away"
        with trio.fail_after(15):
            await proc.wait()
        assert proc.returncode == 0
        stderr = (await proc.stderr.receive_some(1 << 20)).decode()
    summaries = [json.loads(line) for line in stderr.splitlines() if '"logger": "callengine.calls"' in line]
    assert len(summaries) == 1 and summaries[0]["end_cause"] == "shutdown"


async def test_dial_prints_a_timeline_and_records(tmp_path, nursery):
    async def greeter(call):
        await call.play(tone(440, 0.5, 16000))
        await call.hangup()

    server = CallServer(greeter, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    out = tmp_path / "heard.wav"
    result = await trio.run_process(
        PY + ["dial", f"ws://127.0.0.1:{server.port}/knowlarity", "--provider", "knowlarity", "--tone", "300", "--dtmf", "5@0.2", "--seconds", "5", "--record", str(out)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "hangup" in text and "start" in text
    summary = json.loads(text.split("--- summary: ", 1)[1].splitlines()[0])
    assert summary["hangups"] == ["hangup"] and summary["heard_seconds"] == pytest.approx(0.5, abs=0.05)
    assert out.stat().st_size > 44 + 2 * 16000 * 0.45


def test_port_in_use_is_a_one_line_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(PY + ["serve", "echo", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0], result.stderr
