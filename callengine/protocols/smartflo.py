"""Tata Smartflo (Tata Tele Business) bi-directional audio streaming, also sold as Acefone:
Twilio's event set with Twilio's camelCase names.

Written against Smartflo's "Bi-Directional Audio Streaming Integration Document" (read
December 2026); the ``end`` event and the outbound ``chunk`` counter from Acefone's and
pipecat-acefone's descriptions of the same platform (less sure):

    Smartflo -> us  connected, start, media, dtmf, mark, stop     (streamSid, callSid)
    us -> Smartflo  media (base64 mu-law 8 kHz + chunk), mark, clear

* Audio is mu-law at 8 kHz both ways. Outbound payloads must be a multiple of 160 bytes
  (20 ms) "or the caller hears gaps": the capabilities declare 20 ms frames and the
  playout pads a playback's last chunk with silence to a whole frame.
* Each outbound ``media`` carries an incrementing ``chunk`` number (from 1).
* Marks are echoed when the audio before them has played; ``clear`` empties the queue.
* Hang-up: ``hangup`` (option) ``"close"`` (default) closes the socket; ``"end"`` sends
  Acefone's ``{"event":"end"}`` first, for accounts where that is what ends the call.
  Transfer is not a message.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ._common import b64encode
from .base import Capabilities, Role, WireMessage
from .jsonevents import Kind
from .twilio import TwilioCodec

__all__ = ["SmartfloCodec"]


class SmartfloCodec(TwilioCodec):
    """Tata Smartflo / Acefone. ``hangup``: "close" (the socket) or "end" (send ``end``)."""

    name: ClassVar[str] = "smartflo"
    capabilities = Capabilities(
        clear=True,
        mark_echo=True,
        transfer=False,
        hangup_message=False,
        dtmf_events=True,
        inbound_rate=8000,
        outbound_rate=8000,
        chunk_ms=20,
        lead_ms=100,
        frame_ms=20,
        dtmf_keys=frozenset("0123456789*#"),
    )
    outbound: ClassVar = {"media": Kind.PLAY, "mark": Kind.MARK, "clear": Kind.CLEAR, "end": Kind.HANGUP}
    transfer_hint: ClassVar[str] = "transfer the call in Smartflo's call flow after the stream ends"

    def __init__(self, role: Role = Role.ENGINE, *, hangup: str = "close") -> None:
        super().__init__(role)
        if hangup not in ("close", "end"):
            raise ValueError(f"hangup is 'close' or 'end', not {hangup!r}")
        self.hangup = hangup
        if hangup == "end":
            self.capabilities = attrs.evolve(type(self).capabilities, hangup_message=True)

    def _encode_play(self, pcm: bytes) -> list[WireMessage]:
        self._chunks += 1
        return [self._message(Kind.PLAY, {"media": {"payload": b64encode(self._pcm_to_wire(pcm)), "chunk": self._chunks}})]

    def _encode_hangup(self) -> list[WireMessage]:
        return [self._message(Kind.HANGUP)] if self.hangup == "end" else []
