"""The event-loop watchdog: an agent that never reaches a checkpoint (``time.sleep``, a
CPU-bound loop, a blocking client) stalls every call at once, and Trio cannot cancel it.
A thread watches a heartbeat the loop updates and logs where the loop is stuck, naming the
call whose agent blocks it.

The call is found by walking the blocked main thread's frames outwards to the session's
agent-runner frame, which holds a local variable named ``_callengine_call_label``
("provider:call_id").
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import trio

__all__ = ["run_loop_watchdog", "describe_frame", "call_label_of", "CALL_LABEL_LOCAL"]

log = logging.getLogger("callengine.server")

CALL_LABEL_LOCAL = "_callengine_call_label"
_MAX_DEPTH = 500  # frames walked looking for the label (a deep agent stack still ends)


async def run_loop_watchdog(limit_s: float, counters: dict) -> None:
    """Run until cancelled; log once per stall longer than ``limit_s`` and count it in
    ``counters["loop_stalls"]``."""
    beat = [time.monotonic()]
    stop = threading.Event()
    main_id = threading.get_ident()

    def watch() -> None:
        reported = False
        while not stop.wait(limit_s / 4):
            stalled = time.monotonic() - beat[0]
            if stalled > limit_s and not reported:
                reported = True
                frame = sys._current_frames().get(main_id)
                label = call_label_of(frame)
                where = describe_frame(frame)
                call = f" in call {label}" if label else ""
                log.error("event loop blocked for %.1f s%s (an agent that never awaits?) at %s", stalled, call, where)
                counters["loop_stalls"] = counters.get("loop_stalls", 0) + 1
            elif stalled <= limit_s:
                reported = False

    thread = threading.Thread(target=watch, name="callengine-loop-watchdog", daemon=True)
    thread.start()
    try:
        while True:
            beat[0] = time.monotonic()
            await trio.sleep(limit_s / 4)
    finally:
        stop.set()


def describe_frame(frame, depth: int = 4) -> str:
    """The innermost ``depth`` frames as ``file:line in function``, innermost first."""
    parts = []
    while frame is not None and len(parts) < depth:
        parts.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts) or "unknown"


def call_label_of(frame) -> str | None:
    """The ``_callengine_call_label`` of the nearest frame outwards that has one."""
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        code = frame.f_code
        # check the code object first: reading f_locals of every frame would copy them
        if CALL_LABEL_LOCAL in code.co_varnames or CALL_LABEL_LOCAL in code.co_cellvars:
            try:
                value = frame.f_locals.get(CALL_LABEL_LOCAL)
            except Exception:  # a frame being torn down under us
                value = None
            if isinstance(value, str):
                return value
        frame = frame.f_back
    return None
