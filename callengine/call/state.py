"""How far a call has got: the one place that records why it ended.

Whoever ends the call (the reader on stop or close, the writer on a send failure, the agent
runner when the agent returns or fails, the session on shutdown) calls :meth:`CallState.end`;
the first caller wins, and ending cancels the call's I/O tasks.
"""

from __future__ import annotations

import logging
from typing import Callable

import trio

from ..errors import CloseCode
from .causes import EndCause
from .ledger import Control
from .transport import TransportClosed

__all__ = ["CallState"]

log = logging.getLogger("callengine.call")


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

    def closed_under(self, exc: TransportClosed, what: str, label: str) -> None:
        """Why the call ended when the connection closed under the reader or the writer:
        both see the same close, and whichever notices first must reach the same cause."""
        control = self.control
        if control is not None and control.sent_at is not None:
            self.end(control.cause, None, f"provider closed after {control.kind}")
        elif exc.code in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
            # a clean close is how a provider without a stop message hangs up
            self.end(EndCause.PROVIDER_STOP, None, f"{what} (code {exc.code})")
        elif exc.code == CloseCode.MESSAGE_TOO_BIG:
            # the transport refused an inbound message over its size limit and closed
            if self.end_cause is None:
                log.warning("call %s: closed with 1009: %s", label, exc.reason or "message too big")
            self.end(EndCause.MESSAGE_TOO_BIG, CloseCode.MESSAGE_TOO_BIG, exc.reason or "message too big")
        else:
            if self.end_cause is None:
                log.warning("call %s: connection lost (%s, close code %s)", label, what, exc.code)
            self.end(EndCause.DISCONNECTED, None, f"{what} (code {exc.code})")
