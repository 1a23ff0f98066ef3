"""Real loopback tests: the server and simulated providers over TCP, on the real clock.

Timing assertions here are loose on purpose (the machine's speed varies); exact timing is
tested on virtual time in tests/call.
"""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
import pytest
import trio
from trio_websocket import open_websocket_url

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import DialError, open_dialed_call
from .cli_agents import echo


async def hold(call):
    await trio.sleep_forever()


@pytest.fixture
async def server_factory(nursery):
    async def start(agent, **options):
        options.setdefault("port", 0)
        options.setdefault("loop_watchdog_s", None)
        server = CallServer(agent, ServerConfig(**options))
        await nursery.start(server.serve)
        return server

    return start


def _dominant_freq(x: np.ndarray, rate: int) -> float:
    x = x.astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("provider", ["awaaz", "knowlarity"])
async def test_echo_over_loopback(server_factory, provider):
    server = await server_factory(echo)
    rate = 8000 if provider == "awaaz" else 16000
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/{provider}", provider) as sim:
        sim.say(tone(700, 1.0, rate, dbfs=-12))
        with trio.fail_after(10):
            while sim.heard_seconds() < 1.0:
                await trio.sleep(0.05)
    heard = sim.heard_audio(rate)
    nz = np.flatnonzero(np.abs(heard) > 100)
    assert len(nz) > 0.8 * rate
    assert _dominant_freq(heard[nz[0] : nz[-1]], rate) == pytest.approx(700, abs=5)
    with trio.fail_after(5):
        while server.counters["calls_ended"] < 1:
            await trio.sleep(0.01)
    assert server.end_causes == {"provider_stop": 1}


async def test_provider_detected_from_the_first_message(server_factory):
    server = await server_factory(echo)
    for provider in ("awaaz", "knowlarity"):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}/", provider) as sim:
            sim.say(tone(500, 0.3, sim.rate))
            with trio.fail_after(10):
                while sim.heard_seconds() < 0.2:
                    await trio.sleep(0.02)
    assert server.counters["calls"] == 2


async def test_unknown_path_gets_404_and_server_keeps_serving(server_factory):
    server = await server_factory(echo)
    with pytest.raises(DialError, match="404"):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}/nope/here", "awaaz"):
            pass
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz"):
        pass
    assert server.rejections == {"404": 1}


async def test_token_in_path_query_or_header(server_factory):
    server = await server_factory(echo, token="s3cret")
    base = f"ws://127.0.0.1:{server.port}"
    for url, headers in [
        (f"{base}/s3cret/awaaz", None),
        (f"{base}/awaaz?token=s3cret", None),
        (f"{base}/awaaz", [(b"authorization", b"Bearer s3cret")]),
    ]:
        async with open_dialed_call(url, "awaaz", extra_headers=headers):
            pass
    with pytest.raises(DialError, match="401"):
        async with open_dialed_call(f"{base}/awaaz", "awaaz"):
            pass
    with pytest.raises(DialError, match="403"):
        async with open_dialed_call(f"{base}/awaaz?token=wrong", "awaaz"):
            pass
    assert server.counters["calls"] == 3
    assert server.rejections == {"401": 1, "403": 1}


async def test_call_limit_answers_503(server_factory):
    server = await server_factory(hold, max_calls=2)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    async with open_dialed_call(url, "awaaz"), open_dialed_call(url, "awaaz"):
        with pytest.raises(DialError, match="503"):
            async with open_dialed_call(url, "awaaz"):
                pass
    async with open_dialed_call(url, "awaaz"):
        pass
    assert server.rejections == {"503": 1}


async def test_knowlarity_subprotocol_is_accepted(server_factory):
    server = await server_factory(echo)
    async with open_websocket_url(
        f"ws://127.0.0.1:{server.port}/vaani/knowlarity/setup-call-streams", subprotocols=["audio.drachtio.org"]
    ) as ws:
        assert ws.subprotocol == "audio.drachtio.org"
        await ws.send_message(json.dumps({"uuid": "abc", "sample_rate": 16000, "from": "1", "to": "2"}))


