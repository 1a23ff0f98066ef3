"""Per-call settings. Defaults that depend on the provider are None here and resolved from
the codec's :class:`~callengine.protocols.base.Capabilities`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import attrs

if TYPE_CHECKING:
    from ..protocols.base import Capabilities

__all__ = ["CallConfig", "Pacing", "CALL_SETTINGS", "BARGE_IN_MODES"]


def _positive_or_none(instance: Any, attribute: "attrs.Attribute[Any]", value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _non_negative_or_none(instance: Any, attribute: "attrs.Attribute[Any]", value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value}")


def _positive(instance: Any, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _barge_in_mode(instance: Any, attribute: "attrs.Attribute[Any]", value: str) -> None:
    if value not in BARGE_IN_MODES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(BARGE_IN_MODES)}, got {value!r}")


#: ``CallConfig.barge_in_mode`` values (``call.barge_in_mode``)
BARGE_IN_MODES = ("cut", "pause")


@attrs.frozen
class Pacing:
    """The outbound chunk and lead of one call, in seconds, once the provider is known."""

    chunk_s: float
    lead_s: float
    start_delay_s: float = 0.0


@attrs.frozen
class CallConfig:
    """How the engine runs a call.

    Audio and pacing:
      ``agent_rate``: sample rate of the audio the agent receives and, by default, plays.
      ``lead_ms``: most audio the engine keeps queued at the provider ahead of its playout
      clock (None: the provider's default, 100 ms Awaaz, 400 ms Knowlarity). Smaller is
      faster barge-in on providers without a clear, larger is safer against network jitter.
      ``chunk_ms``: duration of one outbound audio message (None: provider default). A
      whole number of frames where the provider takes only whole frames (Awaaz's 20 ms with
      ``whole_frames`` on); at most the clip cap where it takes one clip at a time
      (Knowlarity ``clips="utterance"``).
      ``start_delay_ms``: how long the provider takes to start playing audio that arrives
      while nothing plays (None: the provider's default, 0 except Knowlarity's utterance
      clips, 100). The playout counts it: with one clip in flight the next clip waits for
      it, so a provider that cuts the playing clip for a new one never cuts audio.
    Barge-in:
      ``barge_in``: clear playback when the caller talks over the bot (the agent can change
      it per call with ``call.barge_in``). ``min_speech_ms``: speech needed before it counts.
      ``barge_in_mode``: "cut" (clear at once: any speech of ``min_speech_ms`` is an
      interruption) or "pause" (backchannel-aware: pause, keeping the audio, then resume
      from the position heard if the speech stops within ``backchannel_max_ms``, else cut);
      the agent can change it per call with ``call.barge_in_mode``.
      ``backchannel_max_ms``: in "pause", speech that lasts this long is an interruption
      (800: "haan", "hmm", "ok" last 0.3-0.7 s, plus what the VAD adds at its edges).
      ``backchannel_resume_ms``: in "pause", quiet after the speech before the bot resumes
      (300: the VAD's own hang-over, so a resume comes with SpeechEnded and a caller who
      goes on after a breath is not talked over).
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
      ``keepalive_s``: how often the engine pings a provider whose transport supports it
      (the server's WebSocket), so that one that stopped reading is found within
      ``send_timeout_s`` + ``keepalive_s`` (None: no pings; a full send buffer still counts).
      ``max_control_per_s``: DTMF and mark messages a provider may send per second (twice
      that in a burst); more are ignored and counted, so a flood cannot swamp the agent.
      ``close_timeout_s``: bound on the WebSocket close handshake.
      ``cleanup_grace_s``: shielded time given to the agent's cleanup (``call.cleanup_scope()``)
      and after which an agent that has not exited is reported as stuck.
    Recording:
      ``record_dir``: write each call as a stereo WAV there (caller left, what the caller
      heard right; :mod:`callengine.call.recording`); None: no recordings.
    """

    agent_rate: int = 16000
    lead_ms: float | None = attrs.field(default=None, validator=_positive_or_none)
    chunk_ms: float | None = attrs.field(default=None, validator=_positive_or_none)
    start_delay_ms: float | None = attrs.field(default=None, validator=_non_negative_or_none)
    barge_in: bool = True
    min_speech_ms: float = 200.0
    barge_in_mode: str = attrs.field(default="cut", validator=_barge_in_mode)
    backchannel_max_ms: float = attrs.field(default=800.0, validator=_positive)
    backchannel_resume_ms: float = attrs.field(default=300.0, validator=_positive)
    vad: str = "energy"
    inband_dtmf: bool | None = None
    inbound_queue_ms: float = 2000.0
    mark_grace_s: float = 1.0
    start_timeout_s: float = 10.0
    idle_timeout_s: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    hangup_timeout_s: float = 5.0
    send_timeout_s: float | None = attrs.field(default=5.0, validator=_positive_or_none)
    keepalive_s: float | None = attrs.field(default=1.0, validator=_positive_or_none)
    max_control_per_s: float = attrs.field(default=50.0, validator=_positive)
    close_timeout_s: float = 2.0
    cleanup_grace_s: float = 2.0
    record_dir: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.lead_ms is not None and self.chunk_ms is not None and self.lead_ms < self.chunk_ms:
            raise ValueError(_lead_below_chunk(self.lead_ms, self.chunk_ms, ""))
        if self.barge_in_mode == "pause" and self.backchannel_max_ms <= self.min_speech_ms:
            raise ValueError(
                f"backchannel_max_ms ({self.backchannel_max_ms:g}) must be above min_speech_ms "
                f"({self.min_speech_ms:g}) with barge_in_mode=pause: speech that pauses the bot is "
                f"judged a backchannel only while it is shorter than backchannel_max_ms"
            )

    @property
    def pause_max_s(self) -> float:
        """The longest a pause can wait for the caller's speech to resolve it (then it is
        cut): the longest backchannel, its quiet, and a second of slack."""
        return (self.backchannel_max_ms + self.backchannel_resume_ms) / 1000 + 1.0

    def evolve(self, **changes: Any) -> "CallConfig":
        return attrs.evolve(self, **changes)

    def with_settings(self, settings: "Mapping[str, Any]", where: str = "") -> "CallConfig":
        """This config with ``settings`` (field name -> value, as a route or the command line
        gives them) applied, each checked against the field's type: numbers for durations,
        booleans for switches, None (or "none"/"auto") where the field allows it. Raises
        ValueError naming the setting and ``where`` it came from."""
        if not settings:
            return self
        changes = {name: _coerce(name, value, where) for name, value in settings.items()}
        try:
            return attrs.evolve(self, **changes)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None

    def pacing(self, capabilities: "Capabilities", provider: str = "") -> Pacing:
        """The chunk and lead for a provider with ``capabilities`` (this config's values,
        else the provider's defaults). Raises ValueError if the lead cannot hold one chunk:
        the writer could then never send, and the call would be silent."""
        chunk_ms = self.chunk_ms if self.chunk_ms is not None else capabilities.chunk_ms
        lead_ms = self.lead_ms if self.lead_ms is not None else capabilities.lead_ms
        if lead_ms < chunk_ms:
            raise ValueError(_lead_below_chunk(lead_ms, chunk_ms, provider))
        where = f" on {provider}" if provider else ""
        frame = capabilities.frame_ms
        if frame and (round(chunk_ms / frame) < 1 or abs(chunk_ms / frame - round(chunk_ms / frame)) > 1e-9):
            # a provider that drops what is not whole frames would lose every chunk
            raise ValueError(
                f"chunk_ms ({chunk_ms:g}){where} is not a whole number of the provider's {frame} ms frames, "
                f"which it takes every media message in (on Awaaz, the codec option whole_frames): use a "
                f"multiple of {frame} for --chunk-ms, or turn whole_frames off where the provider has it"
            )
        smallest = capabilities.min_chunk_bytes
        if smallest and 2 * chunk_ms * capabilities.outbound_rate / 1000 < smallest:
            raise ValueError(
                f"chunk_ms ({chunk_ms:g}){where} is below the provider's smallest message ({smallest} bytes, "
                f"{500 * smallest / capabilities.outbound_rate:g} ms at {capabilities.outbound_rate} Hz): raise --chunk-ms"
            )
        largest = capabilities.max_chunk_bytes
        if largest and 2 * chunk_ms * capabilities.outbound_rate / 1000 > largest - smallest:
            # a playback's short tail rides on its last chunk: that must fit too
            raise ValueError(
                f"chunk_ms ({chunk_ms:g}){where} is above the provider's largest message ({largest} bytes, "
                f"less {smallest} for a short tail merged into the last chunk: "
                f"{500 * (largest - smallest) / capabilities.outbound_rate:g} ms at {capabilities.outbound_rate} Hz): "
                f"lower --chunk-ms"
            )
        if capabilities.one_clip_in_flight and chunk_ms > capabilities.chunk_ms:
            raise ValueError(
                f"chunk_ms ({chunk_ms:g}){where} is above the clip cap ({capabilities.chunk_ms} ms, the codec "
                f"option clip_ms) of clips=utterance, where each clip must go out as one message: lower "
                f"--chunk-ms or raise clip_ms"
            )
        start_delay_ms = self.start_delay_ms if self.start_delay_ms is not None else capabilities.start_delay_ms
        return Pacing(chunk_s=chunk_ms / 1000, lead_s=lead_ms / 1000, start_delay_s=start_delay_ms / 1000)


def _lead_below_chunk(lead_ms: float, chunk_ms: float, provider: str) -> str:
    where = f" on {provider}" if provider else ""
    return (
        f"lead_ms ({lead_ms:g}) is below chunk_ms ({chunk_ms:g}){where}: the engine keeps at most "
        f"lead_ms of audio queued at the provider, so a chunk would never fit. Raise --lead-ms "
        f"to at least {chunk_ms:g} or lower --chunk-ms"
    )


#: the names :meth:`CallConfig.with_settings` accepts, with their declared types
CALL_SETTINGS: dict[str, str] = {f.name: str(f.type) for f in attrs.fields(CallConfig)}


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = CALL_SETTINGS.get(name)
    at = f" in {where}" if where else ""
    if kind is None:
        raise ValueError(f"unknown call setting {name!r}{at}; choose from {', '.join(CALL_SETTINGS)}")
    optional = "None" in kind
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "auto"))):
        return None
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
    elif kind.startswith("float"):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind.startswith("str"):
        if isinstance(value, str):
            return value
    wanted = {"bool": "on or off", "float": "a number", "int": "an integer", "str": "text"}[kind.split()[0]]
    raise ValueError(f"call setting {name}={value!r}{at}: must be {wanted}{' or none' if optional else ''}")
