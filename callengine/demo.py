"""``callengine demo``: the engine in-process and two simulated calls through it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from .cli import load_agent, setup_logging

__all__ = ["run_demo", "cmd_demo"]


async def run_demo(out=sys.stdout, record_dir: str = ".", seconds: float = 9.0) -> list[dict]:
    """Start the engine in-process and place two simulated calls through it:

    1. Awaaz, the ``prompt`` agent: the caller talks over the prompt at 2.5 s (barge-in
       clears playback within ~250 ms), then the prompt plays again after the caller stops.
    2. Knowlarity, the ``ivr`` agent: the caller presses 1 (a prompt) and then 3 (hang-up),
       as in-band tones, since Knowlarity's stream has no DTMF events.
    """
    from .agents import prompt as prompt_agent_module
    from .server import CallServer, ServerConfig
    from .testing.dial import simulate_call

    print("demo: call 1, Awaaz, runs the `prompt` agent (the caller talks over it); call 2, Knowlarity, runs the `ivr` agent (keys 1, then 3)", file=out)

    caller_speech, speech_rate = prompt_agent_module.load_prompt()
    caller_speech = caller_speech[: int(1.6 * speech_rate)]

    async def route(call):
        if call.info.provider == "knowlarity":
            return await load_agent("ivr")(call)
        return await load_agent("prompt")(call)

    server = CallServer(route, ServerConfig(port=0, loop_watchdog_s=None))
    summaries = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        print(f"engine listening on ws://127.0.0.1:{port}", file=out)
        summaries.append(
            await simulate_call(
                f"ws://127.0.0.1:{port}/awaaz",
                "awaaz",
                audio=caller_speech,
                audio_rate=speech_rate,
                speak_at=2.5,
                seconds=seconds,
                record=str(Path(record_dir) / "demo-awaaz.wav"),
                out=out,
            )
        )
        summaries.append(
            await simulate_call(
                f"ws://127.0.0.1:{port}/vaani/knowlarity/setup-call-streams",
                "knowlarity",
                dtmf=[("1", 2.0), ("3", 6.0)],
                seconds=seconds + 3,
                record=str(Path(record_dir) / "demo-knowlarity.wav"),
                out=out,
            )
        )
        await server.drain(grace_s=2)
        nursery.cancel_scope.cancel()
    print("--- server: " + json.dumps(server.statistics()), file=out)
    return summaries


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging("text", args.log_level)
    summaries = trio.run(lambda: run_demo(record_dir=args.record_dir, seconds=args.seconds))
    ok = (
        summaries[0]["clears"] >= 1
        and summaries[0]["heard_seconds"] > 1.0
        and summaries[1]["hangups"] == ["hangup"]
        and not any(s["protocol_errors"] for s in summaries)
    )
    print("demo " + ("OK: barge-in cleared the prompt on Awaaz; the IVR answered keys and hung up on Knowlarity" if ok else "FAILED"))
    return 0 if ok else 1
