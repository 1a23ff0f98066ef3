"""Vonage Voice API WebSockets: a JSON text hello, then binary L16 both ways: the codec.

The messages, the facts about them and where each came from (the references [N16], [V21],
[T26], [A26] and [P] cited here), the call's uuid in the NCCO headers, and the helpers that
read and write the messages: ``vonage_messages.py``.

Decisions where the documentation is silent:

* **Tolerated, reported as UnknownMessage, never fatal** (ENGINE): binary audio before the
  first message (skipped: ``"binary before metadata"``); a JSON event other than the hello
  before it (``"<event> before metadata"``); a second first message (``"second
  metadata"``); unknown JSON events; ``websocket:notify``
  whose payload has no mark ``name``; a DTMF event without a valid digit; text after the
  first message that is not a JSON object (``"text"``). A UTF-8 BOM is dropped and several
  JSON texts joined in one frame are read one by one.
* **Fatal** (RemoteProtocolError, close codes per ``_common``): a first text that is not
  a JSON object (1007); a ``content-type`` that is not ``audio/l16`` or a rate outside
  [4000, 192000] Hz (1007); an odd-length binary frame (1007: L16 is whole 16-bit samples
  and Vonage's frames are whole, so an odd frame means the stream is not what was agreed).
* Caller audio frames of any even length are accepted (20 ms is what Vonage sends, not a
  condition the engine needs). An empty binary frame is ignored.
* **Outbound audio is whole 20 ms frames**: a PlayAudio longer than 20 ms is split; a
  tail shorter than 20 ms is padded with silence to 20 ms. [V21] says each message must be
  320/640 bytes and 20 ms (C); what Vonage does with a short frame is undocumented (I), so
  we never send one. ``capabilities.frame_ms = 20`` makes the engine's playout pad the
  last chunk of a playback itself (so its ledger counts the padding) and refuse, at
  start-up, a chunk_ms that is not a multiple of 20; the codec's own padding is then a
  no-op, kept as a safety net.
* DTMF: ``capabilities.dtmf_keys`` is ``0-9 * #`` (what [V21] documents). On receive the
  codec still accepts any of the sixteen keys: a key Vonage did report was pressed.
* A Mark is ``{"action":"notify","payload":{"name": <mark>}}`` and its echo's
  ``payload.name`` becomes MarkEchoed. Clear is ``{"action":"clear"}``. Hangup sends
  nothing: the engine closes the socket, which ends the WebSocket leg (REST ``PUT
  /v1/calls/{uuid}`` ``{"action":"hangup"}`` ends the whole call and is outside the codec).
  Transfer raises UnsupportedCommand (transfer is a REST call with an NCCO).
* Commands before the first message raise LocalProtocolError (no call yet), except
  Hangup, which sends nothing in any state.
* **PROVIDER role** (the simulator): ``send(CallStarted)`` writes the first message
  (``connected_event`` chooses the current or the Nexmo-era shape; ``uuid_header`` the
  header that carries the call id; ``headers`` extra NCCO headers); CallerAudio goes out
  as exact 20 ms frames, a remainder held until the next audio (Vonage's frames are all
  20 ms); Dtmf as ``websocket:dtmf`` (``dtmf_shape`` ``"top"`` as documented or
  ``"nested"``), keys A-D are not sent (Vonage documents ``0-9 * #``); MarkEchoed as
  ``websocket:notify``; CallStopped sends nothing (Vonage ends by closing the socket);
  ClearAcknowledged as ``websocket:cleared``; UnknownMessage injects its raw
  text/bytes/JSON. ``receive`` refuses binary audio that is not a whole number of 20 ms
  frames at the call's rate, or odd-length (1007), audio or commands before the first
  message (1002), text that is not a JSON object with an ``action`` string (1007), a
  ``notify`` without a ``payload`` object (1007); a notify payload without a ``name`` and
  unknown actions come back as UnknownMessage.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs

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
from ._common import CallState, dumps, is_binary, loads_object, parse_sample_rate, split_json_texts
from .base import Capabilities, Role, WireMessage
from .skeleton import TableCodec
from .vonage_messages import (
    CLEARED_EVENT, DEFAULT_RATE, DTMF_SHAPES, FRAME_MS, NOTIFY_EVENT, VONAGE_BUFFER_MESSAGES, VONAGE_DIGITS, VONAGE_RATES,
    call_started, dtmf_message, first_message, is_first_message, loads_or_none, looks_like_vonage, mark_name,
    parse_content_type, read_event,
)  # fmt: skip

__all__ = ["VonageCodec", "parse_content_type", "looks_like_vonage", "FRAME_MS", "VONAGE_RATES", "VONAGE_BUFFER_MESSAGES", "DTMF_SHAPES"]

# --- the state machine ----------------------------------------------------------------

_S = CallState

# Message kinds, named after what is on the wire, the same in both roles.
_METADATA, _AUDIO, _EVENT, _STOP = "first message", "caller audio", "text event", "stop"
_PLAY, _NOTIFY, _CLEAR, _HANGUP = "audio frame", "notify", "clear", "hang-up"
_UNKNOWN = "unknown message"
_CALL_KINDS = (_AUDIO, _EVENT, _PLAY, _NOTIFY, _CLEAR, _HANGUP, _UNKNOWN)

_TRANSITIONS: dict[tuple[CallState, str], CallState] = {
    (_S.IDLE, _METADATA): _S.STARTED,
    (_S.IDLE, _STOP): _S.STOPPED,
    (_S.IDLE, _UNKNOWN): _S.IDLE,
    (_S.IDLE, _HANGUP): _S.IDLE,  # hang-up sends nothing; closing the socket works in any state
    **{(_S.STARTED, kind): _S.STARTED for kind in _CALL_KINDS},
    (_S.STARTED, _STOP): _S.STOPPED,
    **{(_S.STOPPED, kind): _S.STOPPED for kind in _CALL_KINDS + (_STOP,)},
}


class VonageCodec(TableCodec):
    """Sans-IO codec for the Vonage Voice API WebSocket (see the module docstring).

    ``default_rate``: the caller audio's rate when the first message's content-type gives
    none (ENGINE), and the rate announced before a CallStarted says otherwise (PROVIDER).
    Inbound and outbound audio always share the call's rate.

    PROVIDER only: ``headers``: extra NCCO endpoint headers to announce in the first
    message (the CallStarted's ``custom`` wins on a clash); ``connected_event``: put
    ``"event": "websocket:connected"`` in the first message (current docs; False gives
    the Nexmo-era shape); ``uuid_header``: the header that carries the call id
    (``"call_uuid"``; ``""`` announces none, as when the NCCO passes no uuid);
    ``dtmf_shape``: ``"top"`` (``{"event":"websocket:dtmf","digit":"5","duration":260}``,
    as documented) or ``"nested"`` (``"dtmf": {"digit": ..., "duration": ...}``);
    ``dtmf_duration_ms``: the ``duration`` announced with each key.
    """

    name = "vonage"
    # A family of its own: JSON text hello, then raw L16 binary frames in BOTH directions.
    # mod_audio_fork (Knowlarity) takes binary in but wants JSON playAudio WAV clips out;
    # json-events (Twilio...) carries base64 audio inside JSON both ways. The writer's
    # framing (20 ms binary frames) and the detection rule differ from both.
    family = "l16-binary"
    engine_sends: ClassVar[Mapping[type, str]] = {PlayAudio: _PLAY, Mark: _NOTIFY, Clear: _CLEAR, Hangup: _HANGUP}
    engine_lacks: ClassVar[Mapping[type, str]] = {
        Transfer: "transfer is not a WebSocket message; transfer the call with the Voice API (PUT /v1/calls/{uuid} with an NCCO)"
    }
    provider_sends: ClassVar[Mapping[type, str]] = {
        CallStarted: _METADATA, CallerAudio: _AUDIO, Dtmf: _EVENT, MarkEchoed: _EVENT, ClearAcknowledged: _EVENT, CallStopped: _STOP,
    }
    provider_lacks: ClassVar[Mapping[type, str]] = {
        Connected: "no separate connected message: the first message (CallStarted) is the hello"
    }
    _transitions = _TRANSITIONS
    _start_kind = _METADATA
    _second_start = "a second first message"
    _before_start = "before the first message"
    capabilities = Capabilities(
        # {"action":"clear"} empties Vonage's playout buffer, acknowledged by websocket:cleared [A26].
        clear=True,
        # {"action":"notify"} is echoed once the audio queued before it has played [A26].
        mark_echo=True,
        # Transfer is a REST call (PUT /v1/calls/{uuid}, action transfer, with an NCCO; S:
        # the Voice API reference, not re-read here), never a socket message.
        transfer=False,
        # Hang-up is closing the socket (or REST); there is no hang-up message [V21].
        hangup_message=False,
        # Keys arrive as websocket:dtmf text events [V21].
        dtmf_events=True,
        # 16 kHz: the rate of Vonage's NCCO examples and what speech engines want; the
        # first message's content-type sets each call's actual rate (both ways).
        inbound_rate=DEFAULT_RATE,
        outbound_rate=DEFAULT_RATE,
        # Each outbound message must be one 20 ms frame [V21].
        chunk_ms=FRAME_MS,
        # Vonage would buffer ~60 s [T26], but everything buffered must be cleared on
        # barge-in and the clear's latency is unknown; notify echoes tell the engine what
        # has played. 100 ms (5 frames) absorbs network jitter and keeps a barge-in short
        # even if a clear were slow or lost.
        lead_ms=100,
        # Vonage documents the keys 0-9, * and # [V21]: the simulator sends only these (the
        # engine's codec still reads any of the sixteen, should Vonage report one).
        dtmf_keys=frozenset(VONAGE_DIGITS),
        clear_ack=True,  # websocket:cleared
        # Every audio message is whole 20 ms frames [V21]: the engine's playout pads a
        # playback's short tail to a frame (its ledger then counts the padding) and refuses
        # a chunk_ms that is not a multiple of 20 at start-up. The codec pads too, as a
        # safety net for a caller that bypasses the playout.
        frame_ms=FRAME_MS,
        # Vonage queues frames and plays them in order (up to 3072 [T26]): no clip is cut.
        one_clip_in_flight=False,
    )

    def __init__(
        self,
        role: Role = Role.ENGINE,
        *,
        default_rate: int | None = None,
        headers: Mapping[str, Any] | None = None,
        connected_event: bool = True,
        uuid_header: str = "call_uuid",
        dtmf_shape: str = "top",
        dtmf_duration_ms: int = 260,
    ) -> None:
        super().__init__(Role(role))
        try:
            self.default_rate = parse_sample_rate(
                default_rate if default_rate is not None else DEFAULT_RATE, DEFAULT_RATE, what="default_rate"
            )
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None
        if headers is not None and not isinstance(headers, Mapping):
            raise ValueError(f"headers must be a mapping of NCCO endpoint headers, got {type(headers).__name__}")
        if not isinstance(uuid_header, str):
            raise ValueError(f"uuid_header must be a string, got {uuid_header!r}")
        if dtmf_shape not in DTMF_SHAPES:
            raise ValueError(f"dtmf_shape must be one of {', '.join(DTMF_SHAPES)}; got {dtmf_shape!r}")
        if isinstance(dtmf_duration_ms, bool) or not isinstance(dtmf_duration_ms, int) or dtmf_duration_ms < 0:
            raise ValueError(f"dtmf_duration_ms must be a non-negative integer, got {dtmf_duration_ms!r}")
        self.headers: dict[str, Any] = dict(headers or {})
        self.connected_event = bool(connected_event)
        self.uuid_header = uuid_header
        self.dtmf_shape = dtmf_shape
        self.dtmf_duration_ms = dtmf_duration_ms
        if self.default_rate != DEFAULT_RATE:
            self.capabilities = attrs.evolve(type(self).capabilities, inbound_rate=self.default_rate, outbound_rate=self.default_rate)

        self._rate = self.default_rate
        self._carry = b""  # PROVIDER: caller audio short of a whole frame
        self.rate_source = ""  # where the call's rate came from, once started
        self.content_type = ""  # the first message's content-type, as sent
        self.call_id = ""  # the call (leg) uuid from the first message's headers, or ""
        self.conversation_uuid = ""

    # --- state ----------------------------------------------------------------------

    @property
    def inbound_rate(self) -> int:
        return self._rate

    @property
    def outbound_rate(self) -> int:
        return self._rate

    @property
    def frame_bytes(self) -> int:
        """Bytes in one 20 ms frame at the call's rate (640 at 16 kHz)."""
        return max(1, self._rate * FRAME_MS // 1000) * 2

    # --- receive --------------------------------------------------------------------

    def _receive_as_engine(self, message: WireMessage) -> list[Event]:
        if is_binary(message):
            assert not isinstance(message, str)
            return self._decode_caller_audio(bytes(message))
        assert isinstance(message, str)
        out: list[Event] = []
        for text in split_json_texts(message.lstrip("\ufeff")):
            if self._state is _S.IDLE:
                out.extend(self._decode_first(text))
            else:
                event = self._decode_event(text)
                if event is not None:
                    out.append(event)
        return out

    def _decode_caller_audio(self, data: bytes) -> list[Event]:
        if not data:
            return []
        if self._state is _S.IDLE:
            # we missed the first message (or Vonage sent audio first): skipped until it comes
            return [UnknownMessage(kind="binary before metadata", raw=b"")]
        if self._state is _S.STOPPED:
            return [UnknownMessage(kind="binary", raw=data)]
        if len(data) % 2:
            raise RemoteProtocolError(
                f"vonage: caller audio frame is {len(data)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD
            )
        self._commit(self._next_state(_AUDIO, local=False))
        return [CallerAudio(pcm=data, sample_rate=self._rate)]

    def _decode_first(self, text: str) -> list[Event]:
        msg = loads_object(text, what="vonage first message")
        if not is_first_message(msg):
            event = msg.get("event")
            name = event if isinstance(event, str) and event else "event"
            return [UnknownMessage(kind=f"{name} before metadata", raw=msg)]
        after = self._next_state(_METADATA, local=False)
        started = self._call_started(msg)
        self._commit(after)
        return [started]

    def _call_started(self, msg: dict) -> CallStarted:
        started, content_type, given, conversation = call_started(msg, self.default_rate)
        self.content_type = content_type
        self.rate_source = "the first message's content-type" if given else "vonage's default (default_rate)"
        self._rate = started.sample_rate
        self.call_id = started.call_id
        self.conversation_uuid = conversation
        return started

    def _decode_event(self, text: str) -> Event | None:
        value = loads_or_none(text)
        if not isinstance(value, dict):
            event: Event | None = UnknownMessage(kind="text", raw=text)
        else:
            event = read_event(value)
            if event is None:
                # websocket:cleared, the clear's acknowledgement: the engine's playout
                # settled what the clear cut when it sent it, so nothing follows from this
                self._commit(self._next_state(_EVENT, local=False))
                return None
        after = self._next_state(_EVENT, local=False)
        if self._state is _S.STOPPED and not isinstance(event, UnknownMessage):
            event = UnknownMessage(kind="after stop", raw=text)
        self._commit(after)
        return event

    def _receive_as_provider(self, message: WireMessage) -> list[Event]:
        if is_binary(message):
            assert not isinstance(message, str)
            data = bytes(message)
            after = self._next_state(_PLAY, local=False)
            if not data:
                return []
            frame = self.frame_bytes
            if len(data) % 2 or len(data) % frame:
                raise RemoteProtocolError(
                    f"vonage: an audio message of {len(data)} bytes is not a whole number of {FRAME_MS} ms frames "
                    f"at {self._rate} Hz ({frame} bytes each); Vonage plays 20 ms frames (check the engine's chunk_ms "
                    "and the codec's rate)",
                    CloseCode.INVALID_PAYLOAD,
                )
            self._commit(after)
            return [PlayAudio(pcm=data, sample_rate=self._rate)]
        assert isinstance(message, str)
        msg = loads_object(message.lstrip("\ufeff"), what="vonage command")
        action = msg.get("action")
        if not isinstance(action, str) or not action:
            raise RemoteProtocolError('vonage: command has no "action" string', CloseCode.INVALID_PAYLOAD)
        result: list[Event]
        if action == "clear":
            after = self._next_state(_CLEAR, local=False)
            result = [Clear()]
        elif action == "notify":
            after = self._next_state(_NOTIFY, local=False)
            payload = msg.get("payload")
            if not isinstance(payload, dict):
                raise RemoteProtocolError('vonage: notify needs a "payload" object', CloseCode.INVALID_PAYLOAD)
            mark = mark_name(payload)
            result = [Mark(mark)] if mark else [UnknownMessage(kind="notify", raw=msg)]
        else:
            after = self._next_state(_UNKNOWN, local=False)
            result = [UnknownMessage(kind=action, raw=msg)]
        self._commit(after)
        return result

    # --- send -----------------------------------------------------------------------

    def _encode_as_engine(self, kind: str, command: Event) -> list[WireMessage]:
        if isinstance(command, PlayAudio):
            if command.sample_rate != self._rate:
                raise LocalProtocolError(f"vonage: this call plays {self._rate} Hz audio, got {command.sample_rate} Hz (resample first)")
            return self.frames(command.pcm)
        if isinstance(command, Mark):
            return [dumps({"action": "notify", "payload": {"name": command.name}})]
        if isinstance(command, Clear):
            return [dumps({"action": "clear"})]
        return []  # hanging up is closing the socket

    def frames(self, pcm: bytes) -> list[WireMessage]:
        """``pcm`` as whole 20 ms frames at the call's rate, the last padded with silence."""
        frame = self.frame_bytes
        chunks = [bytes(pcm[at : at + frame]) for at in range(0, len(pcm), frame)]
        if chunks and len(chunks[-1]) < frame:
            chunks[-1] += bytes(frame - len(chunks[-1]))
        return list[WireMessage](chunks)

    def _encode_as_provider(self, kind: str, event: Event) -> list[WireMessage]:
        if isinstance(event, CallStarted):
            self._rate = event.sample_rate
            self.call_id = event.call_id
            self._carry = b""
            return [first_message(event, self.headers, connected_event=self.connected_event, uuid_header=self.uuid_header)]
        if isinstance(event, CallerAudio):
            if event.sample_rate != self._rate:
                raise LocalProtocolError(f"vonage: this call announced {self._rate} Hz, got {event.sample_rate} Hz caller audio")
            data = self._carry + event.pcm
            frame = self.frame_bytes
            whole = len(data) - len(data) % frame
            self._carry = data[whole:]
            return [data[at : at + frame] for at in range(0, whole, frame)]
        if isinstance(event, Dtmf):
            return [dtmf_message(event.digit, self.dtmf_shape, self.dtmf_duration_ms)] if event.digit in self.capabilities.dtmf_keys else []
        if isinstance(event, MarkEchoed):
            return [dumps({"event": NOTIFY_EVENT, "payload": {"name": event.name}})]
        if isinstance(event, ClearAcknowledged):
            return [dumps({"event": CLEARED_EVENT})]
        assert isinstance(event, CallStopped)
        self._carry = b""
        return []  # Vonage ends the leg by closing the socket
