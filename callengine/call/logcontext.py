"""The call a log line belongs to, without passing it around.

The agent runner sets :data:`current_call` to the call's label ("awaaz:MZ123") in the agent's
task; tasks the agent starts inherit it (trio copies the context into child tasks). A log
record factory, installed once, copies it into every record as ``record.call`` ("" outside
a call), so a formatter can print it (``%(call)s``) and the agent's own log lines name their
call without the agent doing anything.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

__all__ = ["current_call", "install_record_factory"]

current_call: contextvars.ContextVar[str] = contextvars.ContextVar("callengine_call", default="")

_installed = False


def install_record_factory() -> None:
    """Make every log record carry ``call`` (idempotent; keeps any factory set before)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.call = current_call.get()
        return record

    logging.setLogRecordFactory(factory)
