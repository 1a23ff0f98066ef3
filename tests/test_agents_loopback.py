"""Every bundled agent, served over real loopback TCP to a simulated provider.

Real clock: bounds are loose (the exact timing is tested on virtual time in tests/agents);
the point here is the whole path: sockets, server, codecs, engine, agent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import trio

from callengine.agents import load
from callengine.audio.generate import tone
from callengine.events import PlayAudio
from callengine.protocols.registry import CODECS
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call

from .call.conftest import speech_8k

#: every provider the engine speaks, legacy Awaaz included, each on its own path
PROVIDERS = list(CODECS)


@pytest.fixture
async def serve_agent(nursery):
    async def start(name: str) -> str:
        server = CallServer(load(name), ServerConfig(port=0, loop_watchdog_s=None))
        await nursery.start(server.serve)
        return f"ws://127.0.0.1:{server.port}"

    return start


async def _wait_for(predicate, timeout=10.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_echo_returns_the_callers_audio(serve_agent, provider):
    base = await serve_agent("echo")
    async with open_dialed_call(f"{base}/{provider}", provider) as sim:
        sim.say(tone(800, 1.0, sim.rate, dbfs=-12))
        await _wait_for(lambda: sim.heard_seconds() >= 1.0)
    heard = sim.heard_audio(sim.rate)
    nz = np.flatnonzero(np.abs(heard) > 200)
    x = heard[nz[0] : nz[-1]].astype(float)
    freq = np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * sim.rate / len(x)
    assert freq == pytest.approx(800, abs=5)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parrot_answers_after_the_caller_stops(serve_agent, provider):
    samples, _ = speech_8k()
    utterance = samples[: int(2.0 * 8000)]
    base = await serve_agent("parrot")
    async with open_dialed_call(f"{base}/{provider}", provider) as sim:
        await trio.sleep(0.5)
        said_at = sim.say(utterance, 8000)
        await _wait_for(lambda: sim.heard_seconds() >= 1.0, timeout=15)
        await trio.sleep(2.5)  # the rest of the answer
    first = sim.heard[0].start
    assert first >= said_at + 1.0  # it waited for the end of the utterance
    assert 1.0 <= sim.heard_seconds() <= 3.5


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_prompt_stops_when_the_caller_talks(serve_agent, provider):
    samples, onset = speech_8k()
    base = await serve_agent("prompt")
    async with open_dialed_call(f"{base}/{provider}", provider) as sim:
        await trio.sleep(1.0)
        said_at = sim.say(samples[: int(1.5 * 8000)], 8000)
        await _wait_for(lambda: sim.clears, timeout=10)
        await trio.sleep(0.3)
    clear_at = sim.clears[0]
    latency = clear_at - (said_at + onset)
    lead = 0.1 if provider == "awaaz" else 0.4
    # min speech 200 ms + lead (what may still be queued), with room for a loaded machine
    assert 0.15 < latency < 0.2 + lead + 0.3, latency
    # nothing new plays until the caller has finished talking
    resumed = [t for t, c in sim.received if t > clear_at + 0.05 and isinstance(c, PlayAudio)]
    assert all(t > said_at + 1.5 for t in resumed)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ivr_key_3_ends_the_call_the_providers_way(serve_agent, provider):
    base = await serve_agent("ivr")
    async with open_dialed_call(f"{base}/{provider}", provider) as sim:
        await trio.sleep(0.5)
        await sim.press("3")  # a DTMF event, or an in-band tone where the provider has none
        await _wait_for(lambda: sim.closed.is_set())
    assert sim.clears  # the key cut the menu short
    if CODECS[provider].capabilities.hangup_message:
        assert [what for _, what in sim.hangups] == ["hangup"]
    else:
        # no hang-up message on the socket (and no REST credentials here): a normal close
        assert sim.hangups == [] and sim.closed_code == 1000


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ivr_key_1_plays_the_message(serve_agent, provider):
    base = await serve_agent("ivr")
    async with open_dialed_call(f"{base}/{provider}", provider) as sim:
        await trio.sleep(0.5)
        await sim.press("1")
        await trio.sleep(1.5)
    # the menu was cut by the key and the message followed at once
    [clear_at] = sim.clears
    assert any(t > clear_at for t, c in sim.received if isinstance(c, PlayAudio))
    assert sim.heard_seconds() > 1.5


@pytest.mark.parametrize("key,expected", [("3", "asr_disconnect=true"), ("2", "asr_disconnect=true,parameter1=default")])
async def test_ivr_on_knowlarity_sends_the_exact_messages(serve_agent, key, expected):
    base = await serve_agent("ivr")
    async with open_dialed_call(f"{base}/knowlarity", "knowlarity") as sim:
        await trio.sleep(0.5)
        await sim.press(key)  # an in-band tone: Knowlarity has no DTMF events
        await _wait_for(lambda: sim.closed.is_set())
    raw = [json.loads(m) for _, m in sim.control_messages if isinstance(m, str) and "textContent" in m]
    assert raw == [
        {"type": "playAudio", "data": {"audioContentType": "wave", "audioContent": "None", "textContent": expected}}
    ]
    assert {"type": "killAudio"} in [json.loads(m) for _, m in sim.control_messages if isinstance(m, str)]
