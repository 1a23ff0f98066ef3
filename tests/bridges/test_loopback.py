"""The bridges over real loopback sockets: the fake model servers served with
trio-websocket, the engine serving the bundled agents (``callengine serve realtime-openai``
in a subprocess, pointed at the fake by its environment), a simulated provider dialing it.

Real clock: bounds are loose where timing is involved (the exact checks are in memory on
virtual time); every wait has a deadline.
"""

from __future__ import annotations

import os

import pytest
import trio

from callengine.bridges import GeminiLiveAgent
from callengine.server import CallServer, ServerConfig
from callengine.testing._fake_model import model_voice
from callengine.testing.dial import open_dialed_call
from callengine.testing.fake_gemini_live import FakeGeminiLive
from callengine.testing.fake_openai_realtime import FakeOpenAIRealtime

from ..serve_process import PY, start_serve
from .conftest import KeepingGemini, utterance, wait_for


async def test_serve_realtime_openai_end_to_end(nursery):
    fake = FakeOpenAIRealtime(reply_audio=model_voice(4.0))
    await nursery.start(fake.serve)
    env = dict(os.environ, OPENAI_API_KEY=fake.api_key, CALLENGINE_OPENAI_URL=fake.url, CALLENGINE_OPENAI_MODEL="gpt-realtime-test")
    sp = await start_serve(nursery, ["realtime-openai", "--port", "0"], env=env)
    url = f"ws://127.0.0.1:{sp.port}/knowlarity"
    async with open_dialed_call(url, "knowlarity") as sim:
        sim.say(utterance(), 8000)
        await wait_for(lambda: sim.heard_seconds() > 1.0, timeout=20)  # the answer plays
        sim.say(utterance(), 8000)  # the caller talks over it
        await wait_for(lambda: fake.sessions and fake.session.truncations, timeout=20)
        fake.queue_function("hang_up")  # the next answer says goodbye and hangs up
        with trio.fail_after(30):
            await sim.closed.wait()
    session = fake.session
    assert session.model == "gpt-realtime-test" and "openai-beta" not in session.headers
    assert session.headers["authorization"] == f"Bearer {fake.api_key}"
    assert not session.errors_sent, session.protocol_errors
    [truncation] = session.truncations
    assert truncation.item_id == session.responses[0].item_id
    first = sim.heard[0]
    assert abs(truncation.audio_end_ms - 1000 * first.duration) <= 100  # real clocks, two processes
    assert 200 < truncation.audio_end_ms < 3000
    assert [w for _, w in sim.hangups] == ["hangup"]
    assert sim.heard[-1].duration == pytest.approx(4.0, abs=0.05)  # the goodbye played in full
    summary = await sp.wait_for(rb'"end_cause": "hangup"', "stderr")
    assert summary


async def test_serve_realtime_openai_without_a_key_is_a_usage_error():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = await trio.run_process(PY + ["serve", "realtime-openai", "--port", "0"], env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 2 and b"OPENAI_API_KEY" in result.stderr


@pytest.fixture
async def gemini(nursery):
    fake = FakeGeminiLive(reply_audio=model_voice(2.0))
    await nursery.start(fake.serve)
    return fake


async def test_gemini_over_real_sockets(nursery, gemini):
    agent = KeepingGemini(api_key=gemini.api_key, url=gemini.url)
    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    gemini.queue_function("hang_up")
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        sim.say(utterance(), 8000)
        with trio.fail_after(30):
            await sim.closed.wait()
    session = gemini.session
    assert session.close_code is None and not session.protocol_errors
    assert session.headers["x-goog-api-key"] == gemini.api_key and "key=" not in session.target
    assert len(session.audio) / 2 / 16000 > 2.0  # the caller's audio, at 16 kHz
    assert sim.heard_seconds() == pytest.approx(2.0, abs=0.05)  # the goodbye (binary frames), then the hang-up
    assert sim.closed_code == 1000


async def test_a_wrong_key_is_refused_and_ends_the_call(nursery, gemini, caplog):
    server = CallServer(GeminiLiveAgent(api_key="wrong", url=gemini.url), ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        with trio.fail_after(15):
            await sim.closed.wait()
    assert gemini.rejected == [(401, "API key not valid")] and not gemini.sessions
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)
    assert sim.closed_code == 1000


async def test_an_unreachable_model_ends_the_call(nursery, caplog):
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = GeminiLiveAgent(api_key="k", url=f"ws://127.0.0.1:{port}/ws", connect_timeout=2.0)
    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/knowlarity", "knowlarity") as sim:
        with trio.fail_after(15):
            await sim.closed.wait()
    assert any("cannot connect to the model" in r.getMessage() for r in caplog.records)
