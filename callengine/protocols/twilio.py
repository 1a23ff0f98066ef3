"""Twilio Media Streams, bidirectional (``<Connect><Stream>``): the shape the rest of the
JSON-event family copies.

Written against Twilio's "Media Streams - WebSocket Messages" reference (2025 text):

    Twilio -> us  connected, start, media, dtmf, mark, stop   (camelCase: streamSid, callSid)
    us -> Twilio  media (base64 mu-law 8 kHz, no header), mark, clear

* Audio is ``audio/x-mulaw`` at 8000 Hz both ways, raw (no WAV header). Twilio's own
  examples and every peer send 20 ms (160-byte) frames; the engine does too.
* Twilio echoes a mark when the audio before it has played, and on ``clear`` it echoes the
  pending marks at once (the engine has settled them as cleared by then; the late echoes
  are ignored).
* ``start.customParameters`` carries the ``<Parameter>`` values of the TwiML; they become
  ``CallStarted.custom``. ``start.accountSid`` and ``callSid`` are what the REST API
  needs to hang up or transfer (``callengine.control``).
* Hang-up and transfer are REST calls, not messages: hang-up here closes the socket, which
  ends the ``<Connect>`` verb (Twilio then runs the rest of the TwiML, if any).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted, FrozenDict
from ._common import as_text, dumps, parse_sample_rate
from .base import Capabilities, Role, WireMessage
from .jsonevents import JsonEventCodec, Kind

__all__ = ["TwilioCodec"]

_ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-alaw": "alaw", "audio/x-l16": "pcm16"}


class TwilioCodec(JsonEventCodec):
    """Twilio Media Streams. No options: the protocol is documented end to end."""

    name: ClassVar[str] = "twilio"
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
        dtmf_keys=frozenset("0123456789*#ABCD"),
    )
    inbound: ClassVar = {"connected": Kind.CONNECTED, "start": Kind.START, "media": Kind.MEDIA, "dtmf": Kind.DTMF, "mark": Kind.MARK_ECHO, "stop": Kind.STOP}
    outbound: ClassVar = {"media": Kind.PLAY, "mark": Kind.MARK, "clear": Kind.CLEAR}
    transfer_hint: ClassVar[str] = "Twilio moves a call with its REST API (update the call with new TwiML)"

    def __init__(self, role: Role = Role.ENGINE) -> None:
        super().__init__(role)
        self.encoding = "mulaw"
        self.account_sid = ""

    def _decode_start(self, msg: dict) -> CallStarted:
        start = msg.get("start") or {}
        if not isinstance(start, dict):
            raise RemoteProtocolError("twilio: start.start must be an object", CloseCode.INVALID_PAYLOAD)
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise RemoteProtocolError("twilio: start.mediaFormat must be an object", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(fmt.get("sampleRate"), 8000, what="twilio start.mediaFormat.sampleRate")
        encoding = _ENCODINGS.get(as_text(fmt.get("encoding")) or "audio/x-mulaw")
        if encoding is None:
            raise RemoteProtocolError(f"twilio: unsupported mediaFormat.encoding {fmt.get('encoding')!r:.40}", CloseCode.INVALID_PAYLOAD)
        self.encoding = encoding
        self._outbound_rate = rate
        custom = start.get("customParameters")
        custom = custom if isinstance(custom, dict) else {}
        self.account_sid = as_text(start.get("accountSid"))
        stream_sid = as_text(msg.get("streamSid")) or as_text(start.get("streamSid"))
        call_sid = as_text(start.get("callSid"))
        return CallStarted(
            call_id=call_sid or stream_sid,
            stream_id=stream_sid,
            caller=as_text(custom.get("from") or custom.get("caller")),
            called=as_text(custom.get("to") or custom.get("called")),
            sample_rate=rate,
            custom=custom,
            raw=msg,
        )

    @property
    def call_ids(self) -> FrozenDict:
        """What Twilio's REST API needs to act on this call."""
        return FrozenDict(account_sid=self.account_sid, call_sid=self.call_sid, stream_sid=self.stream_sid)

    def _encode_connected(self) -> list[WireMessage]:
        return [dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})]

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        custom: dict[str, Any] = dict(event.custom)
        for key, value in (("from", event.caller), ("to", event.called)):
            if value:
                custom.setdefault(key, value)
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": self.stream_sid,
            "callSid": event.call_id,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": event.sample_rate, "channels": 1},
            "customParameters": custom,
        }
        return [self._message(Kind.START, {"start": start}, numbered=True)]
