"""Telnyx media streaming, bidirectional in RTP mode: the JSON-event family in snake_case,
with the RTP payload (no RTP header) base64-encoded in ``media``.

Written against Telnyx's "Stream call media over WebSocket" AsyncAPI reference and the
"Media Streaming" guide (read December 2026), and Pipecat's Telnyx serializer:

    Telnyx -> us  connected, start, media, dtmf, mark, error, stop   (stream_id)
    us -> Telnyx  media, mark, clear                                   (no stream id)

* Bidirectional audio needs ``stream_bidirectional_mode: "rtp"`` on the call (the
  default, mp3, plays files at one message per second and is not supported here). The
  codec is the call's ``stream_bidirectional_codec``: PCMU (default), PCMA or L16; the
  start's ``media_format.encoding`` says which, and the engine answers in it. L16 is
  RTP's, big-endian (RFC 3551); the option ``l16_byte_order="little"`` is for an account
  that sends it little-endian.
* An outbound chunk may hold 20 ms to 30 s of audio.
* Frame order is "not guaranteed" on Telnyx's side: the engine takes frames in arrival
  order (reordering by ``media.chunk`` is left for when a live call shows it is needed).
* ``error`` events (``payload.code``/``title``/``detail``) are reported and counted as
  unknown messages, never fatal.
* Hang-up and transfer are Call Control commands (REST, ``call_control_id``): hang-up here
  closes the socket, which stops the stream, not the call.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted
from ._common import as_text, dumps, parse_sample_rate
from .base import Capabilities, Role, WireMessage
from .jsonevents import JsonEventCodec, Kind

__all__ = ["TelnyxCodec"]

_ENCODINGS = {"PCMU": "mulaw", "PCMA": "alaw", "L16": "pcm16be"}


class TelnyxCodec(JsonEventCodec):
    """Telnyx (RTP mode). ``l16_byte_order``: "big" (RTP's, default) or "little".
    PROVIDER option ``encoding``: what the simulated stream announces (PCMU, PCMA, L16)."""

    name: ClassVar[str] = "telnyx"
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
        min_chunk_bytes=320,
        dtmf_keys=frozenset("0123456789*#ABCD"),
    )
    inbound: ClassVar = {"connected": Kind.CONNECTED, "start": Kind.START, "media": Kind.MEDIA, "dtmf": Kind.DTMF, "mark": Kind.MARK_ECHO, "stop": Kind.STOP}
    outbound: ClassVar = {"media": Kind.PLAY, "mark": Kind.MARK, "clear": Kind.CLEAR}
    sid_key: ClassVar[str] = "stream_id"
    sid_on_outbound: ClassVar[bool] = False
    seq_key: ClassVar[str] = "sequence_number"
    transfer_hint: ClassVar[str] = "Telnyx transfers a call with the Call Control transfer command"

    def __init__(self, role: Role = Role.ENGINE, *, l16_byte_order: str = "big", encoding: str = "PCMU") -> None:
        super().__init__(role)
        if l16_byte_order not in ("big", "little"):
            raise ValueError(f"l16_byte_order is 'big' or 'little', not {l16_byte_order!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(_ENCODINGS)}, not {encoding!r}")
        self.l16_byte_order = l16_byte_order
        self.wire_encoding = encoding
        self.encoding = self._kind(encoding)
        self.call_control_id = ""

    def _kind(self, wire: str) -> str:
        kind = _ENCODINGS[wire]
        return "pcm16" if kind == "pcm16be" and self.l16_byte_order == "little" else kind

    def _decode_start(self, msg: dict) -> CallStarted:
        start = msg.get("start") or {}
        if not isinstance(start, dict):
            raise RemoteProtocolError("telnyx: start.start must be an object", CloseCode.INVALID_PAYLOAD)
        fmt = start.get("media_format") or {}
        if not isinstance(fmt, dict):
            raise RemoteProtocolError("telnyx: start.media_format must be an object", CloseCode.INVALID_PAYLOAD)
        wire = (as_text(fmt.get("encoding")) or "PCMU").upper()
        if wire not in _ENCODINGS:
            raise RemoteProtocolError(
                f"telnyx: media_format.encoding {wire!r:.20} is not supported (use PCMU, PCMA or L16 with stream_bidirectional_mode rtp)",
                CloseCode.INVALID_PAYLOAD,
            )
        self.encoding = self._kind(wire)
        rate = parse_sample_rate(fmt.get("sample_rate"), 8000, what="telnyx start.media_format.sample_rate")
        self._outbound_rate = rate
        self.call_control_id = as_text(start.get("call_control_id"))
        custom = start.get("custom_parameters")
        custom = custom if isinstance(custom, dict) else {}
        stream_id = as_text(msg.get("stream_id")) or as_text(start.get("stream_id"))
        return CallStarted(
            call_id=self.call_control_id or stream_id,
            stream_id=stream_id,
            caller=as_text(start.get("from")),
            called=as_text(start.get("to")),
            sample_rate=rate,
            custom=custom,
            raw=msg,
        )

    def _digit(self, msg: dict) -> Any:
        for place in ("dtmf", "payload"):
            body = msg.get(place)
            if isinstance(body, dict) and "digit" in body:
                return body["digit"]
        return msg.get("digit")

    def _encode_connected(self) -> list[WireMessage]:
        return [dumps({"event": "connected", "version": "1.0.0"})]

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        self._outbound_rate = event.sample_rate
        start = {
            "user_id": "simulated",
            "call_control_id": event.call_id,
            "call_session_id": event.call_id,
            "from": event.caller,
            "to": event.called,
            "custom_parameters": dict(event.custom),
            "media_format": {"encoding": self.wire_encoding, "sample_rate": event.sample_rate, "channels": 1},
        }
        return [self._message(Kind.START, {"start": start}, numbered=True)]

    def _encode_stop(self, reason: str) -> list[WireMessage]:
        return [self._message(Kind.STOP, {"stop": {"user_id": "simulated", "call_control_id": self.call_sid}}, numbered=True)]
