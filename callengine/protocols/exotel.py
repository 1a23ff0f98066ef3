"""Exotel Voicebot ("AgentStream", bidirectional): the JSON-event family in snake_case.

Written against Exotel's developer docs "AgentStream: WebSocket protocol" and the Voicebot
applet pages (read December 2026) and support article 3000108630:

    Exotel -> us  connected, start, media, dtmf, mark, stop      (stream_sid, call_sid)
    us -> Exotel  media (base64 PCM16), mark, clear                (stream_sid)

* Audio is "raw/slin": 16-bit little-endian PCM, 8 kHz by default, 16 or 24 kHz when the
  stream URL asks (``?sample-rate=16000``); the start's ``media_format.sample_rate`` says
  which, and the engine answers at the same rate.
* Every outbound payload must be a multiple of 320 bytes, at least 3.2 KB and at most
  100 KB ("smaller chunks risk audio distortion, non-compliant sizes create gaps"). The
  engine's default chunk is therefore 200 ms, which is 3.2 KB at 8 kHz, 6.4 KB at 16 kHz
  and 9.6 KB at 24 kHz, all multiples of 320; the capabilities declare the rule
  (``frame_ms`` 20, ``min_chunk_bytes`` 3200) and the playout pads a playback's last chunk to them
  with silence.
* Marks are echoed when the audio before them has played (confirmed). Whether a ``clear``
  echoes pending marks is not documented; the engine settles them as cleared itself.
* There is no hang-up or transfer message: closing the socket ends the Voicebot applet and
  the call flow goes on to the next applet (a Hangup or Connect applet does the rest).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted
from ._common import as_text, parse_sample_rate
from .base import Capabilities, Role, WireMessage
from .jsonevents import JsonEventCodec, Kind

__all__ = ["ExotelCodec"]

_RATES = (8000, 16000, 24000)


class ExotelCodec(JsonEventCodec):
    """Exotel Voicebot. ``sample_rate`` (PROVIDER): the rate the simulated stream announces."""

    name: ClassVar[str] = "exotel"
    capabilities = Capabilities(
        clear=True,
        mark_echo=True,
        transfer=False,
        hangup_message=False,
        dtmf_events=True,
        inbound_rate=8000,
        outbound_rate=8000,
        chunk_ms=200,
        lead_ms=400,
        frame_ms=20,
        min_chunk_bytes=3200,
        max_chunk_bytes=100_000,
        dtmf_keys=frozenset("0123456789*#"),
    )
    inbound: ClassVar = {"connected": Kind.CONNECTED, "start": Kind.START, "media": Kind.MEDIA, "dtmf": Kind.DTMF, "mark": Kind.MARK_ECHO, "stop": Kind.STOP}
    outbound: ClassVar = {"media": Kind.PLAY, "mark": Kind.MARK, "clear": Kind.CLEAR}
    sid_key: ClassVar[str] = "stream_sid"
    transfer_hint: ClassVar[str] = "hang up (close the stream) and let a Connect applet after the Voicebot applet transfer the call"
    timestamp_at_end: ClassVar[bool] = True
    seq_key: ClassVar[str] = "sequence_number"

    def __init__(self, role: Role = Role.ENGINE) -> None:
        super().__init__(role)
        self.account_sid = ""

    def _decode_start(self, msg: dict) -> CallStarted:
        start = msg.get("start") or {}
        if not isinstance(start, dict):
            raise RemoteProtocolError("exotel: start.start must be an object", CloseCode.INVALID_PAYLOAD)
        fmt = start.get("media_format") or {}
        if not isinstance(fmt, dict):
            raise RemoteProtocolError("exotel: start.media_format must be an object", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(fmt.get("sample_rate"), 8000, what="exotel start.media_format.sample_rate")
        self._outbound_rate = rate  # Exotel plays back at the stream's rate
        custom = start.get("custom_parameters")
        custom = custom if isinstance(custom, dict) else {}
        self.account_sid = as_text(start.get("account_sid"))
        stream_sid = as_text(msg.get("stream_sid")) or as_text(start.get("stream_sid"))
        call_sid = as_text(start.get("call_sid"))
        return CallStarted(
            call_id=call_sid or stream_sid,
            stream_id=stream_sid,
            caller=as_text(start.get("from")),
            called=as_text(start.get("to")),
            sample_rate=rate,
            direction=as_text(start.get("direction")),
            custom=custom,
            raw=msg,
        )

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        if event.sample_rate not in _RATES:
            raise ValueError(f"exotel streams at {', '.join(map(str, _RATES))} Hz, not {event.sample_rate}")
        self._outbound_rate = event.sample_rate
        start = {
            "stream_sid": self.stream_sid,
            "call_sid": event.call_id,
            "account_sid": "simulated",
            "from": event.caller,
            "to": event.called,
            "custom_parameters": dict(event.custom),
            "media_format": {"encoding": "audio/x-raw", "sample_rate": str(event.sample_rate), "bit_rate": "16"},
        }
        return [self._message(Kind.START, {"start": start}, numbered=True)]

    def _media_fields(self, pcm: bytes) -> dict[str, Any]:
        fields = super()._media_fields(pcm)
        del fields["track"]  # Exotel's media carries chunk, timestamp and payload only
        return fields

    def _encode_dtmf(self, digit: str) -> list[WireMessage]:
        return [self._message(Kind.DTMF, {"dtmf": {"digit": digit, "duration": "100"}}, numbered=True)]

    def _encode_stop(self, reason: str) -> list[WireMessage]:
        return [self._message(Kind.STOP, {"stop": {"call_sid": self.call_sid, "account_sid": "simulated", "reason": reason or "callended"}}, numbered=True)]
