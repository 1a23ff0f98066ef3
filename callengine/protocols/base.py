"""The sans-IO codec interface every provider implements.

A codec never does I/O and never imports trio. It has two roles:

* ``Role.ENGINE`` (what the server runs): ``receive(wire message) -> [ProviderEvent]`` and
  ``send(Command) -> [wire message]``.
* ``Role.PROVIDER`` (what the simulated provider runs): ``receive(wire message) -> [Command]``
  and ``send(ProviderEvent) -> [wire message]``.

A wire message is ``str`` (a WebSocket text frame) or ``bytes`` (a binary frame).

Errors: malformed input raises :class:`~callengine.errors.RemoteProtocolError` carrying a
close-code hint; misuse from our side raises :class:`~callengine.errors.LocalProtocolError`.
Unknown but well-formed messages come back as :class:`~callengine.events.UnknownMessage`.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Sequence, Union

import attrs

from ..events import Event

__all__ = ["Role", "WireMessage", "Capabilities", "Codec"]

WireMessage = Union[str, bytes]


class Role(enum.Enum):
    ENGINE = "engine"
    PROVIDER = "provider"


@attrs.frozen
class Capabilities:
    """What a provider can do, and the engine's defaults for it.

    ``clear``: the provider has a command that flushes its playout buffer.
    ``mark_echo``: the provider echoes marks when the audio before them has played.
    ``transfer``: the provider can transfer a call from a message on the socket.
    ``hangup_message``: hang-up is a message; if False, hang-up is closing the socket.
    ``dtmf_events``: the stream carries DTMF as events (otherwise keys are in-band tones).
    ``inbound_rate`` / ``outbound_rate``: default wire sample rates (the start message may
    change the inbound one; see ``Codec.inbound_rate``).
    ``chunk_ms``: default duration of one outbound audio message.
    ``lead_ms``: default bound on audio sent ahead of the provider's playout clock.
    ``dtmf_keys``: the keys the provider's DTMF events can carry (empty where it has no
    events). Awaaz's serializer carries only 0-9, * and #: a caller pressing A-D reaches
    nobody. Where keys are in-band tones every key of the keypad can be heard.
    ``frame_ms``: every outbound audio message must be a whole number of frames of this
    many ms (0: any length). The engine's playout pads a short tail with silence to the
    next frame, and ``chunk_ms`` must then be a whole number of frames.
    ``min_chunk_bytes``: the smallest outbound audio message the provider plays cleanly
    (Exotel: 3.2 KB), in PCM16 bytes at ``outbound_rate``; a shorter last chunk of a
    playback rides on the chunk before it, or is padded with silence where it is alone.
    ``max_chunk_bytes``: the largest (Exotel: 100 KB); 0: no limit the engine can reach.
    ``clear_ack``: the provider answers a clear with an acknowledgement (Plivo, Vonage),
    which the simulated provider sends too; the engine reads it and waits for nothing.
    ``one_clip_in_flight``: the provider may cut the clip playing for a new one, so the
    engine's playout sends an audio message only once everything sent before it has played
    by the ledger, sends a playback as one message (up to ``chunk_ms``, which is then the
    clip cap) and never flushes part of a streaming playback early.
    ``start_delay_ms``: how long after an audio message arrives the provider starts playing
    it when nothing is playing (an application that plays each clip as a file takes a
    moment to start it). The engine's ledger counts it, so a clip of one clip in flight
    goes out only once the one before has really ended, and marks fall when the audio does.
    """

    clear: bool
    mark_echo: bool
    transfer: bool
    hangup_message: bool
    dtmf_events: bool
    inbound_rate: int
    outbound_rate: int
    chunk_ms: int
    lead_ms: int
    dtmf_keys: frozenset[str] = frozenset()
    frame_ms: int = 0
    one_clip_in_flight: bool = False
    min_chunk_bytes: int = 0
    max_chunk_bytes: int = 0
    clear_ack: bool = False
    start_delay_ms: float = 0.0


class Codec:
    """Base class of provider codecs. Subclasses set ``name`` and ``capabilities``."""

    name: ClassVar[str] = ""
    #: the protocol family: "json-events" (Awaaz...) or "mod_audio_fork" (Knowlarity,
    #: legacy Awaaz): metadata text, binary PCM in, playAudio clips out
    family: ClassVar[str] = ""
    capabilities: Capabilities  # a class default; an instance may shadow it when options change it

    def __init__(self, role: Role = Role.ENGINE) -> None:
        self.role = role

    # --- state the engine reads -----------------------------------------------------

    @property
    def started(self) -> bool:
        """True once the call's start metadata has been received (ENGINE) or sent (PROVIDER)."""
        raise NotImplementedError

    @property
    def inbound_rate(self) -> int:
        """Sample rate of the caller's audio on the wire (known for sure once started)."""
        return self.capabilities.inbound_rate

    @property
    def outbound_rate(self) -> int:
        """Sample rate the provider expects for audio we send."""
        return self.capabilities.outbound_rate

    # --- the two directions ---------------------------------------------------------

    def receive(self, message: WireMessage) -> Sequence[Event]:
        raise NotImplementedError

    def send(self, event: Event) -> Sequence[WireMessage]:
        raise NotImplementedError
