"""/healthz, /readyz and /metrics on the call port, over real sockets while calls run."""

from __future__ import annotations

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from callengine.agents import load
from callengine.audio.generate import tone
from callengine.call.causes import EndCause
from callengine.protocols.registry import CODECS
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.provider import default_start

from .call.conftest import speech_8k
from .cli_agents import echo


async def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange: (status, headers, body); the server closes after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = bytearray()
    with trio.fail_after(5):
        await stream.send_all(request)
        while chunk := await stream.receive_some(65536):
            data += chunk
    await stream.aclose()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: engine\r\n{extra}\r\n".encode()


async def scrape(port: int, *headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, head, body = await http(port, get("/metrics", *headers))
    assert status == 200 and head["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def start_server(nursery):
    async def start(agent, **options):
        options.setdefault("port", 0)
        options.setdefault("loop_watchdog_s", None)
        server = CallServer(agent, ServerConfig(**options))
        await nursery.start(server.serve)
        return server

    return start


async def test_health_and_readiness_answer_plain_http(start_server):
    server = await start_server(echo)
    assert await http(server.port, get("/healthz")) == (200, {"content-type": "text/plain; charset=utf-8", "content-length": "3", "connection": "close"}, b"ok\n")
    status, _, body = await http(server.port, get("/readyz?probe=k8s"))
    assert (status, body) == (200, b"ready\n")
    status, head, body = await http(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: e\r\n\r\n")
    assert (status, head["content-length"], body) == (200, "3", b"")
    # any other plain request is still refused as before: it is not a WebSocket upgrade
    status, _, _ = await http(server.port, get("/awaaz"))
    assert status in (400, 426)
    status, _, _ = await http(server.port, b"POST /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n\r\n")
    assert status in (400, 426)
    assert server.counters["handshake_failures"] == 2


async def test_readyz_turns_503_at_the_call_limit_and_when_draining(start_server):
    server = await start_server(echo, max_calls=1)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz"):
        with trio.fail_after(5):
            while server.active_calls < 1:
                await trio.sleep(0.01)
        assert await http(server.port, get("/readyz")) == (503, {"content-type": "text/plain; charset=utf-8", "content-length": "19", "connection": "close"}, b"call limit reached\n")
        assert (await http(server.port, get("/healthz")))[0] == 200
    with trio.fail_after(5):
        while server.active_calls:
            await trio.sleep(0.01)
    assert (await http(server.port, get("/readyz")))[0] == 200
    server.accepting = False  # what drain() does first
    assert (await http(server.port, get("/readyz")))[2] == b"draining\n"
    server.accepting = True


async def test_metrics_while_calls_run_and_after(start_server):
    server = await start_server(echo)
    base = f"ws://127.0.0.1:{server.port}"
    async with open_dialed_call(f"{base}/awaaz", "awaaz") as a, open_dialed_call(f"{base}/knowlarity", "knowlarity") as k:
        a.say(tone(500, 1.0, 8000))
        k.say(tone(500, 1.0, 16000))
        with trio.fail_after(10):
            while a.heard_seconds() < 0.3 or k.heard_seconds() < 0.3:
                await trio.sleep(0.02)
        first = await scrape(server.port)
        assert value(first, "callengine_calls_active", provider="awaaz") == 1
        assert value(first, "callengine_calls_active", provider="knowlarity") == 1
        assert value(first, "callengine_calls_started_total", provider="awaaz") == 1
        assert value(first, "callengine_audio_frames_in_total", provider="awaaz") > 10  # live calls are counted
        assert value(first, "callengine_ready") == 1
        await trio.sleep(0.3)
        second = await scrape(server.port)
        assert value(second, "callengine_audio_frames_in_total", provider="awaaz") > value(first, "callengine_audio_frames_in_total", provider="awaaz")
    with trio.fail_after(10):
        while server.counters["calls_ended"] < 2:
            await trio.sleep(0.01)
    after = await scrape(server.port)
    for provider in ("awaaz", "knowlarity"):
        assert value(after, "callengine_calls_active", provider=provider) == 0
        assert value(after, "callengine_calls_ended_total", provider=provider, end_cause="provider_stop") == 1
        assert value(after, "callengine_call_duration_seconds_count", provider=provider) == 1
        # counters never go back when a live call's figures become an ended call's
        for name in ("callengine_audio_frames_in_total", "callengine_audio_frames_out_total", "callengine_audio_in_seconds_total"):
            assert value(after, name, provider=provider) >= value(second, name, provider=provider) > 0
    assert value(after, "callengine_call_teardown_seconds_count") == 2
    assert value(after, "callengine_event_loop_lag_seconds_count") > 0
    assert value(after, "callengine_connections_total") >= 2


async def test_label_sets_stay_bounded(start_server):
    """Many calls with distinct ids, paths and rejections: no label value names a call."""
    server = await start_server(echo)
    for i in range(12):
        start = default_start("awaaz", call_id=f"call-{i}")
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz/c{i}", "awaaz", start=start):
            pass
        await http(server.port, get(f"/nowhere-{i}"))
    samples = await scrape(server.port)
    allowed = set(CODECS) | {str(c) for c in EndCause} | {"404", "503", "handshake_limit", "unknown_provider", "le", "+Inf"}
    for (name, labels) in samples:
        for key, label_value in labels:
            if key == "le":
                continue
            assert label_value in allowed, (name, key, label_value)
    assert value(samples, "callengine_calls_started_total", provider="awaaz") == 12


async def test_metrics_need_the_token_when_one_is_set(start_server):
    server = await start_server(echo, token="s3cret-token")
    assert (await http(server.port, get("/metrics")))[0] == 401
    assert (await http(server.port, get("/metrics?token=wrong")))[0] == 401
    assert value(await scrape(server.port, "Authorization: Bearer s3cret-token"), "callengine_ready") == 1
    assert (await http(server.port, get("/healthz")))[0] == 200  # health checks carry no secret


async def test_bargein_latency_is_observed(start_server):
    samples, onset = speech_8k()
    server = await start_server(load("prompt"))
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        await trio.sleep(1.0)
        sim.say(samples[: int(1.5 * 8000)], 8000)
        with trio.fail_after(10):
            while not sim.clears:
                await trio.sleep(0.02)
    scraped = await scrape(server.port)
    assert value(scraped, "callengine_bargein_latency_seconds_count", provider="awaaz") == 1
    total = value(scraped, "callengine_bargein_latency_seconds_sum", provider="awaaz")
    assert 0.15 < total < 1.0  # min speech 200 ms plus detection and the clear
