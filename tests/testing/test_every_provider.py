"""``callengine dial``, ``callengine load`` and scripts/bench_bargein.py take every provider
in the codec registry (awaaz-legacy included): a short bounded call each, over real
loopback sockets against an in-process server. Real clock: bounds are loose."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import trio

from callengine.agents import load as load_agent
from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.cli import build_parser
from callengine.protocols.registry import CODECS, get_codec
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import close_problem, simulate_call
from callengine.testing.load import LoadConfig, LoadError, run_load

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = sorted(CODECS)


async def _serve(nursery, agent: str = "echo", **call) -> CallServer:
    server = CallServer(load_agent(agent), ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(**call)))
    await nursery.start(server.serve)
    return server


def test_the_commands_offer_every_provider():
    parser = build_parser()
    for provider in PROVIDERS:
        assert parser.parse_args(["dial", "ws://127.0.0.1:1/", "--provider", provider]).provider == provider
        assert parser.parse_args(["load", "ws://127.0.0.1:1/", "--provider", provider]).provider == provider
        assert LoadConfig(url="ws://127.0.0.1:1/", provider=provider).rate == get_codec(provider).capabilities.inbound_rate
    with pytest.raises(LoadError, match="awaaz-legacy"):
        LoadConfig(url="ws://127.0.0.1:1/", provider="nosuch")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dial_runs_a_call_on_every_provider(nursery, provider):
    server = await _serve(nursery)
    out = io.StringIO()
    rate = get_codec(provider).capabilities.inbound_rate
    with trio.fail_after(20):
        summary = await simulate_call(
            f"ws://127.0.0.1:{server.port}/{provider}", provider, audio=tone(600, 0.5, rate, dbfs=-12), audio_rate=rate,
            speak_at=0.1, dtmf=[("5", 0.2)], seconds=1.5, out=out,
        )  # fmt: skip
    assert close_problem(summary) is None, summary
    assert summary["heard_seconds"] > 0.4  # the echo of what was said came back
    assert f"--- {provider} call timeline" in out.getvalue()
    assert server.reports[-1].provider == provider and server.reports[-1].stats.dtmf == 1


async def test_dial_plays_quirks_and_drops_keys_awaaz_cannot_carry(nursery):
    server = await _serve(nursery)
    with trio.fail_after(20):
        summary = await simulate_call(
            f"ws://127.0.0.1:{server.port}/", "awaaz", dtmf=[("A", 0.2), ("1", 0.3)], seconds=1.0, out=io.StringIO(),
            quirks="bom,binary-json,media-before-start",
        )  # fmt: skip
    assert close_problem(summary) is None, summary
    assert summary["quirks"] == ["binary-json", "bom", "media-before-start"]
    assert summary["dtmf_dropped"] == ["A"]
    report = server.reports[-1]
    assert (report.provider, report.stats.dtmf, report.stats.unknown_messages) == ("awaaz", 1, 1)
    with pytest.raises(ValueError, match="no quirk joined-texts"):
        await simulate_call(f"ws://127.0.0.1:{server.port}/", "awaaz", seconds=0.1, out=io.StringIO(), quirks=["joined-texts"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_load_runs_two_calls_on_every_provider(nursery, provider):
    rate = get_codec(provider).capabilities.inbound_rate
    server = await _serve(nursery, agent_rate=rate)
    with trio.fail_after(20):
        result = await run_load(url=f"ws://127.0.0.1:{server.port}/{provider}", provider=provider, calls=2, seconds=1.0, drain=0.5)
    assert result.handshakes_ok == 2 and result.handshakes_failed == 0
    assert result.protocol_errors == 0 and result.calls_cut == 0 and result.frames_dropped == 0
    assert result.frames_echoed > 0
    assert server.statistics()["calls"] == 2
    assert {r.provider for r in server.reports} == {provider}


def _bench_bargein(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # its benchlib
    spec = importlib.util.spec_from_file_location("bench_bargein", ROOT / "scripts" / "bench_bargein.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_bench_bargein_measures_one_trial_on_every_provider(nursery, monkeypatch, provider):
    bench = _bench_bargein(monkeypatch)
    assert bench.RATES[provider] == get_codec(provider).capabilities.inbound_rate
    server = await _serve(nursery, agent="prompt")
    with trio.fail_after(30):
        result = await bench.measure_call(f"ws://127.0.0.1:{server.port}/{provider}", provider, 1, np.random.default_rng(1), 10.0)
    assert result["provider"] == provider
    assert len(result["trials"]) + result["misses"] == 1
    assert len(result["trials"]) == 1, "the caller's speech did not clear the prompt"
    assert result["trials"][0]["latency_ms"] > 0


def test_bench_bargein_refuses_an_unknown_provider(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        _bench_bargein(monkeypatch).main(["--providers", "awaaz,nosuch"])
    assert "unknown provider nosuch" in capsys.readouterr().err


@pytest.mark.parametrize("agent", ["prompt", "ivr"])
async def test_callengine_serve_takes_every_provider_on_its_own_path(nursery, agent):
    """One `callengine serve` process (a real subprocess, as a user runs it) and a dialed call
    of every provider to it: the prompt plays and stops when the caller talks over it; the
    ivr's key 3 ends the call the provider's way."""
    from ..serve_process import start_serve

    from callengine.audio.resample import resample

    from ..call.conftest import speech_8k

    sp = await start_serve(nursery, [agent, "--port", "0", "--drain-grace", "0.5"])
    speech = speech_8k()[0][: int(1.5 * 8000)]
    for provider in PROVIDERS:
        url = f"ws://127.0.0.1:{sp.port}/{provider}"
        rate = get_codec(provider).capabilities.inbound_rate
        with trio.fail_after(30):
            if agent == "prompt":
                said = speech if rate == 8000 else resample(speech, 8000, rate)
                summary = await simulate_call(url, provider, audio=said, audio_rate=rate, speak_at=1.0, seconds=3.0, out=io.StringIO())
            else:
                summary = await simulate_call(url, provider, dtmf=[("3", 0.5)], seconds=10.0, out=io.StringIO())
        assert summary["protocol_errors"] == [], (provider, summary)
        assert summary["clears"] >= 1, (provider, summary)  # barge-in / the key cut the audio
        if agent == "ivr":
            assert summary["call_seconds"] < 5, (provider, summary)  # ended by the engine
            if get_codec(provider).capabilities.hangup_message:
                assert summary["hangups"] == ["hangup"], (provider, summary)
            else:
                assert summary["close_code"] == 1000, (provider, summary)
    sp.proc.send_signal(15)
    assert await sp.wait() == 0
