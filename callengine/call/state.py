"""How far a call has got: the one place that records why it ended.

Whoever ends the call (the reader on stop or close, the writer on a send failure, the agent
runner when the agent returns or fails, the session on shutdown) calls :meth:`CallState.end`;
the first caller wins, and ending cancels the call's I/O tasks.
"""

from __future__ import annotations

from typing import Callable

import trio

from ..errors import CloseCode
from .causes import EndCause
from .playout import Control

__all__ = ["CallState"]


class CallState:
    def __init__(self, on_end: Callable[[], None]) -> None:
        self._on_end = on_end
        self.end_cause: EndCause | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.t_end: float | None = None
        self.control: Control | None = None  # the hang-up or transfer the agent asked for
        self.ended = trio.Event()  # set once everything is settled and the socket is closing
        self.finalized = False

    def end(self, cause: EndCause, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """End the call (first caller wins): record why, cancel the I/O tasks."""
        if self.end_cause is not None:
            return
        self.end_cause = cause
        self.close_code = code
        self.close_reason = reason or str(cause)
        self.t_end = trio.current_time()
        self._on_end()

    @property
    def over(self) -> bool:
        return self.end_cause is not None or self.finalized
