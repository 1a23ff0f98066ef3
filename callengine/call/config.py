"""Per-call settings. Defaults that depend on the provider are None here and resolved from
the codec's :class:`~callengine.protocols.base.Capabilities`."""

from __future__ import annotations

import attrs

__all__ = ["CallConfig"]


def _positive_or_none(instance, attribute, value) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class CallConfig:
    """How the engine runs a call.

    Audio and pacing:
      ``agent_rate``: sample rate of the audio the agent receives and, by default, plays.
      ``lead_ms``: most audio the engine keeps queued at the provider ahead of its playout
      clock (None: the provider's default, 100 ms Awaaz, 400 ms Knowlarity). Smaller is
      faster barge-in on providers without a clear, larger is safer against network jitter.
      ``chunk_ms``: duration of one outbound audio message (None: provider default).
    Barge-in:
      ``barge_in``: clear playback when the caller talks over the bot (the agent can change
      it per call with ``call.barge_in``). ``min_speech_ms``: speech needed before it counts.
      ``vad``: "energy" (default, numpy only), "webrtc" or "silero" (optional extras).
    DTMF:
      ``inband_dtmf``: detect key tones in the caller's audio; None means on exactly where the
      provider's stream carries no DTMF events (Knowlarity).
    Flow control and deadlines (seconds):
      ``inbound_queue_ms``: audio backlog kept for a slow agent before the oldest is dropped.
      ``mark_grace_s``: how long after its expected time an echoed mark is reached anyway.
      ``start_timeout_s``: wait for the provider's start message.
      ``idle_timeout_s``: end a call whose provider sends nothing for this long (None: never).
      ``hangup_timeout_s``: wait for the provider to close after a hang-up or transfer message.
      ``send_timeout_s``: end a call whose provider stops reading: a message the connection
      has not taken within this long ends the call ("send_timeout", close 1001; None: wait
      for ever). Without it the writer would wait on a full socket for ever, and the call,
      and whatever its agent keeps queueing, would never be released.
      ``close_timeout_s``: bound on the WebSocket close handshake.
      ``cleanup_grace_s``: shielded time given to the agent's cleanup (``call.cleanup_scope()``)
      and after which an agent that has not exited is reported as stuck.
    """

    agent_rate: int = 16000
    lead_ms: float | None = attrs.field(default=None, validator=_positive_or_none)
    chunk_ms: float | None = attrs.field(default=None, validator=_positive_or_none)
    barge_in: bool = True
    min_speech_ms: float = 200.0
    vad: str = "energy"
    inband_dtmf: bool | None = None
    inbound_queue_ms: float = 2000.0
    mark_grace_s: float = 1.0
    start_timeout_s: float = 10.0
    idle_timeout_s: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    hangup_timeout_s: float = 5.0
    send_timeout_s: float | None = attrs.field(default=5.0, validator=_positive_or_none)
    close_timeout_s: float = 2.0
    cleanup_grace_s: float = 2.0

    def evolve(self, **changes) -> "CallConfig":
        return attrs.evolve(self, **changes)
