"""The agent task: the user's code, in its own cancel scope, and what becomes of it.

The agent is cancelled when the call ends, like every task of the call. Its outcome ends
the call in turn: returning is a hang-up after the queued audio (``agent_returned``),
raising is ``agent_error`` (1011), and touching the call after its end raises
:class:`~callengine.call.port.CallEnded` inside the agent, which is how it learns (also
when that happens in a nursery of its own, inside an exception group). An agent that has
not exited ``cleanup_grace_s`` after the end is reported as stuck, with where it waits.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Awaitable, Callable

import trio

from ..errors import CloseCode
from .api import Call
from .causes import ControlKind, EndCause
from .logcontext import current_call
from .port import AgentPort, CallEnded

__all__ = ["AgentRunner", "Agent"]

log = logging.getLogger("callengine.call")

Agent = Callable[[Call], Awaitable[Any]]

_TRIO_DIR = os.path.dirname(trio.__file__)


class AgentRunner:
    def __init__(
        self,
        agent: Agent,
        call: Call,
        port: AgentPort,
        *,
        label: str,
        done: trio.Event,
        end: Callable[[EndCause, "int | None", str], None],
    ) -> None:
        self._agent: Agent | None = agent
        self._call: Call | None = call
        self._port: AgentPort | None = port
        self._label = label
        self._done = done
        self._end = end
        self.scope = trio.CancelScope()
        self._task: trio.lowlevel.Task | None = None
        self.error: str | None = None  # repr of what the agent raised
        self.stuck = False

    async def run(self) -> None:
        _callengine_call_label = self._label  # noqa: F841 - read by the loop watchdog from this frame
        current_call.set(self._label)
        self._task = trio.lowlevel.current_task()
        agent, call, port = self._agent, self._call, self._port
        assert agent is not None and call is not None and port is not None
        try:
            with self.scope:
                try:
                    await agent(call)
                except* CallEnded:
                    pass  # the agent touched the call after its end: that is how it learns
                except* Exception as group:
                    self._failed(group)
                else:
                    # the agent is done talking: let queued audio play, then hang up
                    port.request_control_nowait(ControlKind.HANGUP, EndCause.AGENT_RETURNED)
        finally:
            port.listening = False
            self._done.set()
            # nothing of the finished call stays reachable from here (no reference cycles)
            self._agent = self._call = self._port = None
            del agent, call, port

    def _failed(self, group: BaseExceptionGroup[Exception]) -> None:
        leaves = _leaves(group)
        exc: BaseException = leaves[0] if len(leaves) == 1 else group
        self.error = repr(exc)
        log.error("call %s: agent raised %r", self._label, exc, exc_info=exc)
        if trio.current_effective_deadline() == float("-inf"):
            return  # it raised in its cleanup while the call was ending for another reason
        self._end(EndCause.AGENT_ERROR, CloseCode.INTERNAL_ERROR, f"agent error: {type(exc).__name__}")

    async def watch(self, grace_s: float) -> bool:
        """Shielded and bounded: wait out the agent's cleanup grace. True if it exited;
        else it is logged as stuck (it swallows trio.Cancelled or shields an endless wait)."""
        with trio.move_on_after(grace_s + 0.1, shield=True):
            await self._done.wait()
            return True
        self.stuck = True
        log.error(
            "call %s: the agent has not exited %.1f s after the call ended; it swallows "
            "trio.Cancelled or shields an endless wait (at %s). The call is closed; its task lingers.",
            self._label,
            grace_s,
            self.location(),
        )
        return False

    def location(self) -> str:
        """Where the agent's task is waiting now: its innermost frames outside trio."""
        task = self._task
        if task is None or self._done.is_set():
            return "not running"
        frames = []
        coro: Any = task.coro
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None and not frame.f_code.co_filename.startswith(_TRIO_DIR):
                frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return " <- ".join(reversed(frames[-3:])) or "unknown"


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
