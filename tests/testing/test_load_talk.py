"""The load generator's talk traffic (``--traffic talk``): the caller's looped script, and a
short real-loopback run against an in-process server with a small conversational agent."""

from __future__ import annotations

import json

import pytest
import trio

from callengine.call.config import CallConfig
from callengine.cli import build_parser
from callengine.events import BargeIn, Dtmf, MarkReached, SpeechEnded
from callengine.server import CallServer, ServerConfig
from callengine.testing._talk import KEYS, LOOP_S, UTTERANCES, TalkScript
from callengine.testing.load import LoadConfig, LoadError, run_load


def test_the_script_loops_with_its_events_at_their_frames():
    script = TalkScript(8000, 160, message_keys=True)
    assert script.frames == int(LOOP_S / 0.02)
    assert len(script.pcm) == script.frames * 320
    assert all(len(script.frame(k)) == 320 for k in (0, 1, script.frames - 1, script.frames, 10 * script.frames + 7))
    assert script.frame(3) == script.frame(3 + script.frames)
    utterances = {k: v for k, (kind, v) in script.events.items() if kind == "utterance"}
    assert sorted(utterances) == [round(at / 0.02) for at, *_ in UTTERANCES]
    assert sum(utterances.values()) == 1  # one of them over the bot's answer
    assert [v for kind, v in script.events.values() if kind == "key"] == [d for _, d in KEYS]
    # speech is loud, the pauses are line noise
    import numpy as np

    def rms(k):
        return float(np.sqrt(np.mean(np.frombuffer(script.frame(k), "<i2").astype(float) ** 2)))

    assert rms(10) > 300 and rms(200) < 20
    # every call starts at its own point of the loop
    assert len({script.offset(i) for i in range(script.frames)}) == script.frames


def test_in_band_keys_are_tones_in_the_audio():
    script = TalkScript(16000, 320, message_keys=False)
    at = round(KEYS[0][0] / 0.02)
    quiet = TalkScript(16000, 320, message_keys=True)
    assert script.frame(at) != quiet.frame(at)
    assert script.frame(at - 1) == quiet.frame(at - 1)


def test_traffic_is_checked():
    with pytest.raises(LoadError):
        LoadConfig(url="ws://127.0.0.1:1/awaaz", traffic="shout")
    args = build_parser().parse_args(["load", "ws://127.0.0.1:1/awaaz", "--provider", "awaaz", "--traffic", "talk"])
    assert args.traffic == "talk"


async def _talker(call) -> None:
    """Answers each utterance with 0.4 s of tone and a mark; counts what it saw."""
    call.barge_in = True
    async for event in call:
        if isinstance(event, SpeechEnded):
            await call.play(b"\x10\x00" * int(0.4 * call.info.sample_rate))
            await call.mark("turn")
        elif isinstance(event, (Dtmf, BargeIn, MarkReached)):
            SEEN.append(type(event).__name__)


SEEN: list[str] = []


async def test_talk_run_sends_the_script_and_counts_the_bot(nursery):
    SEEN.clear()
    server = CallServer(_talker, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=8000)))
    await nursery.start(server.serve)
    with trio.fail_after(20):
        # call 0 starts at the loop's first utterance (0 s), call 1 2.26 s in: its key
        # press (6 s in the loop) comes 3.74 s after it starts
        result = await run_load(
            url=f"ws://127.0.0.1:{server.port}/awaaz", provider="awaaz", calls=2, seconds=4.5, drain=0.5, traffic="talk"
        )
    assert result.traffic == "talk"
    assert result.handshakes_ok == 2 and result.calls_cut == 0 and result.protocol_errors == 0
    assert result.frames_dropped == 0 and result.calls_with_long_tail == 0 and result.frames_echoed == 0
    assert result.ok
    t = result.talk
    assert t["utterances"] == 1 and t["barge_in_attempts"] == 0 and t["keys"] == 1
    assert t["bot_media"] >= 15 and 0.3 <= t["bot_audio_s"] <= 0.5  # the one 0.4 s answer, in 20 ms chunks
    assert t["marks_echoed"] == 1 and t["clears"] == 0
    assert "Dtmf" in SEEN and "MarkReached" in SEEN
    assert server.statistics()["calls"] == 2
    d = result.as_dict()
    json.dumps(d)
    assert d["talk"]["keys"] == 1
    assert "1 utterances sent" in result.format_table()


async def test_echo_results_have_no_talk(nursery):
    from callengine.agents.echo import agent as echo_agent

    server = CallServer(echo_agent, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(agent_rate=8000)))
    await nursery.start(server.serve)
    with trio.fail_after(15):
        result = await run_load(url=f"ws://127.0.0.1:{server.port}/awaaz", calls=1, seconds=0.5, drain=0.3)
    assert result.traffic == "echo" and result.talk == {}
    assert result.frames_echoed == result.frames_sent > 0
    assert "talk" not in result.format_table()