async def test_oversized_message_closes_only_that_call(server_factory):
    server = await server_factory(echo, max_message_size=4096)
    url = f"ws://127.0.0.1:{server.port}/knowlarity"
    async with open_dialed_call(url, "knowlarity") as good:
        async with open_dialed_call(url, "knowlarity") as bad:
            await bad.transport.send_message(b"\0" * 10000)
            with trio.fail_after(5):
                await bad.closed.wait()
        assert bad.closed_code == 1009
        good.say(tone(440, 0.3, 16000))
        with trio.fail_after(10):
            while good.heard_seconds() < 0.25:
                await trio.sleep(0.02)
    with trio.fail_after(5):
        while server.counters["calls_ended"] < 2:
            await trio.sleep(0.02)
    assert server.end_causes == {"message_too_big": 1, "provider_stop": 1}


async def test_twenty_calls_one_bad_agent_one_dropped_socket(server_factory):
    async def agent(call):
        if call.info.custom.get("bad"):
            raise RuntimeError("bad agent")
        await echo(call)

    from callengine.testing.provider import default_start

    server = await server_factory(agent)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    results = {}

    async def one(i):
        start = default_start("awaaz", call_id=f"c{i}", **({"bad": "1"} if i == 0 else {}))
        async with open_dialed_call(url, "awaaz", start=start) as sim:
            sim.say(tone(400 + 10 * i, 1.0, 8000))
            if i == 1:
                await trio.sleep(0.3)
                await sim.drop()
                results[i] = "dropped"
                return
            with trio.fail_after(15):
                while sim.heard_seconds() < 0.9 and not sim.closed.is_set():
                    await trio.sleep(0.05)
            results[i] = sim.heard_seconds()

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    ok = [i for i in range(2, 20) if results[i] >= 0.9]
    assert ok == list(range(2, 20))
    with trio.fail_after(5):
        while server.counters["calls_ended"] < 20:
            await trio.sleep(0.02)
    assert server.end_causes.get("agent_error") == 1
    assert server.end_causes.get("disconnected") == 1
    assert server.end_causes.get("provider_stop") == 18
    # and it still accepts calls
    async with open_dialed_call(url, "awaaz"):
        pass


async def test_drain_lets_live_calls_finish_then_ends_the_rest(nursery):
    server = CallServer(hold, ServerConfig(port=0, loop_watchdog_s=None))
    await nursery.start(server.serve)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    async with open_dialed_call(url, "awaaz") as sim:
        await trio.sleep(0.1)
        with trio.fail_after(10):
            await server.drain(grace_s=0.3)
        await sim.closed.wait()
    assert sim.closed_code == 1001
    assert server.end_causes == {"shutdown": 1}
    with pytest.raises(DialError):
        async with open_dialed_call(url, "awaaz", connect_timeout=2):
            pass


async def test_call_summary_is_one_json_line(server_factory, caplog):
    caplog.set_level(logging.INFO, logger="callengine.calls")
    server = await server_factory(echo)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        sim.say(tone(440, 0.2, 8000))
        await trio.sleep(0.4)
    with trio.fail_after(5):
        while not [r for r in caplog.records if r.name == "callengine.calls"]:
            await trio.sleep(0.01)
    (record,) = [r for r in caplog.records if r.name == "callengine.calls"]
    summary = json.loads(record.getMessage())
    for key in ("call_id", "provider", "caller", "duration_s", "frames_in", "frames_out", "frames_dropped", "underruns", "barge_ins", "end_cause", "close_code", "teardown_s"):
        assert key in summary
    assert summary["provider"] == "awaaz" and summary["end_cause"] == "provider_stop"


async def test_blocking_agent_is_detected_by_the_loop_watchdog(nursery, caplog):
    import time as _time

    async def blocking(call):
        _time.sleep(0.6)  # never awaits: Trio cannot cancel this; the watchdog names it
        await trio.sleep_forever()

    server = CallServer(blocking, ServerConfig(port=0, loop_watchdog_s=0.2))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz"):
        await trio.sleep(1.0)
    assert server.counters.get("loop_stalls", 0) >= 1
    assert "event loop blocked" in caplog.text and "in blocking" in caplog.text


