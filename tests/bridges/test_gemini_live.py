"""The Gemini Live bridge through a simulated provider, with the fake Live server over its
in-memory connection, on virtual time."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.bridges import GeminiLiveAgent
from callengine.testing import open_simulated_call
from callengine.testing._fake_model import model_voice
from callengine.testing.fake_gemini_live import FakeGeminiLive, LiveSession

from .conftest import PROVIDERS, KeepingGemini, peak_hz, utterance, wait_for


def bridge(fake: FakeGeminiLive, **kwargs) -> KeepingGemini:
    return KeepingGemini(api_key=fake.api_key, connect=fake.connect, **kwargs)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_caller_speech_reaches_the_model_as_pcm16_at_16k(autojump_clock, provider):
    fake = FakeGeminiLive()
    async with open_simulated_call(bridge(fake), provider, wait=False) as sim:
        await trio.sleep(0.5)
        sim.provider.say(tone(440, 1.0, sim.provider.rate, dbfs=-12))
        await trio.sleep(2.0)
        elapsed = sim.provider.now()
    session = fake.session
    assert session.close_code is None and not session.protocol_errors
    setup = session.setup
    assert setup is not None and setup["model"].startswith("models/")
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert [d["name"] for d in setup["tools"][0]["functionDeclarations"]] == ["hang_up", "transfer"]
    audio = session.audio_samples()
    assert len(audio) / 16000 == pytest.approx(elapsed, abs=0.05)
    loud = np.flatnonzero(np.abs(audio) > 1000)
    assert (loud[-1] - loud[0]) / 16000 == pytest.approx(1.0, abs=0.03)
    assert peak_hz(audio[loud[0] : loud[-1]], 16000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_models_turn_reaches_the_caller(autojump_clock, provider):
    fake = FakeGeminiLive(reply_audio=tone(600, 2.0, 24000, dbfs=-12))
    async with open_simulated_call(bridge(fake), provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.turns)
        await trio.sleep(3.0)
    assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)
    heard = sim.provider.heard_audio(sim.provider.rate)
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert peak_hz(heard[loud[0] : loud[-1]], sim.provider.rate) == pytest.approx(600, abs=3)
    assert sim.provider.gaps() == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("who", ["model", "engine"])
async def test_barge_in_records_what_the_caller_heard_of_the_turn(autojump_clock, provider, who):
    fake = FakeGeminiLive(reply_audio=model_voice(4.0), delta_interval_s=0.09, speech_start_ms=100 if who == "model" else 400)
    agent = bridge(fake)
    async with open_simulated_call(agent, provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 1.0)
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: agent.interruptions)
        cut_at = sim.provider.now()
        await trio.sleep(1.0)
        heard_then = [s for s in sim.provider.heard if s.start < cut_at]
    [heard] = agent.interruptions
    assert heard.item_id == "turn-1" and heard.source == ("model" if who == "model" else "barge-in")
    [session] = agent.sessions
    assert session.heard == [heard]
    first = fake.session.turns[0]
    assert first.interrupted  # the server's VAD cut its turn too (later, on the engine's path)
    chunk_ms = sim.session.caps.chunk_ms
    assert abs(heard.played_ms - 1000 * sum(s.duration for s in heard_then)) <= chunk_ms
    assert heard.played_ms < heard.generated_ms <= 4000
    # the rest of the interrupted turn did not play: the next thing heard is the next turn
    later = [s for s in sim.provider.heard if s.start >= cut_at]
    assert all(s.start > cut_at + 0.4 for s in later)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hang_up_tool_ends_the_call_after_the_goodbye(autojump_clock, provider):
    fake = FakeGeminiLive()
    fake.queue_function("hang_up")
    async with open_simulated_call(bridge(fake), provider) as sim:
        sim.provider.say(utterance(), 8000)
    assert sim.report.end_cause == "hangup"
    assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)


async def test_transfer_tool_on_knowlarity_and_its_refusal_on_awaaz(autojump_clock):
    fake = FakeGeminiLive()
    fake.queue_function("transfer", {"target": "sales"})
    async with open_simulated_call(bridge(fake), "knowlarity") as sim:
        sim.provider.say(utterance(), 8000)
    assert sim.report.end_cause == "transfer" and [w for _, w in sim.provider.hangups] == ["transfer:sales"]

    fake = FakeGeminiLive()
    fake.queue_function("transfer", {"target": "sales"})
    async with open_simulated_call(bridge(fake), "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.tool_responses)
        await trio.sleep(0.5)
    [response] = fake.session.tool_responses
    assert response["name"] == "transfer" and response["id"] == fake.session.turns[0].function[1]
    assert response["response"]["ok"] is False and "cannot transfer" in response["response"]["error"]
    assert len(fake.session.turns) == 2  # the model went on after the failure


async def test_a_closed_model_session_ends_the_call_with_its_cause(autojump_clock, caplog):
    fake = FakeGeminiLive()
    caplog.set_level(logging.INFO, "callengine.bridges")
    async with open_simulated_call(bridge(fake), "awaaz") as sim:
        await wait_for(lambda: fake.sessions and fake.session.setup is not None)
        await fake.session.close(1011, "Internal error occurred.")
        with trio.fail_after(5):
            await sim.finished.wait()
    assert sim.report.end_cause == "agent_returned"
    assert any("code=1011" in r.getMessage() and "Internal error" in r.getMessage() for r in caplog.records)


async def test_no_setup_complete_ends_the_call(autojump_clock, caplog):
    class MuteSession(LiveSession):
        async def on_setup(self, setup):
            self.setup = setup  # and never answers

    class Mute(FakeGeminiLive):
        session_class = MuteSession

    fake = Mute()
    caplog.set_level(logging.INFO, "callengine.bridges")
    agent = bridge(fake)
    agent.setup_timeout_s = 2.0
    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert sim.report.end_cause == "agent_returned" and fake.session.audio == b""  # no audio before setupComplete
    assert any("no setupComplete within 2 s" in r.getMessage() for r in caplog.records)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "g-env")
    monkeypatch.setenv("CALLENGINE_GEMINI_MODEL", "gemini-live-test")
    monkeypatch.setenv("CALLENGINE_GEMINI_TOOLS", "none")
    agent = GeminiLiveAgent()
    url, headers = agent.connection()
    assert url.endswith("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")
    assert headers == [("x-goog-api-key", "g-env")] and "g-env" not in url
    setup = agent.setup_message(None)  # type: ignore[arg-type]
    assert setup["model"] == "models/gemini-live-test" and "tools" not in setup
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(ValueError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        GeminiLiveAgent()
