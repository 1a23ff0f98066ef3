"""Plivo Audio Streams (bidirectional ``<Stream>``), and Vobiz, which speaks the same
protocol.

Written against Plivo's "Audio Streaming: Stream Event Protocol", "Checkpoint event",
"PlayAudio event" and "ClearAudio event" pages (read December 2026) and Vobiz's stream
events page:

    Plivo -> us  start, media, dtmf, playedStream, clearedAudio   (streamId, callId)
    us -> Plivo  playAudio, checkpoint, clearAudio                   (streamId)

* The audio format is the ``<Stream contentType>``: ``audio/x-l16;rate=8000`` (the
  default), ``audio/x-l16;rate=16000`` or ``audio/x-mulaw;rate=8000``; the start's
  ``mediaFormat`` says which, and ``playAudio`` answers in the same format, declaring
  ``contentType`` and ``sampleRate`` in every message.
* There is no ``connected``: ``start`` comes first. There is no documented ``stop`` either
  (Vobiz says so outright): the call ends when the socket closes. A ``stop``, if one comes,
  is read.
* A ``checkpoint`` is answered with ``playedStream`` carrying its top-level ``name`` only
  if the audio queued before it actually played (an older article calls the event
  ``played``; both are read). After a ``clearAudio`` no echo comes for the cleared
  checkpoints, and the engine does not wait for one: it settles them as cleared at once.
* ``clearedAudio`` acknowledges a clear; nothing follows from it.
* ``extra_headers`` (``"k1=v1;k2=v2"``, from the ``<Stream extraHeaders>``) become
  ``CallStarted.custom``.
* Hang-up and transfer are REST calls on the call's ``callId``: hang-up here closes the
  socket, which ends the ``<Stream>`` (with ``keepCallAlive`` the XML after it runs).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted
from ._common import as_text, b64encode, parse_sample_rate
from .base import Capabilities, Role, WireMessage
from .jsonevents import JsonEventCodec, Kind

__all__ = ["PlivoCodec", "VobizCodec"]

_CONTENT_TYPES = {"audio/x-l16": "pcm16", "audio/x-mulaw": "mulaw"}
_WIRE_TYPES = {v: k for k, v in _CONTENT_TYPES.items()}


class PlivoCodec(JsonEventCodec):
    """Plivo Audio Streams. PROVIDER option ``content_type``: the format the simulated
    stream announces (``"audio/x-l16"`` or ``"audio/x-mulaw"``)."""

    name: ClassVar[str] = "plivo"
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
        dtmf_keys=frozenset("0123456789*#"),
        clear_ack=True,  # clearedAudio
    )
    inbound: ClassVar = {
        "start": Kind.START,
        "media": Kind.MEDIA,
        "dtmf": Kind.DTMF,
        "playedStream": Kind.MARK_ECHO,
        "played": Kind.MARK_ECHO,
        "clearedAudio": Kind.ACK,
        "stop": Kind.STOP,
    }
    outbound: ClassVar = {"playAudio": Kind.PLAY, "checkpoint": Kind.MARK, "clearAudio": Kind.CLEAR}
    sid_key: ClassVar[str] = "streamId"
    seq_text: ClassVar[bool] = False
    transfer_hint: ClassVar[str] = "Plivo transfers a call with its REST API (Transfer a call, aleg_url)"

    def __init__(self, role: Role = Role.ENGINE, *, content_type: str = "audio/x-l16") -> None:
        super().__init__(role)
        if content_type not in _CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {', '.join(_CONTENT_TYPES)}, not {content_type!r}")
        self.encoding = _CONTENT_TYPES[content_type]
        self.account_id = ""

    def _decode_start(self, msg: dict) -> CallStarted:
        start = msg.get("start") or {}
        if not isinstance(start, dict):
            raise RemoteProtocolError(f"{self.name}: start.start must be an object", CloseCode.INVALID_PAYLOAD)
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise RemoteProtocolError(f"{self.name}: start.mediaFormat must be an object", CloseCode.INVALID_PAYLOAD)
        encoding = as_text(fmt.get("encoding")) or "audio/x-l16"
        kind = _CONTENT_TYPES.get(encoding.split(";")[0].strip().lower())
        if kind is None:
            raise RemoteProtocolError(f"{self.name}: unsupported mediaFormat.encoding {encoding!r:.40}", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(fmt.get("sampleRate"), 8000, what=f"{self.name} start.mediaFormat.sampleRate")
        self.encoding = kind
        self._outbound_rate = rate
        self.account_id = as_text(start.get("accountId"))
        custom = _extra_headers(msg.get("extra_headers") or start.get("extra_headers"))
        stream_id = as_text(start.get("streamId")) or as_text(msg.get("streamId"))
        call_id = as_text(start.get("callId"))
        return CallStarted(
            call_id=call_id or stream_id,
            stream_id=stream_id,
            caller=as_text(start.get("from") or custom.get("from")),
            called=as_text(start.get("to") or custom.get("to")),
            sample_rate=rate,
            custom=custom,
            raw=msg,
        )

    def _mark_name(self, msg: dict) -> str | None:
        name = msg.get("name")
        return (name or None) if isinstance(name, str) else super()._mark_name(msg)

    def _encode_play(self, pcm: bytes) -> list[WireMessage]:
        media = {"contentType": _WIRE_TYPES[self.encoding], "sampleRate": self._outbound_rate, "payload": b64encode(self._pcm_to_wire(pcm))}
        return [self._message(Kind.PLAY, {"media": media})]

    def _encode_mark(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK, {"name": name})]

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        self._outbound_rate = event.sample_rate
        start = {
            "callId": event.call_id,
            "streamId": self.stream_sid,
            "accountId": "MA" + "0" * 18,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": _WIRE_TYPES[self.encoding], "sampleRate": event.sample_rate},
        }
        custom = dict(event.custom)
        for key, value in (("from", event.caller), ("to", event.called)):
            if value:
                custom.setdefault(key, value)
        body: dict[str, Any] = {"start": start}
        if custom:
            body["extra_headers"] = ";".join(f"{k}={v}" for k, v in custom.items())
        return [self._message(Kind.START, body, numbered=True)]

    def _encode_mark_echo(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK_ECHO, {"name": name}, numbered=True)]

    def _encode_dtmf(self, digit: str) -> list[WireMessage]:
        return [self._message(Kind.DTMF, {"dtmf": {"digit": digit}}, numbered=True)]

    def _encode_clear_ack(self) -> list[WireMessage]:
        return [self._message(Kind.ACK, numbered=True)]

    def _encode_stop(self, reason: str) -> list[WireMessage]:
        return []  # Plivo sends no stop: the simulated provider just closes the socket


class VobizCodec(PlivoCodec):
    """Vobiz: Plivo's protocol; 20 ms frames, no stop (the socket just closes), and
    ``playedStream`` only for a checkpoint whose audio finished."""

    name: ClassVar[str] = "vobiz"
    transfer_hint: ClassVar[str] = "Vobiz transfers a call with its Plivo-compatible REST API"


def _extra_headers(value: Any) -> dict[str, str]:
    """``"k1=v1;k2=v2"`` -> {"k1": "v1", "k2": "v2"} (a dict is taken as it is)."""
    if isinstance(value, dict):
        return {str(k): as_text(v) for k, v in value.items()}
    if not isinstance(value, str):
        return {}
    out = {}
    for part in value.split(";"):
        key, sep, val = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = val.strip()
    return out
