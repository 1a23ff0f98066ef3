"""Every code block in the README runs here, as a user would run it.

Each fenced block is dispatched by what it is; a block this file does not know fails the
test, so a new README example cannot go untested. The Python blocks are written into a
temporary project directory (``mypkg/agent.py``, ``tests/test_agent.py``, its
``pyproject.toml``) and run there, the shell blocks run from that directory with the real
``callengine`` command, and the install lines are the ones CI runs.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^ *```(\w+)\n(.*?)^ *```", README, re.S | re.M)

DEMO_LINE = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && callengine demo"
TEST_LINE = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest -q"


def _block(first_line: str) -> str:
    found = [body for _, body in BLOCKS if body.lstrip().startswith(first_line)]
    assert len(found) == 1, f"expected one README block starting {first_line!r}, found {len(found)}"
    return found[0]


def _dedent(body: str) -> str:
    lines = body.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines) + "\n"


def _kind(lang: str, body: str) -> str:
    text = body.strip()
    first = text.splitlines()[0]
    if lang == "sh" and text == DEMO_LINE:
        return "demo"
    if lang == "sh" and text == TEST_LINE:
        return "tests"
    if lang == "sh" and first.startswith("callengine serve "):
        return "serve"
    if lang == "sh" and first.startswith("callengine dial "):
        return "dial"
    if lang == "sh" and first.startswith("callengine call "):
        return "outbound-call"
    if lang == "sh" and first.startswith("curl ") and "knowlarity.com" in first:
        return "knowlarity-registration"  # calls Knowlarity's API: cannot run here
    if lang == "python" and first.startswith("# mypkg/agent.py"):
        return "agent"
    if lang == "python" and first.startswith("# tests/test_agent.py"):
        return "agent-tests"
    if lang == "python" and first.startswith("# mypkg/talking.py"):
        return "talking-agent"
    if lang == "python" and first.startswith("# embed.py"):
        return "embed"
    if lang == "toml" and first.startswith("# pyproject.toml"):
        return "pytest-config"
    return "unknown"


def test_every_readme_block_is_one_this_file_runs():
    kinds = [_kind(lang, body) for lang, body in BLOCKS]
    assert "unknown" not in kinds, [body.splitlines()[0] for (lang, body), k in zip(BLOCKS, kinds) if k == "unknown"]
    assert sorted(kinds) == sorted(
        ["demo", "tests", "serve", "dial", "outbound-call", "knowlarity-registration", "agent", "agent-tests", "talking-agent", "embed", "pytest-config"]
    )
    # the one block that cannot run says so in the README
    assert "the one block of this README the test suite cannot run" in README


def test_the_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_LINE in ci.splitlines()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project directory holding the README's agent, tests and pytest config."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "agent.py").write_text(_block("# mypkg/agent.py"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_agent.py").write_text(_block("# tests/test_agent.py"))
    (tmp_path / "pyproject.toml").write_text(_block("# pyproject.toml"))
    return tmp_path


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # only what a user has: the installed package and their cwd
    return env


def test_readme_agent_tests_pass_in_the_users_project(project: Path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, env=_env(project), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_readme_embedding_example_runs(project: Path):
    (project / "embed.py").write_text(_block("# embed.py"))
    result = subprocess.run([sys.executable, "embed.py"], cwd=project, env=_env(project), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"serving on port \d+", result.stdout)


TALKING_RUN = """
import json

import numpy as np
import trio
import trio.testing

from callengine.testing import open_simulated_call
from callengine.testing.fake_openai_realtime import FakeOpenAIRealtime
from mypkg.talking import ShopAgent


