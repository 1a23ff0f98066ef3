"""The Sarvam cascade over real loopback HTTP: the fake Sarvam and chat servers of
:mod:`callengine.testing.fake_sarvam`, the engine serving ``SarvamCascadeAgent``, a
simulated provider dialing it. Real clock: loose bounds; every wait has a deadline."""

from __future__ import annotations

import os

import pytest
import trio

from callengine.bridges.sarvam import SarvamCascadeAgent
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.fake_sarvam import CHAT, FakeVendors

from ..serve_process import PY
from .conftest import utterance, wait_for


@pytest.fixture
def vendor_env(monkeypatch):
    def setenv(fake: FakeVendors) -> None:
        monkeypatch.setenv("SARVAM_API_KEY", fake.api_key)
        monkeypatch.setenv("CALLENGINE_SARVAM_URL", fake.url)
        monkeypatch.setenv("CALLENGINE_CHAT_KEY", fake.chat_key)
        monkeypatch.setenv("CALLENGINE_CHAT_URL", fake.chat_url)
        monkeypatch.setenv("CALLENGINE_CHAT_MODEL", "test-model")

    return setenv


async def test_sarvam_cascade_over_loopback_http(nursery, vendor_env):
    fake = FakeVendors(transcripts=["namaste, what time do you open"], replies=["We open at nine. See you soon!"])
    fake.fail[CHAT] = 1  # the first chat request fails: logged, and the next turn works
    await nursery.start(fake.serve)
    vendor_env(fake)
    fake.transcripts.insert(0, "hello")
    agent = SarvamCascadeAgent()
    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/knowlarity", "knowlarity") as sim:
        sim.say(utterance(), 8000)
        await wait_for(lambda: len(fake.chat) == 0 and len(fake.stt) == 1, timeout=20)
        await trio.sleep(1.5)
        sim.say(utterance(), 8000)
        await wait_for(lambda: len(fake.tts) == 2, timeout=20)
        await wait_for(lambda: sim.heard_seconds() > 1.5, timeout=20)
        await trio.sleep(0.5)
        [session] = agent.calls.values()
        assert not fake.problems, fake.problems
        assert session.errors == {"chat_http_500": 1}
        [chat] = fake.chat
        assert chat["model"] == "test-model" and chat["stream"] is True
        assert chat["messages"][-1] == {"role": "user", "content": "namaste, what time do you open"}
        assert [r["text"] for r in fake.tts] == ["We open at nine.", "See you soon!"]
        assert fake.tts[0]["model"] == "bulbul:v3" and fake.tts[0]["speech_sample_rate"] == 16000
        assert fake.stt[0]["model"] == "saaras:v3" and fake.stt[0]["rate"] == 16000 and fake.stt[0]["samples"] > 16000  # Knowlarity: 16 kHz
        assert session.history[-1] == {"role": "assistant", "content": "We open at nine. See you soon!"}
    assert sim.heard_seconds() == pytest.approx(len("We open at nine.See you soon!") * 0.06, abs=0.25)


async def test_serve_cascade_sarvam_without_a_key_is_a_usage_error():
    env = {k: v for k, v in os.environ.items() if k not in ("SARVAM_API_KEY",)}
    result = await trio.run_process(PY + ["serve", "cascade-sarvam", "--port", "0"], env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 2 and b"SARVAM_API_KEY" in result.stderr


async def test_a_barge_in_closes_the_chat_stream_and_cuts_the_turn_over_loopback(nursery, vendor_env):
    long = "The weather in Pune is sunny today. It will be warm in the afternoon. Carry some water when you go out. Have a lovely day now."
    fake = FakeVendors(transcripts=["weather please", "thanks"], replies=[long, "Welcome."], delta_s=0.25)  # slower than speech
    await nursery.start(fake.serve)
    vendor_env(fake)
    agent = SarvamCascadeAgent()
    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        sim.say(utterance(), 8000)
        await wait_for(lambda: sim.heard_seconds() > 1.0, timeout=20)
        sim.say(utterance(), 8000)  # talks over the reply while it is still being generated
        await wait_for(lambda: len(fake.chat) == 2, timeout=20)
        await wait_for(lambda: fake.chat_cancelled == 1, timeout=10)
        await trio.sleep(1.0)
        [session] = agent.calls.values()
    assert not fake.problems and not session.errors
    first = session.replies[0]
    assert first.cut is not None and first.cut[:-1] in long and len(first.cut) < len(long)
    assert fake.chat[1]["messages"][-2] == {"role": "assistant", "content": first.cut}


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SARVAM_API_KEY", "sk-sarvam")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.delenv("CALLENGINE_CHAT_KEY", raising=False)
    monkeypatch.setenv("CALLENGINE_SARVAM_LANGUAGE", "hi-IN")
    agent = SarvamCascadeAgent()
    assert (agent.sarvam_key, agent.chat_key, agent.language) == ("sk-sarvam", "sk-openai", "hi-IN")
    assert agent.sarvam_url == "https://api.sarvam.ai" and agent.chat_url == "https://api.openai.com/v1"
    monkeypatch.setenv("CALLENGINE_CHAT_URL", "api.example.com/v1")
    with pytest.raises(ValueError, match="CALLENGINE_CHAT_URL"):
        SarvamCascadeAgent()
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        SarvamCascadeAgent()
