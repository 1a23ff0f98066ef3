"""The OpenAI Realtime bridge through a simulated provider, with the fake Realtime server
over its in-memory connection, on virtual time (every timing exact, deterministic)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.bridges import OpenAIRealtimeAgent, Tool
from callengine.protocols.registry import CODECS
from callengine.testing import open_simulated_call
from callengine.testing._fake_model import model_voice
from callengine.testing.fake_openai_realtime import FakeOpenAIRealtime

from .conftest import PROVIDERS, KeepingOpenAI, peak_hz, utterance, wait_for


def bridge(fake: FakeOpenAIRealtime, cls=KeepingOpenAI, **kwargs):
    return cls(api_key=fake.api_key, connect=fake.connect, **kwargs)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_caller_speech_reaches_the_model_as_pcm16_at_24k(autojump_clock, provider):
    fake = FakeOpenAIRealtime()
    async with open_simulated_call(bridge(fake), provider, wait=False) as sim:
        await trio.sleep(0.5)
        sim.provider.say(tone(440, 1.0, sim.provider.rate, dbfs=-12))
        await trio.sleep(2.0)
        elapsed = sim.provider.now()
    session = fake.session
    assert session.received[0]["type"] == "session.update" and not session.protocol_errors
    fmt = session.config["audio"]["input"]["format"]
    assert fmt == {"type": "audio/pcm", "rate": 24000}
    audio = session.audio_samples()
    # a continuous stream, at 24 kHz: as long as the call (less the resampler's few ms)
    assert len(audio) / 24000 == pytest.approx(elapsed, abs=0.05)
    loud = np.flatnonzero(np.abs(audio) > 1000)
    assert (loud[-1] - loud[0]) / 24000 == pytest.approx(1.0, abs=0.03)
    assert peak_hz(audio[loud[0] : loud[-1]], 24000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_models_answer_reaches_the_caller(autojump_clock, provider):
    fake = FakeOpenAIRealtime(reply_audio=tone(600, 2.0, 24000, dbfs=-12))
    async with open_simulated_call(bridge(fake), provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and len(fake.session.responses) == 1)
        await trio.sleep(3.0)
    assert fake.session.responses[0].status == "completed"
    assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)  # padded to a frame at most
    heard = sim.provider.heard_audio(sim.provider.rate)
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert peak_hz(heard[loud[0] : loud[-1]], sim.provider.rate) == pytest.approx(600, abs=3)
    assert sim.provider.gaps() == []  # one streaming playback, no underrun


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("who", ["model", "engine"])
async def test_barge_in_truncates_the_item_at_what_the_caller_heard(autojump_clock, provider, who):
    # "model": the fake's VAD fires after 100 ms of speech, before the engine's 200 ms;
    # "engine": it needs 400 ms, so the engine's barge-in comes first
    fake = FakeOpenAIRealtime(reply_audio=model_voice(4.0), speech_start_ms=100 if who == "model" else 400)
    agent = bridge(fake)
    async with open_simulated_call(agent, provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 1.0)  # the answer plays
        sim.provider.say(utterance(), 8000)  # the caller talks over it
        await wait_for(lambda: fake.sessions and fake.session.truncations)
        await trio.sleep(1.0)
    [truncation] = fake.session.truncations
    [heard] = agent.interruptions
    assert heard.source == ("model" if who == "model" else "barge-in")
    assert sim.report.stats.barge_ins == (1 if who == "engine" else 0)
    item_id = fake.session.responses[0].item_id
    assert (truncation.item_id, truncation.content_index) == (item_id, 0)
    # what was truncated is what the engine's playback says was played...
    assert truncation.audio_end_ms == int(heard.played_ms)
    # ...which is what the simulated caller heard of that item, within one chunk
    [first, *_] = sim.provider.heard
    chunk_ms = sim.session.caps.chunk_ms
    assert abs(truncation.audio_end_ms - 1000 * first.duration) <= chunk_ms
    # not what the model generated (it sent all 4 s long before)
    assert heard.generated_ms == 4000 and truncation.audio_end_ms < 2000
    assert not fake.session.errors_sent


async def test_a_barge_in_cancels_a_response_still_being_generated(autojump_clock):
    # the fake generates only a little faster than real time: the response is still going
    fake = FakeOpenAIRealtime(reply_audio=model_voice(4.0), delta_interval_s=0.09, speech_start_ms=400)
    agent = bridge(fake)
    async with open_simulated_call(agent, "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 1.0)
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.truncations)
        cut_at = sim.provider.now()
        await trio.sleep(1.0)
        heard_then = [s for s in sim.provider.heard if s.start < cut_at]
    cancels = [e for e in fake.session.received if e["type"] == "response.cancel"]
    first = fake.session.responses[0]
    assert cancels == [{"type": "response.cancel", "response_id": first.id}]
    assert first.status == "cancelled" and first.samples < 4 * 24000
    assert not fake.session.errors_sent
    # nothing of the cancelled response played after the cut
    assert sum(s.duration for s in heard_then) * 1000 == pytest.approx(fake.session.truncations[0].audio_end_ms, abs=20)


async def test_the_beta_audio_event_names_play_too(autojump_clock):
    fake = FakeOpenAIRealtime(event_names=("response.audio.delta", "response.audio.done"))
    async with open_simulated_call(bridge(fake), "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.responses and fake.session.responses[0].status == "completed")
        await trio.sleep(2.5)
    assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hang_up_tool_ends_the_call_after_the_goodbye(autojump_clock, provider):
    fake = FakeOpenAIRealtime()
    fake.queue_function("hang_up")  # the answer says goodbye, then calls hang_up
    async with open_simulated_call(bridge(fake), provider) as sim:
        sim.provider.say(utterance(), 8000)
    assert sim.report.end_cause == "hangup"
    assert sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)  # the goodbye, all of it
    if provider == "knowlarity":  # its hang-up message, once the goodbye has played
        [(at, what)] = sim.provider.hangups
        assert what == "hangup" and at >= sim.provider.heard[-1].end - 1e-6
    else:  # Awaaz hangs up with a normal close
        assert sim.provider.closed_code == 1000


async def test_transfer_tool_transfers_on_knowlarity(autojump_clock):
    fake = FakeOpenAIRealtime()
    fake.queue_function("transfer", json.dumps({"target": "sales"}))
    async with open_simulated_call(bridge(fake), "knowlarity") as sim:
        sim.provider.say(utterance(), 8000)
    assert sim.report.end_cause == "transfer"
    assert [what for _, what in sim.provider.hangups] == ["transfer:sales"]


async def test_transfer_the_provider_cannot_do_goes_back_to_the_model(autojump_clock):
    fake = FakeOpenAIRealtime()
    fake.queue_function("transfer", json.dumps({"target": "sales"}))
    async with open_simulated_call(bridge(fake), "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and len(fake.session.responses) == 2)  # the answer to the failure
        await trio.sleep(5.0)
    [output] = fake.session.function_outputs
    result = json.loads(output["output"])
    assert result["ok"] is False and "cannot transfer" in result["error"]
    kinds = [e["type"] for e in fake.session.received]
    assert kinds[kinds.index("conversation.item.create") + 1] == "response.create"
    assert sim.report.end_cause != "transfer" and sim.provider.heard_seconds() == pytest.approx(4.0, abs=0.05)


class Shop(KeepingOpenAI):
    extra_tools = (Tool("order_status", "Look up an order", {"type": "object", "properties": {"order": {"type": "string"}}}),)

    async def on_tool_call(self, call, name, args):
        if name == "order_status":
            return {"order": args["order"], "status": "shipped"}
        return await super().on_tool_call(call, name, args)


async def test_a_subclass_adds_a_tool(autojump_clock):
    fake = FakeOpenAIRealtime()
    fake.queue_function("order_status", json.dumps({"order": "42"}))
    async with open_simulated_call(bridge(fake, Shop), "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.function_outputs)
        await trio.sleep(0.5)
    names = [t["name"] for t in fake.session.config["tools"]]
    assert names == ["hang_up", "transfer", "order_status"]
    [output] = fake.session.function_outputs
    assert json.loads(output["output"]) == {"order": "42", "status": "shipped"}


async def test_model_errors_are_logged_once_counted_and_the_call_goes_on(autojump_clock, caplog):
    fake = FakeOpenAIRealtime()
    agent = bridge(fake)
    caplog.set_level(logging.INFO, "callengine.bridges")
    async with open_simulated_call(agent, "awaaz", wait=False) as sim:
        await wait_for(lambda: fake.sessions)
        for _ in range(3):
            await fake.session.error("rate_limit_exceeded", "slow down")
        await fake.session.transport.send_message("not json")
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() >= 2.0)
    [session] = agent.sessions
    assert session.errors == {"rate_limit_exceeded": 3, "bad_json": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "rate_limit_exceeded" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_dropped_model_socket_ends_the_call(autojump_clock, caplog):
    fake = FakeOpenAIRealtime()
    caplog.set_level(logging.INFO, "callengine.bridges")
    async with open_simulated_call(bridge(fake), "knowlarity") as sim:
        await wait_for(lambda: fake.sessions)
        await trio.sleep(1.0)
        fake.session.transport.abort()
        with trio.fail_after(5):
            await sim.finished.wait()
    assert sim.report.end_cause == "agent_returned"
    assert any("model connection ended: the model closed the connection" in r.getMessage() for r in caplog.records)


async def test_a_refused_model_connection_ends_the_call(autojump_clock, caplog):
    fake = FakeOpenAIRealtime()
    agent = OpenAIRealtimeAgent(api_key="wrong", connect=fake.connect)
    async with open_simulated_call(agent, "awaaz") as sim:
        pass
    assert sim.report.end_cause == "agent_returned" and fake.rejected == [(401, "Incorrect API key provided")]
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)


async def test_the_end_of_the_call_closes_the_model_socket(autojump_clock):
    fake = FakeOpenAIRealtime()
    async with open_simulated_call(bridge(fake), "awaaz") as sim:
        await wait_for(lambda: fake.sessions)
        await trio.sleep(0.5)
        await sim.provider.stop()
    with trio.fail_after(1):
        await fake.session.closed.wait()
    assert sim.report.end_cause == "provider_stop"


async def test_a_greeting_makes_the_bot_speak_first(autojump_clock):
    fake = FakeOpenAIRealtime()
    async with open_simulated_call(bridge(fake, greeting="Greet the caller."), "awaaz", wait=False) as sim:
        await trio.sleep(3.0)
    create = [e for e in fake.session.received if e["type"] == "response.create"]
    assert create == [{"type": "response.create", "response": {"instructions": "Greet the caller."}}]
    assert sim.provider.heard[0].start < 0.1 and sim.provider.heard_seconds() == pytest.approx(2.0, abs=0.021)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("CALLENGINE_OPENAI_URL", "ws://127.0.0.1:9/v1/realtime")
    monkeypatch.setenv("CALLENGINE_OPENAI_MODEL", "gpt-realtime-mini")
    monkeypatch.setenv("CALLENGINE_OPENAI_VOICE", "cedar")
    monkeypatch.setenv("CALLENGINE_OPENAI_TOOLS", "hang_up")
    agent = OpenAIRealtimeAgent()
    url, headers = agent.connection()
    assert url == "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-mini"
    assert headers == [("Authorization", "Bearer sk-env")]  # GA: no OpenAI-Beta header
    assert [t.name for t in agent.tools] == ["hang_up"] and agent.voice == "cedar"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIRealtimeAgent()


@pytest.mark.parametrize("provider", [p for p in CODECS if p not in PROVIDERS])
async def test_every_other_provider_truncates_at_what_was_heard(autojump_clock, provider):
    fake = FakeOpenAIRealtime(reply_audio=model_voice(4.0), speech_start_ms=400)
    agent = bridge(fake)
    async with open_simulated_call(agent, provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 1.0)
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: fake.sessions and fake.session.truncations)
        await trio.sleep(0.5)
    [truncation] = fake.session.truncations
    [heard] = agent.interruptions
    assert truncation.audio_end_ms == int(heard.played_ms)
    assert abs(truncation.audio_end_ms - 1000 * sim.provider.heard[0].duration) <= sim.session.caps.chunk_ms
    assert not fake.session.errors_sent