async def test_an_agent_that_refuses_to_exit_frees_its_slot_and_logs_its_summary(nursery, caplog):
    caplog.set_level(logging.INFO, logger="callengine.calls")
    released = trio.Event()

    async def stubborn(call):
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await released.wait()

    server = CallServer(stubborn, ServerConfig(port=0, loop_watchdog_s=None, max_calls=1, call=CallConfig(cleanup_grace_s=0.2)))
    await nursery.start(server.serve)
    url = f"ws://127.0.0.1:{server.port}/awaaz"
    async with open_dialed_call(url, "awaaz"):
        await trio.sleep(0.2)
    with trio.fail_after(5):
        while server.active_calls:
            await trio.sleep(0.02)
    assert server.end_causes == {"provider_stop": 1}
    async with open_dialed_call(url, "awaaz"):  # the one slot is free again
        await trio.sleep(0.1)
    released.set()


def test_lead_ms_below_chunk_ms_is_rejected_at_config_time():
    # Knowlarity's clips are 200 ms: a 100 ms lead could never send one (a silent call)
    with pytest.raises(ValueError, match=r"lead_ms \(100\) is below chunk_ms \(200\) on knowlarity"):
        ServerConfig(call=CallConfig(lead_ms=100))
    # Awaaz's default lead is 100 ms: a 200 ms chunk would not fit it
    with pytest.raises(ValueError, match=r"lead_ms \(100\) is below chunk_ms \(200\) on awaaz"):
        ServerConfig(call=CallConfig(chunk_ms=200))
    # only the forced provider's pacing matters
    assert ServerConfig(provider="awaaz", call=CallConfig(lead_ms=100)).call.lead_ms == 100
    with pytest.raises(ValueError, match="on knowlarity"):
        ServerConfig(provider="knowlarity", call=CallConfig(lead_ms=100))


async def test_the_loop_watchdog_names_the_call_whose_agent_blocks(nursery, caplog):
    import time as _time

    async def blocking(call):
        _time.sleep(1.5)  # never awaits: the loop is blocked for 1.5 s
        await trio.sleep_forever()

    async def agent(call):
        # the session's agent-runner frame carries this local; stand in for it here, so
        # that the test does not depend on which frame of the session holds it
        _callengine_call_label = f"{call.info.provider}:{call.info.call_id}"  # noqa: F841
        await blocking(call)

    from callengine.testing.provider import default_start

    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=0.5))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz", start=default_start("awaaz", call_id="MZ123")):
        with trio.fail_after(20):
            while not server.counters.get("loop_stalls"):
                await trio.sleep(0.1)
    (line,) = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert "in call awaaz:MZ123" in line and "in blocking" in line


async def test_the_module_docstring_example_works(nursery):
    import functools

    import callengine.server
    from callengine.server import serve

    assert "nursery.start(functools.partial(serve, agent, port=0))" in callengine.server.__doc__
    port = await nursery.start(functools.partial(serve, echo, port=0, loop_watchdog_s=None))
    async with open_dialed_call(f"ws://127.0.0.1:{port}/awaaz", "awaaz") as sim:
        sim.say(tone(440, 0.3, 8000))
        with trio.fail_after(10):
            while sim.heard_seconds() < 0.2:
                await trio.sleep(0.02)


