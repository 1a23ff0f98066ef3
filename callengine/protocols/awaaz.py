"""Awaaz AI media streams: JSON text frames with an ``event`` key, snake_case fields.

Wire format (see protocols.md section 1)::

    Awaaz -> us   connected (optional, before or after start), start, media, dtmf, mark, stop
    us -> Awaaz   media (payload = base64 of a WAV file per chunk), mark, clear

Decisions where the documentation is unsure (each one is a constructor option or a
documented rule, so a live test can change it cheaply):

* ``connected`` may come before or after ``start`` (and may repeat); each one is reported
  as :class:`Connected`. In the PROVIDER role ``connected_first`` picks the order.
* Only ``media.payload`` is confirmed for inbound audio. ``sequence_number``, ``chunk`` and
  ``timestamp`` are not checked on receive; we send them the way Awaaz's own connector
  does: all three start at 1 / 20 and count media messages only, ``timestamp`` is the
  stream position in ms at the *end* of the chunk (a string), and none of them reset on
  ``clear``.
* Each outbound payload carries whole 20 ms frames (320 bytes at 8 kHz), as the connector
  sends them: whether Awaaz plays a shorter buffer is unknown (its JS connector takes only
  320-byte ones). The engine's playout pads a playback's tail with silence
  (``capabilities.frame_ms``); ``whole_frames=False`` sends short tails as they are.
* Each outbound payload is a complete WAV file (44-byte header + PCM) because Awaaz's
  mod_audio_fork skips 44 bytes of every payload. ``wav_wrap=False`` sends raw PCM for
  accounts where that is confirmed not to be needed.
* Tolerated as Awaaz's own connector tolerates them, reported as ``UnknownMessage`` (the
  engine counts them and logs a few), never fatal: audio, dtmf or a mark echo before
  ``start`` (skipped until it comes); a second ``start`` (ignored); a ``media`` message
  without ``media`` or ``payload``; base64 with line breaks (decoded); JSON sent in a
  binary frame and a UTF-8 BOM (read as text). A binary frame that is not JSON text is
  still not the protocol (1003).
* A ``dtmf`` whose digit is missing or not one of ``0-9 * # A-D`` is reported as
  ``UnknownMessage(kind="dtmf")`` rather than killing a live call: a key press is not worth
  a dropped call, and Pipecat's Awaaz serializer also skips invalid digits. Lower-case
  ``a-d`` and integer digits are accepted.
* A ``mark`` echo reads ``mark.name`` (the shape is inferred), a string ``mark`` (seen from
  Twilio-style peers), or a top-level ``name``; with none it is
  ``UnknownMessage(kind="mark")`` (the ledger's deadline then settles the mark).
* ``stop`` may arrive before ``start`` (a call that ended during set-up) and is reported.
  After ``stop`` every further well-formed message is reported as ``UnknownMessage`` with
  the message's event name as ``kind``: the call is over, nothing is decoded.
* Hang-up is closing the socket (no message exists): ``send(Hangup())`` returns ``[]``.
  Transfer has no socket form at all: :class:`UnsupportedCommand`.
* Commands before ``start`` raise LocalProtocolError (there is no stream to address).
  Commands after ``stop`` are still encoded: the writer may race the reader, and the
  transport, not the codec, knows whether the socket is still open.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping, Sequence

import attrs

from ..audio.wav import WavError, build_wav, parse_wav
from ..errors import CloseCode, LocalProtocolError, RemoteProtocolError, UnsupportedCommand
from ..events import (
    DTMF_DIGITS,
    CallerAudio,
    CallStarted,
    CallStopped,
    Clear,
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
from ._common import (
    CallState,
    CallStateMachine,
    as_text,
    b64decode,
    b64encode,
    check_role_and_type,
    dumps,
    first_text,
    is_binary,
    loads_object,
    parse_sample_rate,
)
from .base import Capabilities, Codec, Role, WireMessage

__all__ = ["AwaazCodec"]

_RATE = 8000
_FRAME_MS = 20  # the connector's frame: 320 bytes of PCM at 8 kHz


_State = CallState


# Message kinds, named after what is on the wire, the same in both roles.
_CONNECTED, _START, _MEDIA, _DTMF, _MARK_ECHO, _STOP, _UNKNOWN = (
    "connected", "start", "media", "dtmf", "mark echo", "stop", "unknown event",
)
_PLAY, _MARK, _CLEAR, _HANGUP = "media (agent audio)", "mark", "clear", "hang-up"

_CALL_KINDS = (_CONNECTED, _MEDIA, _DTMF, _MARK_ECHO, _UNKNOWN, _PLAY, _MARK, _CLEAR, _HANGUP)

# The whole state machine: (state, kind) -> next state. A pair that is missing is a
# protocol violation: RemoteProtocolError when the peer sent it, LocalProtocolError when
# we tried to send it.
_TRANSITIONS: dict[tuple[_State, str], _State] = {
    (_State.IDLE, _CONNECTED): _State.IDLE,
    (_State.IDLE, _UNKNOWN): _State.IDLE,
    (_State.IDLE, _START): _State.STARTED,
    (_State.IDLE, _STOP): _State.STOPPED,
    **{(_State.STARTED, kind): _State.STARTED for kind in _CALL_KINDS},
    (_State.STARTED, _STOP): _State.STOPPED,
    **{(_State.STOPPED, kind): _State.STOPPED for kind in _CALL_KINDS + (_STOP,)},
}

# What an ENGINE reads from ``event``; anything else is reported as UnknownMessage.
_INBOUND_KINDS = {
    "connected": _CONNECTED,
    "start": _START,
    "media": _MEDIA,
    "dtmf": _DTMF,
    "mark": _MARK_ECHO,
    "stop": _STOP,
}
# What a PROVIDER reads from ``event``.
_OUTBOUND_KINDS = {"media": _PLAY, "mark": _MARK, "clear": _CLEAR}

_CALLER_KEYS = ("from", "From", "caller", "caller_number", "from_number")
_CALLED_KEYS = ("to", "To", "called", "called_number", "to_number")
_DIRECTION_KEYS = ("direction", "call_type", "Direction")


class AwaazCodec(CallStateMachine, Codec):
    """Sans-IO codec for Awaaz AI's JSON-event media stream.

    ``chunk_ms``: ENGINE only: the engine's default duration of one outbound ``media``
    message (``capabilities.chunk_ms``). The engine cuts the agent's audio into chunks
    (``CallConfig.chunk_ms`` overrides this); each PlayAudio is sent as one message.
    ``wav_wrap``: ENGINE: wrap every outbound chunk in a 44-byte WAV header (Awaaz's
    connector needs it). PROVIDER: True (default) reads both forms (a payload starting
    ``RIFF....WAVE`` is parsed as WAV); False plays every payload as raw PCM, as an account
    that takes raw PCM would, so a header is heard as noise. The PROVIDER sends each
    CallerAudio as one ``media`` message, as given.
    ``stream_sid``: ENGINE: the stream id to use if ``start`` carries none. PROVIDER: the
    stream id to announce when ``CallStarted.stream_id`` is empty (default: a random
    ``"MZ..."`` id).
    ``connected_first``: PROVIDER only: send ``connected`` before ``start`` (True) or
    after it (False).
    ``mark_shape``: send marks (ENGINE) and echo them (PROVIDER) as ``{"mark": {"name":
    ...}}`` ("object", the Twilio convention) or ``{"mark": "..."}`` ("string", seen from
    Twilio-style peers). The ENGINE reads echoes in both shapes; the PROVIDER reads only its
    own and ignores a mark in the other, as a peer that parses one shape would.
    ``mark_echo``: whether this account echoes marks. True: the engine sends each mark and
    waits for its echo (``mark_grace_s`` at most). False: no mark goes on the wire and the
    engine's playout clock reaches it on time, with no wait for an echo that never comes.
    ``whole_frames``: ENGINE only: every outbound ``media`` carries a whole number of 20 ms
    frames (320 bytes at 8 kHz), as Awaaz's connector sends them, the last one of a
    playback padded with silence by the engine's playout (``capabilities.frame_ms``); then
    ``timestamp`` advances by 20 per frame. ``chunk_ms`` must then be a multiple of 20.
    False: chunks of any length (a short tail goes as it is).
    ``strict_frames``: PROVIDER only: play only payloads of whole 20 ms frames, as Awaaz's
    JS connector takes only 320-byte buffers; others are dropped (counted in
    ``media_dropped`` and reported as ``UnknownMessage``). It also checks that each
    ``timestamp`` advances by its payload's duration (``timestamp_mismatches``).
    """

    name = "awaaz"
    family = "json-events"
    _transitions = _TRANSITIONS
    _start_kind = _START
    _second_start = "a second start"
    _before_start = "before start"
    capabilities = Capabilities(
        clear=True,
        mark_echo=True,
        transfer=False,
        hangup_message=False,
        dtmf_events=True,
        inbound_rate=_RATE,
        outbound_rate=_RATE,
        chunk_ms=20,
        # Awaaz's own connector keeps ~one 20 ms frame ahead; its buffer limits are
        # unknown. 100 ms (five chunks) absorbs scheduling jitter while staying close to
        # that known-good behaviour, and bounds what leaks past a clear that fails.
        lead_ms=100,
        # Awaaz's own serializer maps only these; it drops A-D (pipecat-awaazai serializer.py)
        dtmf_keys=frozenset("0123456789*#"),
        # whole_frames (default on): the connector sends only whole 320-byte frames, and
        # whether Awaaz plays a shorter buffer is unknown
        frame_ms=_FRAME_MS,
    )

    def __init__(
        self,
        role: Role = Role.ENGINE,
        *,
        chunk_ms: int = 20,
        wav_wrap: bool = True,
        stream_sid: str | None = None,
        connected_first: bool = True,
        mark_echo: bool = True,
        mark_shape: str = "object",
        whole_frames: bool = True,
        strict_frames: bool = False,
    ) -> None:
        super().__init__(Role(role))
        if mark_shape not in ("object", "string"):
            raise ValueError(f"mark_shape is 'object' or 'string', not {mark_shape!r}")
        self.mark_shape = mark_shape
        if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int) or not 1 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be an integer in [1, 1000], got {chunk_ms!r}")
        if stream_sid is not None and not isinstance(stream_sid, str):
            raise TypeError(f"stream_sid must be a str or None, got {type(stream_sid).__name__}")
        self.whole_frames = bool(whole_frames)
        if self.whole_frames and chunk_ms % _FRAME_MS:
            raise ValueError(
                f"chunk_ms ({chunk_ms}) is not a multiple of Awaaz's {_FRAME_MS} ms frame, which whole_frames "
                f"(on) makes every media message: use a multiple of {_FRAME_MS}, or whole_frames=off"
            )
        self.strict_frames = bool(strict_frames)
        self.media_dropped = 0  # PROVIDER with strict_frames: payloads that were not whole frames
        self.timestamp_mismatches = 0  # PROVIDER with strict_frames: timestamps not advanced by the payload
        self._rx_timestamp = 0
        self.chunk_ms = chunk_ms
        self.wav_wrap = bool(wav_wrap)
        self.connected_first = bool(connected_first)
        self._default_stream_sid = stream_sid
        # Per-instance capabilities shadow the class defaults when options change them.
        self.capabilities = attrs.evolve(
            type(self).capabilities,
            chunk_ms=chunk_ms,
            mark_echo=bool(mark_echo),
            frame_ms=_FRAME_MS if self.whole_frames else 0,
        )

        self._state = _State.IDLE
        self._start_seen = False
        self.stream_sid = stream_sid or ""
        self.call_sid = ""
        self._inbound_rate = _RATE
        self._connected_sent = False
        # Outgoing counters (the connector's ``_seq``, ``_chunk`` and ``_ts_ms``).
        self._sequence = 0
        self._sid_json = ""
        self._sid_json_of: str | None = None
        self._chunks = 0
        self._samples = 0

    # --- state ----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._start_seen

    @property
    def stopped(self) -> bool:
        return self._state is _State.STOPPED

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def inbound_rate(self) -> int:
        return self._inbound_rate

    # --- receive --------------------------------------------------------------------

    def receive(self, message: WireMessage) -> Sequence[Event]:
        check_role_and_type(message)
        if not isinstance(message, str):
            # JSON sent in a binary frame is read as if it were text (peers do this)
            text = _text_of_binary(bytes(message))
            if text is None:
                raise RemoteProtocolError("awaaz: binary frames are not part of the protocol", CloseCode.UNSUPPORTED_DATA)
            message = text
        msg = loads_object(message.lstrip("\ufeff"), what="awaaz message")
        event = msg.get("event")
        if not isinstance(event, str) or not event:
            raise RemoteProtocolError("awaaz: message has no \"event\" string", CloseCode.INVALID_PAYLOAD)
        if self.role is Role.ENGINE:
            return self._receive_as_engine(event, msg)
        return self._receive_as_provider(event, msg)

    def _receive_as_engine(self, event: str, msg: dict) -> list[Event]:
        kind = _INBOUND_KINDS.get(event, _UNKNOWN)
        was = self._state
        # Tolerated as Awaaz's own connector tolerates them (the state does not move): media,
        # DTMF or a mark before start are skipped until start; a second start is ignored.
        # Both come back as UnknownMessage, which the engine counts and logs a few times.
        if was is _State.IDLE and kind in (_MEDIA, _DTMF, _MARK_ECHO):
            return [UnknownMessage(kind=f"{event} before start", raw=msg)]
        if was is _State.STARTED and kind == _START:
            return [UnknownMessage(kind="second start", raw=msg)]
        after = self._next_state(kind, local=False)
        if was is _State.STOPPED:
            return [UnknownMessage(kind=event, raw=msg)]
        if kind == _CONNECTED:
            result: list[Event] = [Connected(raw=msg)]
        elif kind == _START:
            result = [self._decode_start(msg)]
        elif kind == _MEDIA:
            result = self._decode_media(msg)
        elif kind == _DTMF:
            result = [self._decode_dtmf(msg)]
        elif kind == _MARK_ECHO:
            result = [self._decode_mark_echo(msg)]
        elif kind == _STOP:
            stop = msg.get("stop")
            reason = stop.get("reason") if isinstance(stop, dict) else None
            result = [CallStopped(reason=reason if isinstance(reason, str) else "", raw=msg)]
        else:
            result = [UnknownMessage(kind=event, raw=msg)]
        self._commit(after)
        return result

    def _decode_start(self, msg: dict) -> CallStarted:
        start = msg.get("start", {})
        if start is None:
            start = {}
        if not isinstance(start, dict):
            raise RemoteProtocolError("awaaz: start.start must be an object", CloseCode.INVALID_PAYLOAD)
        media_format = start.get("media_format") or {}
        if not isinstance(media_format, dict):
            raise RemoteProtocolError("awaaz: start.media_format must be an object", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(media_format.get("sample_rate"), _RATE, what="awaaz start.media_format.sample_rate")
        custom = start.get("custom_parameters")
        custom = custom if isinstance(custom, dict) else {}

        stream_sid = as_text(msg.get("stream_sid")) or as_text(start.get("stream_sid")) or (self._default_stream_sid or "")
        call_sid = as_text(start.get("call_sid")) or as_text(msg.get("call_sid"))
        caller, _, _ = first_text((start, custom), _CALLER_KEYS)
        called, _, _ = first_text((start, custom), _CALLED_KEYS)
        direction, _, _ = first_text((start, custom), _DIRECTION_KEYS)

        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._inbound_rate = rate
        return CallStarted(
            call_id=call_sid or stream_sid,
            stream_id=stream_sid,
            caller=caller,
            called=called,
            sample_rate=rate,
            direction=direction,
            custom=custom,
            raw=msg,
        )

    def _decode_media(self, msg: dict) -> list[Event]:
        media = msg.get("media")
        if not isinstance(media, dict) or media.get("payload") is None:
            # nothing to play: skipped and reported, as Awaaz's connector skips it
            return [UnknownMessage(kind="media without payload", raw=msg)]
        pcm = b64decode(media.get("payload"), what="awaaz media.payload", lenient=True)
        if len(pcm) % 2:
            raise RemoteProtocolError(
                f"awaaz: media payload is {len(pcm)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD
            )
        if not pcm:
            return []
        return [CallerAudio(pcm=pcm, sample_rate=self._inbound_rate)]

    @staticmethod
    def _decode_dtmf(msg: dict) -> Event:
        body = msg.get("dtmf")
        digit: Any = body.get("digit") if isinstance(body, dict) else msg.get("digit")
        if isinstance(digit, int) and not isinstance(digit, bool) and 0 <= digit <= 9:
            digit = str(digit)
        if isinstance(digit, str):
            digit = digit.strip().upper()
            if len(digit) == 1 and digit in DTMF_DIGITS:
                return Dtmf(digit)
        return UnknownMessage(kind="dtmf", raw=msg)

    @staticmethod
    def _decode_mark_echo(msg: dict) -> Event:
        body = msg.get("mark")
        # {"mark": {"name": ...}}, {"mark": "name"} (seen from Twilio-style peers) or a
        # top-level "name"
        name = body.get("name") if isinstance(body, dict) else body if isinstance(body, str) else msg.get("name")
        if isinstance(name, str):
            return MarkEchoed(name)
        return UnknownMessage(kind="mark", raw=msg)

    def _receive_as_provider(self, event: str, msg: dict) -> list[Event]:
        kind = _OUTBOUND_KINDS.get(event, _UNKNOWN)
        after = self._next_state(kind, local=False)
        sid = msg.get("stream_sid")
        if kind != _UNKNOWN and sid is not None and as_text(sid) != self.stream_sid:
            raise RemoteProtocolError(
                f"awaaz: {event} for stream {sid!r:.60}, this stream is {self.stream_sid!r}", CloseCode.PROTOCOL_ERROR
            )
        result: list[Event]
        if kind == _PLAY:
            result = self._decode_play(msg, self.wav_wrap)
            if self.strict_frames:
                result = self._check_frames(msg, result)
        elif kind == _MARK:
            body = msg.get("mark")
            other = dict if self.mark_shape == "string" else str
            if isinstance(body, other):
                # a peer that parses one shape ignores the other: the engine then waits for
                # an echo that never comes, and a wrong mark_shape shows as mark fallbacks
                result = [UnknownMessage(kind="mark", raw=msg)]
            else:
                name = body if self.mark_shape == "string" else body.get("name") if isinstance(body, dict) else None
                if not isinstance(name, str):
                    raise RemoteProtocolError("awaaz: mark without a name", CloseCode.INVALID_PAYLOAD)
                result = [Mark(name)]
        elif kind == _CLEAR:
            result = [Clear()]
        else:
            result = [UnknownMessage(kind=event, raw=msg)]
        self._commit(after)
        return result

    @staticmethod
    def _decode_play(msg: dict, wav_wrap: bool) -> list[Event]:
        """What the provider plays. A provider that takes WAV-wrapped payloads (Awaaz's
        connector) reads the header; one that takes raw PCM (``wav_wrap=False``: Awaaz's own
        Pipecat bot) plays whatever it gets as PCM, a WAV header too: 44 bytes of noise."""
        media = msg.get("media")
        if not isinstance(media, dict):
            raise RemoteProtocolError("awaaz: media message has no \"media\" object", CloseCode.INVALID_PAYLOAD)
        data = b64decode(media.get("payload"), what="awaaz media.payload")
        rate = _RATE
        if wav_wrap and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            try:
                wav = parse_wav(data)
            except WavError as exc:
                raise RemoteProtocolError(f"awaaz: media payload is a broken WAV file: {exc}", CloseCode.INVALID_PAYLOAD) from exc
            data, rate = wav.pcm, wav.sample_rate
        elif len(data) % 2:
            raise RemoteProtocolError(
                f"awaaz: media payload is {len(data)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD
            )
        if not data:
            return []
        return [PlayAudio(pcm=data, sample_rate=rate)]

    def _check_frames(self, msg: dict, result: list[Event]) -> list[Event]:
        """Awaaz's JS connector strictly: a payload that is not whole 20 ms frames is not
        played, and ``timestamp`` must advance by each payload's duration (in ms)."""
        out: list[Event] = []
        for event in result:
            if not isinstance(event, PlayAudio):
                out.append(event)
                continue
            frame_bytes = 2 * event.sample_rate * _FRAME_MS // 1000
            stamp = msg["media"].get("timestamp")
            expected = self._rx_timestamp + len(event.pcm) * 1000 / (2 * event.sample_rate)
            self._rx_timestamp = expected  # a payload without one (the Pipecat form) still moves the stream on
            if stamp is not None:
                try:
                    stamp_ms = float(stamp)
                except (TypeError, ValueError):
                    stamp_ms = float("nan")
                if stamp_ms != expected:
                    self.timestamp_mismatches += 1
                    out.append(UnknownMessage(kind=f"timestamp {stamp!r:.20}, expected {expected:g}", raw=msg))
                self._rx_timestamp = stamp_ms if stamp_ms == stamp_ms else expected
            if len(event.pcm) % frame_bytes:
                self.media_dropped += 1
                out.append(UnknownMessage(kind=f"media dropped: {len(event.pcm)} bytes, not whole {frame_bytes}-byte frames", raw=msg))
            else:
                out.append(event)
        return out

    # --- send -----------------------------------------------------------------------

    def send(self, event: Event) -> Sequence[WireMessage]:
        if self.role is Role.ENGINE:
            return self._send_as_engine(event)
        return self._send_as_provider(event)

    def _send_as_engine(self, command: Event) -> list[WireMessage]:
        if isinstance(command, Transfer):
            raise UnsupportedCommand(
                "awaaz: transfer has no WebSocket message; transfer the call on Awaaz's side "
                "(template / FreeSWITCH) or hang up"
            )
        if isinstance(command, PlayAudio):
            kind = _PLAY
        elif isinstance(command, Mark):
            kind = _MARK
        elif isinstance(command, Clear):
            kind = _CLEAR
        elif isinstance(command, Hangup):
            kind = _HANGUP
        else:
            raise LocalProtocolError(f"awaaz: the engine cannot send {type(command).__name__}")
        after = self._next_state(kind, local=True)
        if isinstance(command, PlayAudio):
            if command.sample_rate != self.outbound_rate:
                raise LocalProtocolError(
                    f"awaaz plays {self.outbound_rate} Hz audio, got {command.sample_rate} Hz (resample first)"
                )
            out: list[WireMessage] = self._encode_play(command.pcm)
        elif isinstance(command, Mark):
            mark: Any = command.name if self.mark_shape == "string" else {"name": command.name}
            out = [dumps({"event": "mark", "stream_sid": self.stream_sid, "mark": mark})]
        elif isinstance(command, Clear):
            out = [dumps({"event": "clear", "stream_sid": self.stream_sid})]
        else:  # Hangup: on Awaaz, hanging up is closing the socket normally.
            out = []
        self._commit(after)
        return out

    def _encode_play(self, pcm: bytes) -> list[WireMessage]:
        """One ``media`` message per PlayAudio: the engine's playout plan cuts audio into
        chunks (``chunk_ms`` is its default for Awaaz), so the size on the wire is the size
        the engine paced, in one place."""
        if not pcm:
            return []
        self._sequence += 1
        self._chunks += 1
        self._samples += len(pcm) // 2
        payload = build_wav(pcm, self.outbound_rate) if self.wav_wrap else pcm
        return [self._media_message(payload, self._samples * 1000 // self.outbound_rate)]

    def _media_message(self, payload: bytes, timestamp_ms: int) -> str:
        # The one message sent 50 times a second per call: formatted from a template rather
        # than through json.dumps (a third of the codec's send cost), with the same bytes
        # as ``dumps`` would give. Only stream_sid is free text; it is JSON-escaped once.
        sid = self.stream_sid
        if sid is not self._sid_json_of:
            self._sid_json = dumps(sid)
            self._sid_json_of = sid
        return (
            f'{{"event":"media","sequence_number":{self._sequence:d},"stream_sid":{self._sid_json},'
            f'"media":{{"chunk":{self._chunks:d},"timestamp":"{timestamp_ms:d}","payload":"{b64encode(payload)}"}}}}'
        )

    def _send_as_provider(self, event: Event) -> list[WireMessage]:
        if isinstance(event, Connected):
            kind = _CONNECTED
        elif isinstance(event, CallStarted):
            kind = _START
        elif isinstance(event, CallerAudio):
            kind = _MEDIA
        elif isinstance(event, Dtmf):
            kind = _DTMF
        elif isinstance(event, MarkEchoed):
            kind = _MARK_ECHO
        elif isinstance(event, CallStopped):
            kind = _STOP
        elif isinstance(event, UnknownMessage):
            kind = _UNKNOWN
        else:
            raise LocalProtocolError(f"awaaz: the provider cannot send {type(event).__name__}")
        after = self._next_state(kind, local=True)
        if isinstance(event, Connected):
            out: list[WireMessage] = [self._connected_message()]
        elif isinstance(event, CallStarted):
            out = self._encode_start(event)
        elif isinstance(event, CallerAudio):
            if event.sample_rate != self._inbound_rate:
                raise LocalProtocolError(
                    f"awaaz: this stream announced {self._inbound_rate} Hz, got {event.sample_rate} Hz caller audio"
                )
            out = []
            if event.pcm:
                self._sequence += 1
                self._chunks += 1
                self._samples += event.num_samples
                out.append(self._media_message(event.pcm, self._samples * 1000 // self._inbound_rate))
        elif isinstance(event, Dtmf):
            out = [self._numbered({"event": "dtmf", "stream_sid": self.stream_sid, "dtmf": {"digit": event.digit}})]
        elif isinstance(event, MarkEchoed):
            mark: Any = event.name if self.mark_shape == "string" else {"name": event.name}
            out = [self._numbered({"event": "mark", "stream_sid": self.stream_sid, "mark": mark})]
        elif isinstance(event, CallStopped):
            stop: dict[str, Any] = {"call_sid": self.call_sid}
            if event.reason:
                stop["reason"] = event.reason
            out = [self._numbered({"event": "stop", "stream_sid": self.stream_sid, "stop": stop})]
        else:
            out = [_raw_message(event)]
        self._commit(after)
        return out

    def _connected_message(self) -> str:
        self._connected_sent = True
        return dumps({"event": "connected"})

    def _numbered(self, body: dict) -> str:
        self._sequence += 1
        return dumps({"event": body.pop("event"), "sequence_number": self._sequence, **body})

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        # Awaaz itself streams 8 kHz; other rates are allowed so tests can exercise the
        # engine's handling of media_format.sample_rate.
        self.stream_sid = event.stream_id or self._default_stream_sid or f"MZ{uuid.uuid4().hex}"
        self.call_sid = event.call_id
        self._inbound_rate = event.sample_rate
        start: dict[str, Any] = {
            "stream_sid": self.stream_sid,
            "call_sid": event.call_id,
            "media_format": {"encoding": "base64", "sample_rate": event.sample_rate, "bit_rate": ""},
            "custom_parameters": dict(event.custom),
        }
        # Not in Awaaz's documented example; Exotel-style extras so the simulator can
        # announce numbers. Only present when set.
        for key, value in (("from", event.caller), ("to", event.called), ("direction", event.direction)):
            if value:
                start[key] = value
        start_message = self._numbered({"event": "start", "stream_sid": self.stream_sid, "start": start})
        if self._connected_sent:
            return [start_message]
        connected = self._connected_message()
        return [connected, start_message] if self.connected_first else [start_message, connected]


def _raw_message(event: UnknownMessage) -> WireMessage:
    """Let the simulator inject arbitrary messages: a dict is JSON-encoded, text/bytes go as is."""
    raw = event.raw
    if isinstance(raw, (str, bytes)):
        return raw
    if isinstance(raw, Mapping):
        return dumps(dict(raw))
    return dumps({"event": event.kind})


def _text_of_binary(data: bytes) -> str | None:
    """A binary frame that holds a JSON object as UTF-8 text, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    return text if stripped.startswith("{") else None
