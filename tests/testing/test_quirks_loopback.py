"""Quirks and legacy-Awaaz detection over real loopback sockets against callengine.server:
the socket is the point (binary frames, a BOM, texts joined in one frame and messages
before the start cross a real WebSocket, and the detection path ``/`` sees them first).
Real clock: bounds are loose."""

from __future__ import annotations

import numpy as np
import pytest
import trio

from callengine.agents import load
from callengine.audio.generate import tone
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call


async def _serve(nursery, **config) -> CallServer:
    server = CallServer(load("echo"), ServerConfig(port=0, loop_watchdog_s=None, **config))
    await nursery.start(server.serve)
    return server


async def _wait_for(predicate, timeout=10.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def _pitch(sim) -> float:
    heard = sim.heard_audio(sim.rate)
    nz = np.flatnonzero(np.abs(heard) > 200)
    x = heard[nz[0] : nz[-1]].astype(float)
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * sim.rate / len(x))


async def _echo_call(server: CallServer, provider: str, path: str, quirks=(), keys: str = ""):
    url = f"ws://127.0.0.1:{server.port}{path}"
    async with open_dialed_call(url, provider, codec_options={"quirks": set(quirks)}) as sim:
        sim.say(tone(800, 1.0, sim.rate, dbfs=-12))
        for key in keys:
            await sim.press(key)
        await _wait_for(lambda: sim.heard_seconds() >= 1.0)
    await _wait_for(lambda: len(server.reports) == 1)
    return sim, server.reports[0]


@pytest.mark.parametrize(
    "provider, path, quirks, unknown",
    [
        ("awaaz", "/", {"bom"}, 0),
        ("awaaz", "/", {"binary-json"}, 0),
        ("awaaz", "/", {"bom", "binary-json"}, 0),
        ("awaaz", "/", {"media-before-start", "dtmf-before-start", "mark-before-start"}, 3),
        ("awaaz", "/awaaz", {"media-before-start"}, 1),
        ("knowlarity", "/", {"bom"}, 0),
        ("knowlarity", "/", {"joined-texts"}, 0),
        # a binary frame first cannot be detected (audio opens no call): routed by path
        ("knowlarity", "/knowlarity", {"binary-before-metadata"}, 1),
        ("awaaz-legacy", "/", {"joined-texts", "bom"}, 0),
    ],
)
async def test_quirky_provider_over_a_real_socket(nursery, provider, path, quirks, unknown):
    server = await _serve(nursery)
    sim, report = await _echo_call(server, provider, path, quirks)
    assert _pitch(sim) == pytest.approx(800, abs=5)  # the caller's audio went round, at its pitch
    assert (report.provider, report.end_cause, report.close_code) == (provider, "provider_stop", 1000)
    assert report.stats.unknown_messages == unknown
    assert not sim.protocol_errors


async def test_keys_joined_with_the_metadata_over_a_real_socket(nursery):
    server = await _serve(nursery)
    sim, report = await _echo_call(server, "knowlarity", "/", {"joined-texts", "dtmf-drachtio"}, keys="19")
    assert report.stats.dtmf == 2  # each once: as text, and not as a tone too
    assert report.stats.unknown_messages == 0


async def test_legacy_awaaz_on_the_detection_path_is_heard_at_its_pitch(nursery):
    """The legacy simulator's first frame (mod_audio_fork's example layout, no rate) on
    ``/``: detected as awaaz-legacy, so 8 kHz, and the echo comes back at 800 Hz."""
    server = await _serve(nursery)
    sim, report = await _echo_call(server, "awaaz-legacy", "/")
    assert sim.rate == 8000 and report.provider == "awaaz-legacy"
    assert _pitch(sim) == pytest.approx(800, abs=5)


async def test_legacy_awaaz_taken_for_knowlarity_is_an_octave_high(nursery):
    """The damage detection prevents: the same stream read as Knowlarity (16 kHz by
    default) plays the caller's 800 Hz back at 1600 Hz."""
    server = await _serve(nursery, provider="knowlarity")
    sim, report = await _echo_call(server, "awaaz-legacy", "/")
    assert report.provider == "knowlarity"
    assert _pitch(sim) == pytest.approx(1600, abs=10)
