"""Awaaz AI media streams: JSON text frames with an ``event`` key, snake_case fields.

Wire format (docs/protocols.md, "Awaaz AI: JSON events")::

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
* What Awaaz's own connector tolerates is tolerated as the whole family tolerates it
  (:mod:`callengine.protocols.jsonevents`): reported as ``UnknownMessage``, never fatal.
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
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ..audio.wav import WavError, build_wav, parse_wav
from ..errors import CloseCode, RemoteProtocolError
from ..events import DTMF_DIGITS, CallStarted, Event, PlayAudio, UnknownMessage
from ._common import as_text, b64decode, b64encode, dumps, first_text, parse_sample_rate
from .base import Capabilities, Role, WireMessage
from .jsonevents import JsonEventCodec, Kind

__all__ = ["AwaazCodec"]

_RATE = 8000
_FRAME_MS = 20  # the connector's frame: 320 bytes of PCM at 8 kHz

_CALLER_KEYS = ("from", "From", "caller", "caller_number", "from_number")
_CALLED_KEYS = ("to", "To", "called", "called_number", "to_number")
_DIRECTION_KEYS = ("direction", "call_type", "Direction")


class AwaazCodec(JsonEventCodec):
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

    name: ClassVar[str] = "awaaz"
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
    inbound: ClassVar = {"connected": Kind.CONNECTED, "start": Kind.START, "media": Kind.MEDIA, "dtmf": Kind.DTMF, "mark": Kind.MARK_ECHO, "stop": Kind.STOP}
    outbound: ClassVar = {"media": Kind.PLAY, "mark": Kind.MARK, "clear": Kind.CLEAR}
    sid_key: ClassVar[str] = "stream_sid"
    seq_key: ClassVar[str] = "sequence_number"
    seq_text: ClassVar[bool] = False
    timestamp_at_end: ClassVar[bool] = True
    # the codec reads and sends every key of the keypad (lower-case a-d and integer digits
    # too), though Awaaz's serializer carries only capabilities.dtmf_keys
    dtmf_wire_keys: ClassVar = frozenset(DTMF_DIGITS)
    transfer_hint: ClassVar[str] = "transfer the call on Awaaz's side (template / FreeSWITCH) or hang up"

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
        super().__init__(role)
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
        self._rx_timestamp = 0.0
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
        self.stream_sid = stream_sid or ""
        self._connected_sent = False
        self._sid_json = ""
        self._sid_json_of: str | None = None

    # --- receive: where Awaaz's fields sit --------------------------------------------

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

    def _mark_name(self, msg: dict) -> str | None:
        body = msg.get("mark")
        if self.role is Role.PROVIDER:  # its own shape only (the other is ignored: _decode_mark)
            name = body if self.mark_shape == "string" else body.get("name") if isinstance(body, dict) else None
        else:  # {"mark": {"name": ...}}, {"mark": "name"} (Twilio-style peers) or a top-level "name"
            name = body.get("name") if isinstance(body, dict) else body if isinstance(body, str) else msg.get("name")
        return name if isinstance(name, str) else None

    def _decode_mark(self, msg: dict) -> list[Event]:
        if isinstance(msg.get("mark"), dict if self.mark_shape == "string" else str):
            # a peer that parses one shape ignores the other: the engine then waits for an
            # echo that never comes, and a wrong mark_shape shows as mark fallbacks
            return [UnknownMessage(kind="mark", raw=msg)]
        return super()._decode_mark(msg)

    def _decode_play(self, msg: dict) -> list[Event]:
        """What the provider plays. A provider that takes WAV-wrapped payloads (Awaaz's
        connector) reads the header; one that takes raw PCM (``wav_wrap=False``: Awaaz's own
        Pipecat bot) plays whatever it gets as PCM, a WAV header too: 44 bytes of noise."""
        media = msg.get("media")
        if not isinstance(media, dict):
            raise RemoteProtocolError('awaaz: media message has no "media" object', CloseCode.INVALID_PAYLOAD)
        data = b64decode(media.get("payload"), what="awaaz media.payload")
        rate = _RATE
        if self.wav_wrap and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            try:
                wav = parse_wav(data)
            except WavError as exc:
                raise RemoteProtocolError(f"awaaz: media payload is a broken WAV file: {exc}", CloseCode.INVALID_PAYLOAD) from exc
            data, rate = wav.pcm, wav.sample_rate
        else:
            data = self._wire_to_pcm(data)
        if not data:
            return []
        played = PlayAudio(pcm=data, sample_rate=rate)
        return self._check_frames(media, played, msg) if self.strict_frames else [played]

    def _check_frames(self, media: dict, played: PlayAudio, msg: dict) -> list[Event]:
        """Awaaz's JS connector strictly: a payload that is not whole 20 ms frames is not
        played, and ``timestamp`` must advance by each payload's duration (in ms)."""
        out: list[Event] = []
        frame_bytes = 2 * played.sample_rate * _FRAME_MS // 1000
        stamp = media.get("timestamp")
        expected = self._rx_timestamp + len(played.pcm) * 1000 / (2 * played.sample_rate)
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
        if len(played.pcm) % frame_bytes:
            self.media_dropped += 1
            out.append(UnknownMessage(kind=f"media dropped: {len(played.pcm)} bytes, not whole {frame_bytes}-byte frames", raw=msg))
        else:
            out.append(played)
        return out

    # --- send: Awaaz's connector's shapes ---------------------------------------------

    def _encode_play(self, pcm: bytes) -> list[WireMessage]:
        """One ``media`` message per PlayAudio: the engine's playout plan cuts audio into
        chunks (``chunk_ms`` is its default for Awaaz), so the size on the wire is the size
        the engine paced, in one place."""
        return [self._media_message(pcm, build_wav(pcm, self._outbound_rate) if self.wav_wrap else pcm, self._outbound_rate)]

    def _encode_caller_audio(self, pcm: bytes) -> list[WireMessage]:
        return [self._media_message(pcm, pcm, self._inbound_rate)]

    def _media_message(self, pcm: bytes, payload: bytes, rate: int) -> str:
        # The connector's counters: sequence_number, chunk and timestamp count media
        # messages only (from 1 / 20), timestamp is the position at the chunk's end.
        self._sequence += 1
        self._chunks += 1
        self._samples += len(pcm) // 2
        # The one message sent 50 times a second per call: formatted from a template rather
        # than through json.dumps (a third of the codec's send cost), with the same bytes
        # as ``dumps`` would give. Only stream_sid is free text; it is JSON-escaped once.
        sid = self.stream_sid
        if sid is not self._sid_json_of:
            self._sid_json, self._sid_json_of = dumps(sid), sid
        return (
            f'{{"event":"media","sequence_number":{self._sequence:d},"stream_sid":{self._sid_json},'
            f'"media":{{"chunk":{self._chunks:d},"timestamp":"{self._samples * 1000 // rate:d}","payload":"{b64encode(payload)}"}}}}'
        )

    def _mark_body(self, name: str) -> dict[str, Any]:
        return {"mark": name if self.mark_shape == "string" else {"name": name}}

    def _encode_mark(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK, self._mark_body(name))]

    def _encode_mark_echo(self, name: str) -> list[WireMessage]:
        return [self._message(Kind.MARK_ECHO, self._mark_body(name), numbered=True)]

    def _encode_dtmf(self, digit: str) -> list[WireMessage]:
        return [self._message(Kind.DTMF, {"dtmf": {"digit": digit}}, numbered=True)]

    def _encode_stop(self, reason: str) -> list[WireMessage]:
        return [self._message(Kind.STOP, {"stop": {"call_sid": self.call_sid, **({"reason": reason} if reason else {})}}, numbered=True)]

    def _encode_connected(self) -> list[WireMessage]:
        self._connected_sent = True
        return super()._encode_connected()

    def _encode_start(self, event: CallStarted) -> list[WireMessage]:
        # Awaaz itself streams 8 kHz; other rates are allowed so tests can exercise the
        # engine's handling of media_format.sample_rate.
        if not event.stream_id and self._default_stream_sid:
            self.stream_sid = self._default_stream_sid
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
        start_message = self._message(Kind.START, {"start": start}, numbered=True)
        if self._connected_sent:
            return [start_message]
        connected = self._encode_connected()
        return connected + [start_message] if self.connected_first else [start_message] + connected
