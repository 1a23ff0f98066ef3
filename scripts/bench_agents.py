"""Test agents for the benchmarks in scripts/ (served with PYTHONPATH=scripts):

    PYTHONPATH=scripts callengine serve bench_agents:agent --log-format json --log-level info

The behaviour comes from the call's custom parameters (Awaaz ``custom_parameters``, the
Knowlarity metadata): ``bench`` selects it, ``after`` (seconds) says when to act.

=========  ===========================================================================
listen     play a 1 s tone, then read events until the provider ends the call (stop or
           an abrupt drop)
return     play a 1 s tone, return after ``after`` s (the engine hangs up once the tone
           has played)
hangup     play a 1 s tone, ``call.hangup()`` after ``after`` s
raise      play a 1 s tone, raise RuntimeError after ``after`` s
transfer   play a 1 s tone, ``call.transfer(...)`` after ``after`` s (Knowlarity)
probe      log, at WARNING on the logger ``bench_agents``, a JSON object with the number
           of live trio tasks in this process (walking the task tree from the root task)
           and of live engine objects after a garbage collection; then hang up
=========  ===========================================================================
"""

from __future__ import annotations

import collections
import gc
import json
import logging

import trio

from callengine.audio.generate import tone

log = logging.getLogger("bench_agents")

RATE = 8000
TONE = tone(440, 1.0, RATE, dbfs=-20)
TRANSFER_TARGET = "+918000000003"


def live_tasks() -> tuple[int, dict[str, int]]:
    """(number of live tasks, count per task name) in this trio run."""
    names: collections.Counter[str] = collections.Counter()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names[task.name.rsplit(".", 1)[-1]] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return sum(names.values()), dict(names)


def live_objects() -> dict[str, int]:
    """Objects of the engine and of trio-websocket still alive, after a collection."""
    gc.collect()
    wanted = {"CallSession", "Call", "Playback", "MarkHandle", "WebSocketConnection", "WebSocketTransport", "SocketStream", "Nursery", "CancelScope"}
    counts: collections.Counter[str] = collections.Counter()
    objects = gc.get_objects()
    for obj in objects:
        name = type(obj).__name__
        if name in wanted:
            counts[name] += 1
    counts["gc_objects"] = len(objects)  # every object the collector tracks
    return dict(counts)


async def agent(call) -> None:
    custom = call.info.custom
    mode = str(custom.get("bench", "listen"))
    after = float(custom.get("after", 0.3))
    if mode == "probe":
        n, names = live_tasks()
        log.warning(json.dumps({"probe": call.info.call_id, "tasks": n, "task_names": names, "objects": live_objects()}))
        await call.hangup()
        return
    await call.play(TONE, sample_rate=RATE)
    if mode == "listen":
        async for _event in call:
            pass
        return
    await trio.sleep(after)
    if mode == "return":
        return
    if mode == "hangup":
        await call.hangup()
    elif mode == "raise":
        raise RuntimeError("bench_agents: raised on purpose")
    elif mode == "transfer":
        await call.transfer(TRANSFER_TARGET)
    else:
        raise ValueError(f"unknown bench behaviour {mode!r}")
