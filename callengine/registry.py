"""The server's live call sessions, and which of their agents are stuck.

A session stays registered while its task runs, which is until its agent has exited:
an agent that swallows ``trio.Cancelled`` or shields an endless wait keeps it registered
after its call ended and its socket closed. Such an agent is *stuck* once the call
config's ``cleanup_grace_s`` has passed since its call ended (or since a drain ended it).
"""

from __future__ import annotations

from typing import Callable, Iterator

import attrs
import trio

from .call.session import CallSession

__all__ = ["StuckAgent", "SessionRegistry"]

_POLL_S = 0.05  # how often a drain looks at the calls it is waiting for


@attrs.frozen
class StuckAgent:
    """A call whose agent has not exited ``waited_s`` after the call ended."""

    label: str
    location: str
    waited_s: float


class SessionRegistry:
    def __init__(self, cleanup_grace_s: float) -> None:
        # the longest grace any call may get (routes may set their own); each session is
        # judged by its own config's
        self.cleanup_grace_s = cleanup_grace_s
        self._ended: dict[CallSession, float | None] = {}  # session -> when its call ended
        self.cancelled_at: float | None = None  # when a drain ended every call left

    def __len__(self) -> int:
        return len(self._ended)

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._ended))

    def add(self, session: CallSession) -> None:
        self._ended[session] = None

    def ended(self, session: CallSession) -> None:
        """The call is over (its socket closed); its agent may still be running."""
        if session in self._ended and self._ended[session] is None:
            self._ended[session] = trio.current_time()

    def remove(self, session: CallSession) -> None:
        self._ended.pop(session, None)

    def labels(self) -> list[str]:
        """Plain attribute reads only: a watchdog thread may call this."""
        return [session.label for session in list(self._ended)]

    def stuck(self) -> list[StuckAgent]:
        now = trio.current_time()
        out = []
        for session, ended_at in list(self._ended.items()):
            if session.agent_done.is_set():
                continue
            since = ended_at if ended_at is not None else self.cancelled_at
            if since is None or now - since < session.config.cleanup_grace_s:
                continue
            try:
                location = session.agent_location()
            except Exception as exc:  # a diagnostic must not break the shutdown
                location = f"unknown ({exc!r})"
            out.append(StuckAgent(session.label, location, round(now - since, 1)))
        return out

    async def wait_until_gone(self, active_calls: Callable[[], int], deadline: float) -> None:
        """After a drain cancelled every call: wait until no call is left, or only agents
        past their cleanup grace are (waiting longer is futile), or ``deadline``."""
        stuck_after = (self.cancelled_at or trio.current_time()) + self.cleanup_grace_s
        while active_calls() or self._ended:
            now = trio.current_time()
            if now >= deadline:
                return
            live = list(self._ended)
            if now >= stuck_after and live and not any(s.agent_done.is_set() for s in live) and active_calls() <= len(live):
                return
            await trio.sleep(_POLL_S)
