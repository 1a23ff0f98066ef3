"""The JSON-event family: Twilio Media Streams and the providers whose streams follow it
(Exotel, Plivo and Vobiz, Tata Smartflo, Telnyx, Awaaz). Sans-IO, no trio.

Every one of them is JSON text frames with an event name (``event``), a start message with
the call's ids and audio format, base64 audio in ``media`` messages, DTMF and mark echoes,
and a stop; the engine answers with audio, marks and a clear. What differs is names:
which events exist, where the stream id and the payload sit, how audio is encoded. So a
provider here is a subclass that sets its message table and overrides the few hooks where
its messages differ; the role dispatch, the state machine, the tolerance for sloppy peers
and the base64/JSON/audio handling are written once, below.

Tolerated as the providers' own connectors tolerate them, reported as ``UnknownMessage``
(the engine counts them and logs each kind once), never fatal: audio, DTMF or a mark echo
before ``start`` (skipped); a second ``start`` (ignored); ``media`` without a payload;
base64 with line breaks (decoded); JSON sent in a binary frame and a UTF-8 BOM (read as
text); a DTMF digit the provider does not carry; any message after ``stop``. A binary
frame that is not JSON text is not the protocol (1003); text that is not a JSON object
with an event name is 1007.

Commands before ``start`` raise LocalProtocolError (there is no stream to address).
Commands after ``stop`` are still encoded: the writer may race the reader, and the
transport, not the codec, knows whether the socket is still open.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Mapping

from ..audio.g711 import alaw2lin, lin2alaw, lin2ulaw, ulaw2lin
from ..errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ..events import (
    CallerAudio,
    CallStarted,
    CallStopped,
    Clear,
    ClearAcknowledged,
    Connected,
    Dtmf,
    Event,
    Hangup,
    Mark,
    MarkEchoed,
    PlayAudio,
    Transfer,
    UnknownMessage,
)
from ._common import CallState, as_text, b64decode, b64encode, dumps, loads_object, parse_digit, raw_message
from .base import Role, WireMessage
from .skeleton import TableCodec

__all__ = ["JsonEventCodec", "Kind", "ENCODINGS", "text_of_binary", "raw_message"]


class Kind:
    """Message kinds, the same for every provider of the family (the tables map wire
    event names onto them)."""

    CONNECTED = "connected"
    START = "start"
    MEDIA = "media"
    DTMF = "dtmf"
    MARK_ECHO = "mark echo"
    STOP = "stop"
    ACK = "acknowledgement"  # e.g. Plivo's clearedAudio: known, and nothing to do
    UNKNOWN = "unknown event"
    PLAY = "media (agent audio)"
    MARK = "mark"
    CLEAR = "clear"
    HANGUP = "hang-up"


_S = CallState
_CALL_KINDS = (Kind.CONNECTED, Kind.MEDIA, Kind.DTMF, Kind.MARK_ECHO, Kind.ACK, Kind.UNKNOWN, Kind.PLAY, Kind.MARK, Kind.CLEAR, Kind.HANGUP)
# (state, kind) -> next state; a missing pair is a protocol violation
_TRANSITIONS: dict[tuple[CallState, str], CallState] = {
    (_S.IDLE, Kind.CONNECTED): _S.IDLE,
    (_S.IDLE, Kind.ACK): _S.IDLE,
    (_S.IDLE, Kind.UNKNOWN): _S.IDLE,
    (_S.IDLE, Kind.START): _S.STARTED,
    (_S.IDLE, Kind.STOP): _S.STOPPED,
    **{(_S.STARTED, kind): _S.STARTED for kind in _CALL_KINDS},
    (_S.STARTED, Kind.STOP): _S.STOPPED,
    **{(_S.STOPPED, kind): _S.STOPPED for kind in _CALL_KINDS + (Kind.STOP,)},
}

#: payload encodings: name -> (wire bytes -> PCM16, PCM16 -> wire bytes, wire bytes per sample)
def _swap16(data: bytes) -> bytes:
    """Big-endian 16-bit samples (RTP's L16) to little-endian and back."""
    swapped = bytearray(data)
    swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
    return bytes(swapped)


ENCODINGS = {
    "pcm16": (bytes, bytes, 2),
    "pcm16be": (_swap16, _swap16, 2),
    "mulaw": (ulaw2lin, lin2ulaw, 1),
    "alaw": (alaw2lin, lin2alaw, 1),
}


class JsonEventCodec(TableCodec):
    """The shared codec of the JSON-event family. A provider sets:

    ``inbound``: wire event name -> :class:`Kind`, for what the provider sends;
    ``outbound``: wire event name -> :class:`Kind`, for what the engine sends;
    ``event_key`` (``"event"``) and ``sid_key`` (where the stream id sits at the top level);
    ``encoding``: the default payload encoding (``ENCODINGS``), which a start may change;
    ``capabilities.dtmf_keys``: the DTMF keys the provider carries (``dtmf_wire_keys``, if
    set, is what the codec passes either way instead);
    ``transfer_hint``: why transfer is not a message, for the error an agent sees.

    and overrides the hooks whose default (the Twilio shape) does not fit: reading the
    start (``_decode_start``), where the payload sits (``_payload``), the DTMF digit
    (``_digit``), the mark name (``_mark_name``), the agent's audio and marks as a provider
    reads them (``_decode_play``, ``_decode_mark``), and the ``_encode_*`` methods for what
    goes on the wire.
    """

    family: ClassVar[str] = "json-events"
    inbound: ClassVar[Mapping[str, str]]
    outbound: ClassVar[Mapping[str, str]]
    event_key: ClassVar[str] = "event"
    sid_key: ClassVar[str] = "streamSid"
    encoding: str = "pcm16"
    transfer_hint: ClassVar[str] = "transfer the call through the provider's API"
    #: whether the engine's messages name the stream (Telnyx's do not)
    sid_on_outbound: ClassVar[bool] = True
    #: how the provider numbers its own messages: the key, and whether the number is text
    seq_key: ClassVar[str] = "sequenceNumber"
    seq_text: ClassVar[bool] = True
    #: the simulated provider's media ``timestamp``: the chunk's start (Twilio) or end (Awaaz)
    timestamp_at_end: ClassVar[bool] = False
    #: the DTMF keys read and sent, where they are not ``capabilities.dtmf_keys`` (Awaaz
    #: passes all sixteen, though its own serializer carries only twelve)
    dtmf_wire_keys: ClassVar[frozenset[str] | None] = None
    #: PROVIDER: refuse audio that breaks the provider's chunk rules (frames, smallest and
    #: largest message), as the provider would not play it cleanly
    strict_chunks: bool = True

    engine_sends: ClassVar[Mapping[type, str]] = {PlayAudio: Kind.PLAY, Mark: Kind.MARK, Clear: Kind.CLEAR, Hangup: Kind.HANGUP}
    provider_sends: ClassVar[Mapping[type, str]] = {
        Connected: Kind.CONNECTED, CallStarted: Kind.START, CallerAudio: Kind.MEDIA,
        Dtmf: Kind.DTMF, MarkEchoed: Kind.MARK_ECHO, CallStopped: Kind.STOP, ClearAcknowledged: Kind.ACK,
    }

    _transitions = _TRANSITIONS
    _start_kind = Kind.START
    _second_start = "a second start"
    _before_start = "before start"

    def __init__(self, role: Role = Role.ENGINE) -> None:
        super().__init__(role)
        self.stream_sid = ""
        self.call_sid = ""
        self._inbound_rate = self.capabilities.inbound_rate
        self._outbound_rate = self.capabilities.outbound_rate
        self._sequence = 0  # outgoing messages that carry a sequence number
        self._chunks = 0  # outgoing media messages
        self._samples = 0  # outgoing audio, in samples (for timestamps)
        # the wire name each kind is sent under: the first the table lists for it (later
        # ones are aliases that are only read, e.g. Plivo's older "played")
        self._names: dict[str, str] = {}
        for wire, kind in (self.outbound if self.role is Role.ENGINE else self.inbound).items():
            self._names.setdefault(kind, wire)

    # --- state the engine reads ---------------------------------------------------------

    @property
    def inbound_rate(self) -> int:
        return self._inbound_rate

    @property
    def outbound_rate(self) -> int:
        return self._outbound_rate

    # --- receive ------------------------------------------------------------------------

    def _parse(self, message: WireMessage) -> tuple[str, dict]:
        """The event name and the message (JSON text, or JSON text in a binary frame)."""
        if not isinstance(message, str):
            text = text_of_binary(bytes(message))
            if text is None:
                raise RemoteProtocolError(f"{self.name}: binary frames are not part of the protocol", CloseCode.UNSUPPORTED_DATA)
            message = text
        msg = loads_object(message.lstrip("\ufeff"), what=f"{self.name} message")
        event = msg.get(self.event_key)
        if not isinstance(event, str) or not event:
            raise RemoteProtocolError(f'{self.name}: message has no "{self.event_key}" string', CloseCode.INVALID_PAYLOAD)
        return event, msg

    def _receive_as_engine(self, message: WireMessage) -> list[Event]:
        event, msg = self._parse(message)
        kind = self.inbound.get(event, Kind.UNKNOWN)
        was = self._state
        # Skipped, not fatal: the providers' own connectors carry on past these.
        if was is CallState.IDLE and kind in (Kind.MEDIA, Kind.DTMF, Kind.MARK_ECHO):
            return [UnknownMessage(kind=f"{event} before start", raw=msg)]
        if was is CallState.STARTED and kind == Kind.START:
            return [UnknownMessage(kind="second start", raw=msg)]
        after = self._next_state(kind, local=False)
        if was is CallState.STOPPED:
            return [UnknownMessage(kind=event, raw=msg)]
        result: list[Event]
        if kind == Kind.CONNECTED:
            result = [Connected(raw=msg)]
        elif kind == Kind.START:
            started = self._decode_start(msg)
            self.stream_sid, self.call_sid, self._inbound_rate = started.stream_id, started.call_id, started.sample_rate
            result = [started]
        elif kind == Kind.MEDIA:
            result = self._decode_media(msg)
        elif kind == Kind.DTMF:
            result = [self._decode_dtmf(msg)]
        elif kind == Kind.MARK_ECHO:
            name = self._mark_name(msg)
            result = [MarkEchoed(name)] if name is not None else [UnknownMessage(kind=event, raw=msg)]
        elif kind == Kind.STOP:
            result = [CallStopped(reason=self._stop_reason(msg), raw=msg)]
        elif kind == Kind.ACK:
            result = []
        else:
            result = [UnknownMessage(kind=event, raw=msg)]
        self._commit(after)
        return result

    def _decode_media(self, msg: dict) -> list[Event]:
        payload = self._payload(msg)
        if payload is None:
            return [UnknownMessage(kind="media without payload", raw=msg)]
        data = b64decode(payload, what=f"{self.name} media.payload", lenient=True)
        pcm = self._wire_to_pcm(data)
        if not pcm:
            return []
        return [CallerAudio(pcm=pcm, sample_rate=self._inbound_rate)]

    def _decode_dtmf(self, msg: dict) -> Event:
        digit = self._digit(msg)
        digit = parse_digit(digit) if not isinstance(digit, dict) else None
        if digit is not None and digit in self._dtmf_keys:
            return Dtmf(digit)
        return UnknownMessage(kind="dtmf", raw=msg)

    @property
    def _dtmf_keys(self) -> frozenset[str]:
        return self.capabilities.dtmf_keys if self.dtmf_wire_keys is None else self.dtmf_wire_keys

    def _receive_as_provider(self, message: WireMessage) -> list[Event]:
        event, msg = self._parse(message)
        kind = self.outbound.get(event, Kind.UNKNOWN)
        after = self._next_state(kind, local=False)
        sid = msg.get(self.sid_key)
        if kind != Kind.UNKNOWN and sid is not None and as_text(sid) != self.stream_sid:
            raise RemoteProtocolError(f"{self.name}: {event} for stream {sid!r:.60}, this stream is {self.stream_sid!r}", CloseCode.PROTOCOL_ERROR)
        result: list[Event]
        if kind == Kind.PLAY:
            result = self._decode_play(msg)
        elif kind == Kind.MARK:
            result = self._decode_mark(msg)
        elif kind == Kind.CLEAR:
            result = [Clear()]
        elif kind == Kind.HANGUP:
            result = [Hangup()]
        else:
            result = [UnknownMessage(kind=event, raw=msg)]
        self._commit(after)
        return result

    def _decode_play(self, msg: dict) -> list[Event]:
        payload = self._payload(msg)
        if payload is None:
            raise RemoteProtocolError(f"{self.name}: {msg.get(self.event_key)} without a payload", CloseCode.INVALID_PAYLOAD)
        pcm = self._wire_to_pcm(b64decode(payload, what=f"{self.name} media.payload"))
        if self.strict_chunks:
            self._check_chunk(len(pcm))
        return [PlayAudio(pcm=pcm, sample_rate=self._outbound_rate)] if pcm else []

    def _check_chunk(self, pcm_bytes: int) -> None:
        """The provider's published chunk rules (``capabilities``), as the simulator
        enforces them: what breaks one is refused, not played."""
        caps, rate = self.capabilities, self._outbound_rate
        frame = 2 * rate * caps.frame_ms // 1000
        problem = ""
        if frame and pcm_bytes % frame:
            problem = f"not a whole number of {caps.frame_ms} ms frames"
        elif pcm_bytes < caps.min_chunk_bytes:
            problem = f"below the smallest message ({caps.min_chunk_bytes} bytes)"
        elif caps.max_chunk_bytes and pcm_bytes > caps.max_chunk_bytes:
            problem = f"above the largest message ({caps.max_chunk_bytes} bytes)"
        if problem:
            raise RemoteProtocolError(
                f"{self.name}: an audio message of {pcm_bytes} bytes (PCM16 at {rate} Hz) is {problem}",
                CloseCode.INVALID_PAYLOAD,
            )

    def _decode_mark(self, msg: dict) -> list[Event]:
        name = self._mark_name(msg)
        if name is None:
            raise RemoteProtocolError(f"{self.name}: mark without a name", CloseCode.INVALID_PAYLOAD)
        return [Mark(name)]

    # --- hooks: where the provider's fields sit (the Twilio shape) ------------------------

    def _decode_start(self, msg: dict) -> CallStarted:
        raise NotImplementedError

    def _payload(self, msg: dict) -> Any:
        media = msg.get("media")
        return media.get("payload") if isinstance(media, dict) else None

    def _digit(self, msg: dict) -> Any:
        body = msg.get("dtmf")
        return body.get("digit") if isinstance(body, dict) else msg.get("digit")

    def _mark_name(self, msg: dict) -> str | None:
        """The mark's name, or None where the message names none."""
        body = msg.get("mark")
        name = body.get("name") if isinstance(body, dict) else body
        return name if isinstance(name, str) and name else None

    def _stop_reason(self, msg: dict) -> str:
        stop = msg.get("stop")
        reason = stop.get("reason") if isinstance(stop, dict) else None
        return reason if isinstance(reason, str) else ""

    # --- audio --------------------------------------------------------------------------

    def _wire_to_pcm(self, data: bytes) -> bytes:
        decode, _, width = ENCODINGS[self.encoding]
        if width == 2 and len(data) % 2:
            raise RemoteProtocolError(f"{self.name}: media payload is {len(data)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD)
        return decode(data)

    def _pcm_to_wire(self, pcm: bytes) -> bytes:
        return ENCODINGS[self.encoding][1](pcm)

    # --- send ---------------------------------------------------------------------------

    def _lacks(self, event: Event) -> str | None:
        if self.role is Role.ENGINE and isinstance(event, Transfer):
            return f"transfer is not a WebSocket message; {self.transfer_hint}"
        return super()._lacks(event)

    def _encode_as_engine(self, kind: str, command: Event) -> list[WireMessage]:
        if isinstance(command, PlayAudio):
            if command.sample_rate != self._outbound_rate:
                raise LocalProtocolError(f"{self.name} plays {self._outbound_rate} Hz audio, got {command.sample_rate} Hz (resample first)")
            return self._encode_play(command.pcm) if command.pcm else []
        if isinstance(command, Mark):
            return self._encode_mark(command.name)
        if isinstance(command, Clear):
            return self._encode_clear()
        return self._encode_hangup()

    def _encode_as_provider(self, kind: str, event: Event) -> list[WireMessage]:
        if isinstance(event, Connected):
            return self._encode_connected()
        if isinstance(event, CallStarted):
            self.stream_sid = event.stream_id or f"MZ{uuid.uuid4().hex}"
            self.call_sid = event.call_id
            self._inbound_rate = event.sample_rate
            return self._encode_start(event)
        if isinstance(event, CallerAudio):
            if event.sample_rate != self._inbound_rate:
                raise LocalProtocolError(f"{self.name}: this stream announced {self._inbound_rate} Hz, got {event.sample_rate} Hz caller audio")
            return self._encode_caller_audio(event.pcm) if event.pcm else []
        if isinstance(event, Dtmf):
            return self._encode_dtmf(event.digit) if event.digit in self._dtmf_keys else []
        if isinstance(event, MarkEchoed):
            return self._encode_mark_echo(event.name)
        if isinstance(event, ClearAcknowledged):
            return self._encode_clear_ack()
        assert isinstance(event, CallStopped)
        return self._encode_stop(event.reason)

    # --- encoders (the Twilio shape; a provider overrides what differs) ---------------------

    def _wire(self, kind: str) -> str:
        return self._names[kind]

    def _message(self, kind: str, body: Mapping[str, Any] | None = None, *, numbered: bool = False) -> str:
        message: dict[str, Any] = {self.event_key: self._wire(kind)}
        if numbered:
            self._sequence += 1
            message[self.seq_key] = str(self._sequence) if self.seq_text else self._sequence
        if self.sid_on_outbound or self.role is Role.PROVIDER:
            message[self.sid_key] = self.stream_sid
        if body:
            message.update(body)
        return dumps(message)

    def _encode_play(self, pcm: bytes) -> list[WireMessage]:
        return [self._message(Kind.PLAY, {"media": {"payload": b64encode(self._pcm_to_wire(pcm))}})]

    def _encode_mark(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK, {"mark": {"name": name}})]

    def _encode_clear(self) -> list[WireMessage]:
        return [self._message(Kind.CLEAR)]

    def _encode_hangup(self) -> list[WireMessage]:
        return []  # hanging up is closing the socket (or the provider's API)

    def _encode_connected(self) -> list[WireMessage]:
        return [dumps({self.event_key: self._wire(Kind.CONNECTED)})]

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        raise NotImplementedError

    def _media_fields(self, pcm: bytes) -> dict[str, Any]:
        self._chunks += 1
        start = self._samples
        self._samples += len(pcm) // 2
        at = self._samples if self.timestamp_at_end else start
        return {
            "track": "inbound",
            "chunk": str(self._chunks),
            "timestamp": str(at * 1000 // self._inbound_rate),
            "payload": b64encode(self._pcm_to_wire(pcm)),
        }

    def _encode_caller_audio(self, pcm: bytes) -> list[WireMessage]:
        return [self._message(Kind.MEDIA, {"media": self._media_fields(pcm)}, numbered=True)]

    def _encode_dtmf(self, digit: str) -> list[WireMessage]:
        return [self._message(Kind.DTMF, {"dtmf": {"track": "inbound_track", "digit": digit}}, numbered=True)]

    def _encode_mark_echo(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK_ECHO, {"mark": {"name": name}}, numbered=True)]

    def _encode_clear_ack(self) -> list[WireMessage]:
        return []  # the family's default: no acknowledgement (Plivo has one)

    def _encode_stop(self, reason: str) -> list[WireMessage]:
        return [self._message(Kind.STOP, {"stop": {"callSid": self.call_sid, **({"reason": reason} if reason else {})}}, numbered=True)]


def text_of_binary(data: bytes) -> str | None:
    """A binary frame that holds a JSON object as UTF-8 text, else None (peers send JSON in
    binary frames, and that is read as if it were text)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    return text if stripped.startswith("{") else None