async def main():
    fake = FakeOpenAIRealtime()
    fake.queue_function("order_status", json.dumps({"order": "42"}))
    speech = (np.random.default_rng(1).standard_normal(12000) * 3000).astype("int16")  # 1.5 s of "speech"
    async with open_simulated_call(ShopAgent(connect=fake.connect), "knowlarity", wait=False) as sim:
        sim.provider.say(speech, 8000)
        with trio.fail_after(20):
            while not (fake.sessions and fake.session.function_outputs):
                await trio.sleep(0.05)
        await trio.sleep(0.5)
    print("tools", [t["name"] for t in fake.session.config["tools"]])
    print("output", fake.session.function_outputs[0]["output"])
    print("instructions", fake.session.config["instructions"])


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
"""


def test_readme_talking_agent_calls_its_tool_against_the_fake_model(project: Path):
    (project / "mypkg" / "talking.py").write_text(_block("# mypkg/talking.py"))
    (project / "run_talking.py").write_text(TALKING_RUN)
    env = dict(_env(project), OPENAI_API_KEY="test-key")  # the class reads its key from the environment
    result = subprocess.run([sys.executable, "run_talking.py"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tools ['hang_up', 'transfer', 'order_status']" in result.stdout
    assert 'output {"order": "42", "status": "shipped"}' in result.stdout
    assert "instructions You answer questions about orders" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(block: str, port: int) -> list[str]:
    line = _dedent(block).strip().replace("8080", str(port))
    argv = shlex.split(line)
    assert argv[0] == "callengine"
    return [sys.executable, "-m", "callengine", *argv[1:]]


def test_readme_serve_and_dial_from_the_users_project(project: Path):
    port = _free_port()
    serve = subprocess.Popen(_command(_block("callengine serve "), port), cwd=project, env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in serve.stdout:  # type: ignore[union-attr]
            if "listening on" in line:
                break
        assert f":{port}" in line, line + (serve.stderr.read() if serve.poll() is not None else "")  # type: ignore[union-attr]
        dial = subprocess.run(_command(_block("callengine dial "), port), cwd=project, env=_env(project), capture_output=True, text=True, timeout=120)
        assert dial.returncode == 0, dial.stdout + dial.stderr
        assert "--- summary: " in dial.stdout
        assert (project / "heard.wav").stat().st_size > 44
    finally:
        serve.terminate()
        try:
            serve.communicate(timeout=30)  # also closes the pipes
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.communicate()


def test_readme_demo_command_from_any_directory(tmp_path: Path):
    # the install part is what CI does; the demo itself runs here, from a directory that
    # is not the checkout
    result = subprocess.run([sys.executable, "-m", "callengine", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stdout
    assert (tmp_path / "demo-awaaz.wav").exists() and (tmp_path / "demo-knowlarity.wav").exists()


def test_readme_links_point_into_the_repository():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if "://" in target:
            continue
        assert not target.startswith(".."), f"the README links outside the repository: {target}"
        assert (ROOT / target).exists(), f"the README links to a missing file: {target}"


async def test_readme_outbound_call_places_it_through_the_providers_api(tmp_path: Path, nursery):
    """The README's ``callengine call`` line, run as is from a user's directory, with
    Twilio's API played by a local server (``--api-base``) that checks the request."""
    import base64

    import trio

    from .control.httpserver import FakeAPI, Reply

    api = FakeAPI()
    await api.start(nursery)
    sid, token = "AC" + "1" * 32, "readme-token"
    api.route("POST", f"/2010-04-01/Accounts/{sid}/Calls.json", Reply(201, {"sid": "CA-readme-1", "status": "queued"}))
    argv = _command(_block("callengine call "), 0) + ["--api-base", api.base_url]
    env = dict(os.environ, TWILIO_ACCOUNT_SID=sid, TWILIO_AUTH_TOKEN=token)
    result = await trio.run_process(argv, cwd=tmp_path, env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert "CA-readme-1" in result.stdout.decode()
    [request] = api.requests
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
    form = request.form()
    assert (form["To"], form["From"]) == ("+919800000001", "+14155550100")
    assert 'url="wss://bot.example.com/twilio"' in form["Twiml"] and 'name="lead" value="42"' in form["Twiml"]
    assert token not in result.stdout.decode() + result.stderr.decode()
    missing = await trio.run_process(argv, cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}, capture_stdout=True, capture_stderr=True, check=False)
    assert missing.returncode == 2 and "TWILIO_ACCOUNT_SID" in missing.stderr.decode()