async def test_routes_map_path_prefixes_to_providers(server_factory):
    """Users register URLs such as /knowlarity-stream/<id> or /socket (404 before)."""
    server = await server_factory(echo, routes=(("/knowlarity-stream", "knowlarity"), ("/socket", "awaaz")))
    for path, provider in (("/knowlarity-stream/abc123", "knowlarity"), ("/socket", "awaaz")):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}{path}", provider) as sim:
            sim.say(tone(500, 0.3, sim.rate))
            with trio.fail_after(10):
                while sim.heard_seconds() < 0.2:
                    await trio.sleep(0.02)
    with trio.fail_after(10):
        while server.counters["calls_ended"] < 2:
            await trio.sleep(0.01)
    assert server.counters["calls"] == 2 and server.end_causes == {"provider_stop": 2}
    with pytest.raises(DialError, match="404"):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}/knowlarity-streams", "knowlarity"):
            pass  # a prefix matches whole segments only


def test_route_config_is_checked():
    from callengine.routing import routed
    from callengine.server import Route

    with pytest.raises(ValueError, match="unknown provider"):
        ServerConfig(routes=(("/x", "nosuch"),))
    with pytest.raises(ValueError, match="must be a path"):
        ServerConfig(routes=(("x", "awaaz"),))
    with pytest.raises(ValueError, match="awaaz codec options"):
        ServerConfig(codec_options={"awaaz": {"no_such_option": 1}})
    with pytest.raises(ValueError, match="knowlarity codec options"):
        ServerConfig(routes=(("/k", "knowlarity", {"default_rate": 5}),))
    routes = (Route("/a", "awaaz"), Route("/a/k", "knowlarity"))
    assert routed(routes, ["a", "k", "1"]) == routes[1]  # the longest prefix
    assert routed(routes, ["a", "x"]) == routes[0]
    assert routed(routes, ["b"]) is None


async def test_codec_options_reach_the_wire_globally_and_per_route(server_factory):
    """Every undocumented provider behaviour is a setting: here Awaaz's WAV header, off for
    every Awaaz call, and back on for one route."""
    async def greeter(call):
        await call.play(tone(440, 0.2, 8000), 8000)
        await call.hangup()

    server = await server_factory(
        greeter,
        call=CallConfig(agent_rate=8000),
        codec_options={"awaaz": {"wav_wrap": False}},
        routes=(("/wrapped", "awaaz", {"wav_wrap": True}),),
    )
    payload_sizes = {}
    for path in ("/awaaz", "/wrapped"):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}{path}", "awaaz") as sim:
            wire = []
            receive = sim.transport.get_message

            async def recording():
                message = await receive()
                wire.append(message)
                return message

            sim.transport.get_message = recording  # what the engine put on the wire, raw
            with trio.fail_after(10):
                await sim.closed.wait()
        media = [json.loads(m) for m in wire if isinstance(m, str) and '"event":"media"' in m]
        assert media, path
        payload_sizes[path] = {len(base64.b64decode(m["media"]["payload"])) for m in media}
    assert payload_sizes == {"/awaaz": {320}, "/wrapped": {364}}  # raw PCM vs a 44-byte header + PCM


async def test_legacy_awaaz_call_end_to_end_with_a_bundled_agent(server_factory, caplog):
    """Awaaz's older mod_audio_fork-style stream: metadata text, binary PCM16 at 8 kHz,
    playAudio clips back. The echo must come back at the caller's pitch (a 16 kHz guess
    would play it an octave high)."""
    from callengine.agents import echo as echo_agent

    caplog.set_level(logging.INFO)
    server = await server_factory(echo_agent.agent, call=CallConfig(agent_rate=8000))
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz-legacy", "awaaz-legacy") as sim:
        assert sim.rate == 8000
        sim.say(tone(700, 1.0, 8000, dbfs=-12))
        with trio.fail_after(10):
            while sim.heard_seconds() < 1.0:
                await trio.sleep(0.05)
    heard = sim.heard_audio(8000)
    nz = np.flatnonzero(np.abs(heard) > 100)
    assert _dominant_freq(heard[nz[0] : nz[-1]], 8000) == pytest.approx(700, abs=5)
    assert "call started awaaz-legacy:" in caplog.text and "wire_rate=8000" in caplog.text
    with trio.fail_after(10):
        while server.counters["calls_ended"] < 1:
            await trio.sleep(0.01)
    assert server.end_causes == {"provider_stop": 1}
