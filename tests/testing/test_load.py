"""The load generator: a short real-loopback run against an in-process server with the
echo agent, and its input checks. Speed is not asserted here (see scripts/bench_capacity.py);
the figures only have to be sane."""

from __future__ import annotations

import json
import math

import pytest
import trio

from callengine.agents.echo import agent as echo_agent
from callengine.call.config import CallConfig
from callengine.cli import build_parser
from callengine.server import CallServer, ServerConfig
from callengine.testing.load import MAX_CALLS, LoadConfig, LoadError, LoadGenerator, check_loopback_url, run_load


async def _start_echo_server(nursery, agent_rate: int) -> CallServer:
    server = CallServer(echo_agent, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=agent_rate)))
    await nursery.start(server.serve)
    return server


@pytest.mark.parametrize("provider,rate", [("awaaz", 8000), ("knowlarity", 16000)])
async def test_load_run_counts_frames_and_latencies(nursery, provider, rate):
    server = await _start_echo_server(nursery, rate)
    with trio.fail_after(15):
        result = await run_load(
            url=f"ws://127.0.0.1:{server.port}/{provider}", provider=provider, calls=3, seconds=1.5, drain=0.5
        )
    assert result.handshakes_ok == 3 and result.handshakes_failed == 0
    assert result.calls_cut == 0 and result.protocol_errors == 0
    # 1.5 s of 20 ms frames per call, less the time to connect
    assert 3 * 55 <= result.frames_sent <= 3 * 76
    assert result.frames_dropped == 0 and result.frames_duplicated == 0
    assert result.calls_with_long_tail == 0
    if provider == "awaaz":
        assert result.frames_echoed == result.frames_sent and result.frames_unechoed_tail == 0
    else:
        # the engine holds the last partial 200 ms clip back: at most 9 frames per call
        assert result.frames_echoed + result.frames_unechoed_tail == result.frames_sent
        assert result.frames_unechoed_tail <= 3 * 9
    rt = result.round_trip
    # the statistics leave out each call's last chunk's worth of frames (one 20 ms frame on
    # Awaaz, a 200 ms clip on Knowlarity), echoed or not
    per_call = 1 if provider == "awaaz" else 10
    assert result.frames_echoed - 3 * per_call <= rt.count <= result.frames_echoed
    assert 0 < rt.p50 <= rt.p99 <= rt.max < 1000  # ms
    if provider == "knowlarity":
        # 200 ms clips: the first frame of a clip waits for the other nine
        assert rt.max >= 100
        assert result.media_messages < result.frames_sent
    else:
        assert result.media_messages == result.frames_sent  # one 20 ms chunk per frame
    assert result.pacing_jitter.count > 0 and not math.isnan(result.pacing_jitter.p50)
    assert result.underruns >= 0 and result.loadgen_cpu_s > 0
    assert result.window_start_unix < result.window_end_unix
    assert server.statistics()["calls"] == 3
    d = result.as_dict()
    json.dumps(d)
    assert d["round_trip"]["count"] == rt.count
    assert "round trip" in result.format_table()


async def test_load_counts_refused_handshakes(nursery):
    server = CallServer(echo_agent, ServerConfig(port=0, loop_watchdog_s=None, max_calls=1, call=CallConfig(agent_rate=8000)))
    await nursery.start(server.serve)
    with trio.fail_after(15):
        result = await run_load(url=f"ws://127.0.0.1:{server.port}/awaaz", calls=3, seconds=1.0, drain=0.2)
    assert result.handshakes_ok == 1
    assert result.handshakes_failed == 2
    assert result.handshake_errors == {"HTTP 503": 2}
    assert not result.ok


def test_the_marker_survives_any_alignment():
    gen = LoadGenerator(LoadConfig(url="ws://127.0.0.1:1/awaaz", calls=1, seconds=1))
    frames = [gen.frame(seq) for seq in range(5)]
    assert all(len(f) == 320 for f in frames)
    stream = b"".join(frames)
    from callengine.events import PlayAudio
    from callengine.testing.load import _Call

    for cut in (2, 6, 100, 318, 322):
        call = _Call(0)
        call.sent_at = [0.0] * 5
        pieces = [stream[:cut], stream[cut:]]
        for i, piece in enumerate(pieces):
            gen._on_audio(call, PlayAudio(piece, 8000), now=1.0 + i)
        assert sorted(call.echo_at) == [0, 1, 2, 3, 4], cut
        assert call.duplicates == 0


@pytest.mark.parametrize(
    "url",
    ["ws://10.0.0.1:8080/awaaz", "ws://example.com/awaaz", "wss://127.0.0.1:8080/awaaz", "http://127.0.0.1/awaaz"],
)
def test_refuses_non_loopback_or_non_ws_urls(url):
    with pytest.raises(LoadError):
        check_loopback_url(url)


def test_accepts_loopback_urls():
    assert check_loopback_url("ws://127.0.0.1:8080/awaaz") == ("127.0.0.1", 8080, "/awaaz")
    assert check_loopback_url("ws://localhost:9/knowlarity?x=1")[2] == "/knowlarity?x=1"
    assert check_loopback_url("ws://[::1]:9/awaaz")[0] == "::1"


@pytest.mark.parametrize(
    "options",
    [{"calls": 0}, {"calls": MAX_CALLS + 1}, {"seconds": 0}, {"seconds": 601}, {"ramp": 5, "seconds": 5}, {"provider": "nosuch"}],
)
def test_bounds(options):
    with pytest.raises(LoadError):
        LoadConfig(url="ws://127.0.0.1:1/awaaz", **options)


def test_cli_registers_load_and_refuses_remote_hosts(capsys):
    parser = build_parser()
    args = parser.parse_args(["load", "ws://192.0.2.1:80/awaaz", "--provider", "awaaz", "--calls", "2", "--seconds", "1"])
    assert args.func(args) == 2
    assert "loopback" in capsys.readouterr().err


def test_the_steady_window_leaves_out_the_held_back_last_clip():
    """A caller that stops mid-clip leaves a partial clip the server flushes only after a
    pause; its frames' long round trips (and the gap before them) are the stop's, not the
    steady state's, so they stay out of the statistics while still counting as echoed."""
    gen = LoadGenerator(LoadConfig(url="ws://127.0.0.1:9/knowlarity", provider="knowlarity", calls=1, seconds=2.0))
    call = gen.calls[0]
    frame_s = gen.frame_s
    n = 25  # two whole 200 ms clips, then five frames the server holds 200 ms longer
    for seq in range(n):
        call.nominal.append(seq * frame_s)
        call.sent_at.append(seq * frame_s)
        clip_sent = (seq // 10 * 10 + 9) * frame_s  # when its tenth frame went out
        call.echo_at[seq] = clip_sent + 0.001 if seq < 20 else n * frame_s + 0.2
    call.max_media_dur = 0.2
    call.jitter = [(0.381, 0.001), (n * frame_s + 0.2, 0.1)]
    gen._unix_offset = 0.0  # set by run()
    result = gen._result(0.0, wall=1.0, cpu=0.1)
    assert result.frames_echoed == n
    assert result.round_trip.count == 15  # frames 0..14: 15..24 are the last clip's worth
    assert result.round_trip.max < 200  # ms: the first frame of a clip waits 180 ms
    assert result.underruns == 0
    assert result.pacing_jitter.count == 1 and result.pacing_jitter.max < 2
