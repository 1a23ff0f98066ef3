"""The wiring of one call's parts, from its start message: the writer, the barge-in
control, the agent's port, the analyzer (VAD, in-band keys) and the reader, each handed what
it needs of the others. :class:`~.session.CallSession` owns their lifecycle; this module only
builds them, so that the session reads as the lifecycle it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Awaitable, Callable

import attrs
import trio

from ..audio.dtmf import DtmfDetector
from ..audio.resample import StreamResampler
from ..audio.vad import EnergyVad, SpeechSegmenter, VoiceActivityDetector, make_vad
from ..events import CallStarted
from .causes import ControlKind
from .analyzer import Analyzer
from .bargein import BargeInControl
from .port import AgentPort
from .reader import Reader, TokenBucket
from .writer import Writer

if TYPE_CHECKING:
    from .session import CallSession, RemoteControl

__all__ = ["CallParts", "wire_call", "make_call_vad"]

log = logging.getLogger("callengine.call")


@attrs.define
class CallParts:
    writer: Writer
    control: BargeInControl
    port: AgentPort
    analyzer: Analyzer
    reader: Reader


def wire_call(session: "CallSession", started: CallStarted, detector: VoiceActivityDetector, wire_rate: int, label: str) -> CallParts:
    """Build the call's parts for ``session`` (its config, codec, transport, playout, inbox,
    counters and callbacks) once its start message has come."""
    cfg = session.config
    inband = cfg.inband_dtmf if cfg.inband_dtmf is not None else not session.caps.dtmf_events
    writer = Writer(
        session.transport,
        session.codec,
        session.playout,
        label=label,
        counters=session.counters,
        send_timeout_s=cfg.send_timeout_s,
        keepalive_s=cfg.keepalive_s,
        end=session._end,
        ended=lambda: session.state.finalized,
        on_closed=session._on_transport_closed,
        remote_control=_bind_remote(session._remote_control, started),
        remote_timeout_s=cfg.hangup_timeout_s,
        recording=session.recording,
    )
    control = BargeInControl(
        writer.request, session.inbox, session.counters, label, session._on_bargein_latency, pause_max_s=cfg.pause_max_s
    )
    port = AgentPort(
        state=session.state,
        playout=session.playout,
        writer=writer,
        inbox=session.inbox,
        codec=session.codec,
        provider=session.provider,
        inbound_resampler=StreamResampler(wire_rate, cfg.agent_rate, low_latency=True),
        statistics=session.statistics,
        cleanup_grace_s=cfg.cleanup_grace_s,
        barge_in=cfg.barge_in,
        barge_in_mode=cfg.barge_in_mode,
        control=control,
        remote_transfer=session._remote_control is not None,
    )
    analyzer = Analyzer(
        SpeechSegmenter(detector),
        DtmfDetector(sample_rate=wire_rate) if inband else None,
        wire_rate=wire_rate,
        min_speech_s=cfg.min_speech_ms / 1000,
        inbox=session.inbox,
        counters=session.counters,
        bot_audible=port.bot_audible,
        barge_in_enabled=lambda: port.barge_in,
        control=control,
        barge_in_mode=lambda: port.barge_in_mode,
        backchannel_max_s=cfg.backchannel_max_ms / 1000,
        resume_s=cfg.backchannel_resume_ms / 1000,
    )
    reader = Reader(
        session.transport,
        session.codec,
        label=label,
        pending=list(session._pending),
        pending_events=session._after_start,
        idle_timeout_s=cfg.idle_timeout_s,
        inbox=session.inbox,
        port=port,
        analyzer=analyzer,
        playout=session.playout,
        counters=session.counters,
        control_rate=TokenBucket(cfg.max_control_per_s, 2 * cfg.max_control_per_s, trio.current_time()),
        end=session._end,
        on_closed=session._on_transport_closed,
        recording=session.recording,
    )
    return CallParts(writer, control, port, analyzer, reader)


def _bind_remote(remote: "RemoteControl | None", started: CallStarted) -> "Callable[[ControlKind, str], Awaitable[str]] | None":
    """The server's remote control (hang-up, transfer through the provider's API) for this
    call: the writer names the kind and the target, the start message is bound here."""
    if remote is None:
        return None

    async def run(kind: ControlKind, target: str) -> str:
        return await remote(kind, target, started)

    return run


async def make_call_vad(name: str, wire_rate: int, label: str) -> VoiceActivityDetector:
    """The configured detector; the optional ones are built off the event loop (a Silero
    model takes tens of ms). A detector that cannot be built falls back to the energy VAD
    with a warning: a missing extra never costs a call."""
    try:
        if name == "energy" or not _real_clock():
            # on a test clock a thread would let virtual time run ahead of the call
            return make_vad(name, sample_rate=wire_rate)
        return await trio.to_thread.run_sync(lambda: make_vad(name, sample_rate=wire_rate))
    except (ImportError, ValueError) as exc:
        log.warning("call %s: VAD %r unavailable at %d Hz (%s); using the energy VAD", label, name, wire_rate, exc)
        return EnergyVad(wire_rate)


def _real_clock() -> bool:
    return type(trio.lowlevel.current_clock()).__name__ == "SystemClock"
