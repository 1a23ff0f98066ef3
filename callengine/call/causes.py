"""Why a call ended, how it was controlled, and what it counted: the records a call leaves.

Pure: no trio. :class:`EndCause` and :class:`ControlKind` are string enums, so they compare
equal to their values (``report.end_cause == "hangup"``) and serialise as them in JSON.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["EndCause", "ControlKind", "CallStatistics", "CallReport", "Counters"]


class EndCause(enum.StrEnum):
    """What ended a call. The close code the engine sends follows from it (see README)."""

    PROVIDER_STOP = "provider_stop"  # the provider's stop message, or its clean close
    DISCONNECTED = "disconnected"  # the socket dropped without a close handshake
    AGENT_RETURNED = "agent_returned"  # the agent returned: queued audio played, then a hang-up
    HANGUP = "hangup"  # call.hangup()
    TRANSFER = "transfer"  # call.transfer()
    AGENT_ERROR = "agent_error"  # the agent raised (1011)
    SHUTDOWN = "shutdown"  # the server is shutting down (1001)
    ENGINE_ERROR = "engine_error"  # a bug in the engine (1011)
    SEND_TIMEOUT = "send_timeout"  # the provider stopped reading (1001)
    IDLE_TIMEOUT = "idle_timeout"  # the provider sent nothing for idle_timeout_s (1001)
    START_TIMEOUT = "start_timeout"  # no start message (1002)
    PROTOCOL_ERROR = "protocol_error"  # the provider broke its protocol (1002, 1003, 1007)
    MESSAGE_TOO_BIG = "message_too_big"  # an inbound message over the size limit (1009)


class ControlKind(enum.StrEnum):
    """How an agent ends a call from its side."""

    HANGUP = "hangup"
    TRANSFER = "transfer"


@attrs.define(slots=True)
class Counters:
    """The call's running counters, updated by its tasks (see :class:`CallStatistics`)."""

    frames_in: int = 0
    frames_out: int = 0
    audio_in_s: float = 0.0
    barge_ins: int = 0
    backchannels: int = 0
    dtmf: int = 0
    speech_segments: int = 0
    unknown_messages: int = 0
    control_messages: int = 0
    control_dropped: int = 0
    pings_sent: int = 0


@attrs.frozen
class CallStatistics:
    """A call's counters at one moment. Fields:

    ``frames_in``: caller-audio messages received; ``frames_out``: messages sent (audio,
    marks, clears, hang-up); ``audio_in_s`` / ``audio_out_s``:
    seconds of caller audio received and of bot audio sent; ``frames_dropped``: caller audio
    frames dropped because the agent fell behind reading the call; ``frames_unread``: caller
    audio nobody was reading (the agent had not read the call for a whole queue's worth of
    audio, or was hanging up); ``events_dropped``: other agent events dropped over their
    bound (the oldest marks first); ``underruns``: gaps at the provider that were the engine's
    fault; ``starved``: gaps because a streaming playback's audio came late;
    ``max_queued_ms``: the most audio queued at the provider; ``barge_ins``;
    ``backchannels`` and ``pauses`` (``barge_in_mode="pause"``: speech over the bot that
    paused it, and of those the ones resumed as backchannels); ``clears``, ``marks``,
    ``mark_echoes``, ``mark_fallbacks`` (marks reached by the deadline, no echo),
    ``dtmf``, ``speech_segments``; ``unknown_messages``: well-formed messages the engine does
    not know; ``control_messages``: messages that carried no audio (DTMF, marks, unknown,
    pings); ``control_dropped``: of those, ignored over the per-call rate limit;
    ``pings_sent``: keepalive pings; ``agent_stuck``: the agent did not exit within its
    cleanup grace after the end.
    """

    frames_in: int = 0
    frames_out: int = 0
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    frames_dropped: int = 0
    frames_unread: int = 0
    events_dropped: int = 0
    underruns: int = 0
    starved: int = 0
    max_queued_ms: float = 0.0
    barge_ins: int = 0
    backchannels: int = 0
    clears: int = 0
    pauses: int = 0
    marks: int = 0
    mark_echoes: int = 0
    mark_fallbacks: int = 0
    dtmf: int = 0
    speech_segments: int = 0
    unknown_messages: int = 0
    control_messages: int = 0
    control_dropped: int = 0
    pings_sent: int = 0
    agent_stuck: bool = False

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CallReport:
    """How a call went: the summary the server logs as one JSON line."""

    call_id: str
    provider: str
    caller: str
    called: str
    duration_s: float
    end_cause: EndCause
    close_code: int | None
    close_reason: str
    teardown_s: float
    stats: CallStatistics
    agent_error: str | None = None
    recording: str | None = None  # the file, when the call was recorded
    recording_error: str | None = None  # why the recording stopped early, if it did

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in attrs.fields(CallReport) if f.name != "stats"}
        d["end_cause"] = str(self.end_cause)
        d.update(self.stats.as_dict())
        return d
