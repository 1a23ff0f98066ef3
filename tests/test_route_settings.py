"""Call settings per provider and per route: a user who learns from one live call that an
account differs changes one setting on the route that account dials, not code."""

from __future__ import annotations

import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CALL_SETTINGS, CallConfig
from callengine.cli import build_parser, server_config_from_args
from callengine.events import PlayAudio
from callengine.server import CallServer, Route, ServerConfig
from callengine.testing.dial import open_dialed_call


def test_with_settings_checks_each_value_against_its_field():
    base = CallConfig()
    changed = base.with_settings({"lead_ms": 250, "inband_dtmf": False, "idle_timeout_s": "none", "vad": "webrtc"})
    assert (changed.lead_ms, changed.inband_dtmf, changed.idle_timeout_s, changed.vad) == (250.0, False, None, "webrtc")
    assert base.with_settings({"inband_dtmf": "auto"}).inband_dtmf is None
    assert base.with_settings({"send_timeout_s": "2.5"}).send_timeout_s == 2.5
    assert base.with_settings({}) is base
    with pytest.raises(ValueError, match="unknown call setting 'lead' in route /k; choose from agent_rate"):
        base.with_settings({"lead": 200}, "route /k")
    with pytest.raises(ValueError, match="barge_in=200 in route /k: must be on or off"):
        base.with_settings({"barge_in": 200}, "route /k")
    with pytest.raises(ValueError, match="min_speech_ms='soon'.*must be a number$"):
        base.with_settings({"min_speech_ms": "soon"})
    with pytest.raises(ValueError, match="must be a number or none"):
        base.with_settings({"idle_timeout_s": True})
    with pytest.raises(ValueError, match="route /k: lead_ms .* is below chunk_ms"):
        base.with_settings({"lead_ms": 50, "chunk_ms": 100}, "route /k")
    assert set(CALL_SETTINGS) >= {"lead_ms", "chunk_ms", "inband_dtmf", "idle_timeout_s", "keepalive_s"}


def test_a_route_splits_its_settings_into_codec_options_and_call_settings():
    route = Route.of(("/k", "Knowlarity", {"kill_audio": False, "lead_ms": 200, "chunk_ms": 200}))
    assert route == Route("/k", "knowlarity", {"kill_audio": False}, {"lead_ms": 200, "chunk_ms": 200})
    assert Route.of(("/a", "awaaz", {"wav_wrap": False}, {"idle_timeout_s": 60})).call == {"idle_timeout_s": 60}


def test_call_for_applies_provider_then_route_settings():
    config = ServerConfig(
        call=CallConfig(idle_timeout_s=20, min_speech_ms=150),
        call_options={"knowlarity": {"lead_ms": 600, "idle_timeout_s": 45}},
        routes=(("/slow", "knowlarity", {"lead_ms": 1000, "chunk_ms": 500}), ("/plain", "awaaz")),
    )
    slow, plain = config.routes
    k = config.call_for("knowlarity", None)
    assert (k.lead_ms, k.idle_timeout_s, k.min_speech_ms) == (600, 45, 150)
    r = config.call_for("knowlarity", slow)
    assert (r.lead_ms, r.chunk_ms, r.idle_timeout_s) == (1000, 500, 45)
    assert config.call_for("awaaz", plain) == config.call  # nothing set for awaaz
    # a route's settings never leak onto another provider's calls
    assert config.call_for("awaaz", slow) == config.call
    assert len(config.call_configs()) == 3


def test_bad_settings_are_start_up_errors_naming_where_they_came_from():
    with pytest.raises(ValueError, match="call settings for an unknown provider 'nosuch'"):
        ServerConfig(call_options={"nosuch": {"lead_ms": 100}})
    # 100 ms of lead cannot hold Knowlarity's 200 ms clips: refused for the route only
    with pytest.raises(ValueError, match="lead_ms \\(100\\) is below chunk_ms \\(200\\) on route /k"):
        ServerConfig(routes=(("/k", "knowlarity", {"lead_ms": 100}),))
    with pytest.raises(ValueError, match="call setting barge_in='maybe' in knowlarity call settings: must be on or off"):
        ServerConfig(call_options={"knowlarity": {"barge_in": "maybe"}})
    # the same lead is fine on a route that also shortens the clips
    ServerConfig(routes=(("/k", "knowlarity", {"lead_ms": 100, "chunk_ms": 100}),))


def test_route_and_provider_call_settings_from_the_command_line():
    args = build_parser().parse_args([
        "serve", "echo",
        "--route", "/k=knowlarity,lead_ms=200,chunk_ms=200,kill_audio=off,idle_timeout_s=none",
        "--codec-option", "knowlarity.default_rate=8000", "--codec-option", "knowlarity.inband_dtmf=off",
        "--codec-option", "awaaz.send_timeout_s=2.5",
    ])  # fmt: skip
    config = server_config_from_args(args)
    (route,) = config.routes
    assert route.options == {"kill_audio": False}
    assert route.call == {"lead_ms": 200, "chunk_ms": 200, "idle_timeout_s": "none"}
    assert config.codec_options == {"knowlarity": {"default_rate": 8000}}
    assert config.call_options == {"knowlarity": {"inband_dtmf": False}, "awaaz": {"send_timeout_s": 2.5}}
    on_route = config.call_for("knowlarity", route)
    assert (on_route.lead_ms, on_route.chunk_ms, on_route.idle_timeout_s, on_route.inband_dtmf) == (200, 200, None, False)
    assert config.call_for("awaaz", None).send_timeout_s == 2.5


async def test_each_route_paces_its_calls_with_its_own_settings(nursery):
    """Two Knowlarity routes on one server, over a real socket: the default 200 ms clips on
    one, 100 ms clips on the other, as each route says."""

    async def speak(call):
        await call.play(tone(440, 1.0, 16000, dbfs=-12), 16000)
        await trio.sleep_forever()

    config = ServerConfig(
        port=0,
        loop_watchdog_s=None,
        routes=(("/k-default", "knowlarity"), ("/k-short", "knowlarity", {"chunk_ms": 100, "lead_ms": 200})),
    )
    server = CallServer(speak, config)
    await nursery.start(server.serve)
    clips: dict[str, list[float]] = {}
    for path in ("/k-default", "/k-short"):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}{path}/call-1", "knowlarity") as sim:
            with trio.fail_after(10):
                while sim.heard_seconds() < 0.95:
                    await trio.sleep(0.02)
            clips[path] = [round(cmd.duration, 3) for _, cmd in sim.received if isinstance(cmd, PlayAudio)]
    assert clips["/k-default"] == [0.2] * 5
    assert clips["/k-short"] == [0.1] * 10


def test_provider_api_flag():
    parse = lambda *extra: server_config_from_args(build_parser().parse_args(["serve", "echo", *extra]))  # noqa: E731
    assert parse().provider_api is True
    assert parse("--provider-api", "off").provider_api is False


def test_record_dir_from_the_command_line_and_per_route(tmp_path):
    config = server_config_from_args(build_parser().parse_args([
        "serve", "echo", "--record-dir", str(tmp_path), "--route", f"/quiet=awaaz,record_dir=none",
    ]))  # fmt: skip
    assert config.call.record_dir == str(tmp_path)
    (quiet,) = config.routes
    assert config.call_for("awaaz", quiet).record_dir is None  # a route that is not recorded
    assert config.call_for("knowlarity", None).record_dir == str(tmp_path)
