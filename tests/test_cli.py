"""The command line, through real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.cli import AgentLoadError, load_agent
from callengine.call.config import CallConfig
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call

from .cli_agents import echo

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


# --- new users: the agent from their own directory, its signature, dial, the listening line


AGENT_MODULE = '''
import trio

async def handler(call):
    await trio.sleep_forever()

async def no_args():
    pass

async def two_args(call, extra):
    pass

async def optional_extra(call, extra=1):
    pass

class TwoArgCall:
    async def __call__(self, call, extra):
        pass
'''


def _project(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "agent.py").write_text(AGENT_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env


@pytest.mark.parametrize("command", ["console-script", "run_engine.py"])
async def test_an_agent_in_the_current_directory_is_found(tmp_path, nursery, command):
    from .serve_process import ROOT, start_serve

    env = _project(tmp_path)
    argv = [str(Path(sys.executable).parent / "callengine"), "serve"] if command == "console-script" else [sys.executable, str(ROOT / "scripts" / "run_engine.py")]
    sp = await start_serve(nursery, ["mypkg.agent:handler", "--port", "0", "--drain-grace", "0.2"], argv=argv, cwd=tmp_path, env=env)
    async with open_dialed_call(f"ws://127.0.0.1:{sp.port}/awaaz", "awaaz"):
        await sp.wait_for(rb"call started awaaz:")
    sp.proc.send_signal(signal.SIGTERM)
    assert await sp.wait() == 0, sp.stderr_text


def test_an_agent_with_the_wrong_signature_is_refused_at_load(tmp_path):
    env = _project(tmp_path)
    for attr in ("no_args", "two_args", "TwoArgCall"):
        result = subprocess.run(PY + ["serve", f"mypkg.agent:{attr}", "--port", "0"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert result.returncode == 2, (attr, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "must take exactly one positional argument, the call" in lines[0], (attr, result.stderr)
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_agent("mypkg.agent:optional_extra").__name__ == "optional_extra"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mypkg.agent", None)
        sys.modules.pop("mypkg", None)


def test_lead_below_one_chunk_is_a_one_line_error_and_exit_2():
    for options, provider in [(["--lead-ms", "100"], "knowlarity"), (["--chunk-ms", "200"], "awaaz")]:
        result = subprocess.run(PY + ["serve", "echo", "--port", "0", *options], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is below chunk_ms (200) on {provider}" in lines[0], result.stderr


async def _dial(*args: str) -> subprocess.CompletedProcess:
    return await trio.run_process(PY + ["dial", *args], capture_stdout=True, capture_stderr=True, check=False)


async def test_dial_exits_nonzero_when_the_call_is_closed_with_1011(nursery):
    async def broken(call):
        raise RuntimeError("agent bug")

    server = CallServer(broken, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    result = await _dial(f"ws://127.0.0.1:{server.port}/awaaz", "--provider", "awaaz", "--seconds", "5")
    assert result.returncode == 1, result
    assert "closed with code 1011" in result.stderr.decode()


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity"])
async def test_dial_sends_custom_parameters_and_numbers(nursery, provider):
    seen = []

    async def greeter(call):
        seen.append(call.info)
        await call.hangup()

    server = CallServer(greeter, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    url = f"ws://127.0.0.1:{server.port}/{provider}"
    result = await _dial(url, "--provider", provider, "--seconds", "5", "--param", "campaign=diwali", "--param", "lang=hi=IN", "--caller", "+911111", "--called", "+912222")
    assert result.returncode == 0, result.stderr.decode()
    (info,) = seen
    assert (info.caller, info.called) == ("+911111", "+912222")
    assert info.custom["campaign"] == "diwali" and info.custom["lang"] == "hi=IN"
    bad = await _dial(url, "--provider", provider, "--param", "no-equals-sign")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr.decode()


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("level", ["info", "warning"])
async def test_exactly_one_listening_line(nursery, log_format, level):
    from .serve_process import start_serve

    # at info level the server's log record and the CLI's line were both written; at
    # warning level the line must still be there (it carries the port)
    sp = await start_serve(nursery, ["echo", "--port", "0", "--log-format", log_format, "--log-level", level])
    sp.proc.send_signal(signal.SIGTERM)
    assert await sp.wait() == 0
    listening = [line for line in (sp.stdout_text + sp.stderr_text).splitlines() if "listening" in line]
    assert len(listening) == 1, listening
    assert listening[0] in sp.stdout_text
    if log_format == "json":
        record = json.loads(listening[0])
        assert (record["scheme"], record["host"], record["port"]) == ("ws", "127.0.0.1", sp.port)
        assert record["level"] == "info" and "listening on ws://127.0.0.1:" in record["message"]


async def test_the_demo_says_which_agents_it_runs():
    import io

    from callengine.demo import run_demo

    out = io.StringIO()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_demo(out=out, record_dir="/nonexistent"))
        with trio.fail_after(10):
            while "listening" not in out.getvalue():
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    first = out.getvalue().splitlines()[0]
    assert "Awaaz" in first and "`prompt` agent" in first and "Knowlarity" in first and "`ivr` agent" in first


def test_log_lines_name_their_call_in_both_formats():
    import logging as _logging

    from callengine.call.logcontext import current_call, install_record_factory
    from callengine.cli import _JsonFormatter, _TextFormatter

    install_record_factory()
    token = current_call.set("awaaz:MZ7")
    try:
        record = _logging.getLogger("mypkg.agent").makeRecord("mypkg.agent", _logging.INFO, __file__, 1, "hello %s", ("there",), None)
    finally:
        current_call.reset(token)
    assert "mypkg.agent: [awaaz:MZ7] hello there" in _TextFormatter().format(record)
    assert json.loads(_JsonFormatter().format(record))["call"] == "awaaz:MZ7"
    outside = _logging.getLogger("x").makeRecord("x", _logging.INFO, __file__, 1, "plain", (), None)
    assert "[" not in _TextFormatter().format(outside)


def test_route_and_codec_options_from_the_command_line():
    from callengine.cli import build_parser, server_config_from_args
    from callengine.server import Route

    args = build_parser().parse_args([
        "serve", "echo",
        "--route", "/knowlarity-stream=knowlarity", "--route", "/raw=Awaaz,wav_wrap=off",
        "--codec-option", "knowlarity.kill_audio=off", "--codec-option", "knowlarity.default_rate=8000",
        "--codec-option", "awaaz.mark_echo=no",
    ])  # fmt: skip
    config = server_config_from_args(args)
    assert config.routes == (Route("/knowlarity-stream", "knowlarity"), Route("/raw", "awaaz", {"wav_wrap": False}))
    assert config.codec_options == {"knowlarity": {"kill_audio": False, "default_rate": 8000}, "awaaz": {"mark_echo": False}}
    assert config.options_for("awaaz", config.routes[1]) == {"mark_echo": False, "wav_wrap": False}
    for bad, message in [
        (["--route", "/socket"], "PREFIX=PROVIDER"),
        (["--codec-option", "awaaz"], "PROVIDER.OPTION=VALUE"),
        (["--codec-option", "awaaz.colour=blue"], "awaaz codec options"),
    ]:
        result = subprocess.run(PY + ["serve", "echo", *bad], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, (bad, result.stderr)


def test_inband_dtmf_option():
    from callengine.cli import build_parser, server_config_from_args

    for word, value in (("auto", None), ("on", True), ("off", False)):
        args = build_parser().parse_args(["serve", "echo", "--inband-dtmf", word])
        assert server_config_from_args(args).call.inband_dtmf is value


async def test_legacy_awaaz_through_callengine_serve_and_dial(tmp_path, nursery):
    """An account on Awaaz's older mod_audio_fork-style stream, end to end through the two
    commands a user runs: the echo comes back at the caller's 8 kHz, at the caller's pitch
    (assumed to be 16 kHz it would come back an octave high)."""
    import wave

    from .serve_process import start_serve

    server = await start_serve(nursery, ["echo", "--port", "0", "--agent-rate", "8000"])
    out = tmp_path / "heard.wav"
    url = f"ws://127.0.0.1:{server.port}/awaaz-legacy"
    result = await _dial(url, "--provider", "awaaz-legacy", "--tone", "500", "--tone-seconds", "1.5", "--seconds", "3", "--record", str(out))
    assert result.returncode == 0, result.stderr.decode()
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert rate == 8000
    nz = np.flatnonzero(np.abs(heard) > 200)
    assert len(nz) > 0.8 * 1.5 * rate
    x = heard[nz[0] : nz[-1]].astype(float)
    assert np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x) == pytest.approx(500, abs=5)
    await server.wait_for(b"call started awaaz-legacy:.*wire_rate=8000")
    server.proc.send_signal(signal.SIGTERM)
    assert await server.wait() == 0


async def test_dial_plays_quirks_and_refuses_unknown_ones(nursery):
    """``callengine dial --quirk``: a difficult Awaaz against a real server keeps the call;
    a quirk the provider cannot play is a one-line error, exit 2."""
    server = CallServer(echo, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=8000)))
    await nursery.start(server.serve)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    result = await _dial(url, "--provider", "awaaz", "--tone", "400", "--tone-seconds", "0.5", "--seconds", "2", "--quirk", "bom,binary-json", "--quirk", "media-before-start")
    assert result.returncode == 0, result.stderr.decode()
    with trio.fail_after(10):
        while not server.reports:
            await trio.sleep(0.02)
    (report,) = server.reports
    assert report.end_cause == "provider_stop" and report.stats.unknown_messages >= 1 and report.stats.frames_in > 50
    bad = await _dial(url, "--provider", "awaaz", "--quirk", "joined-texts")
    assert bad.returncode == 2 and "awaaz has no quirk joined-texts" in bad.stderr.decode()
