"""Knowlarity (as documented by Verloop): mod_audio_fork framing.

Wire format (docs/protocols.md, "Knowlarity: metadata, then binary audio")::

    Knowlarity -> us   one metadata text frame, then binary frames of raw PCM16LE
    us -> Knowlarity   JSON text: {"type":"playAudio","data":{...}} (a whole WAV file per
                       message), {"type":"killAudio"}; hang-up and transfer are playAudio
                       messages with audioContent "None" and a textContent instruction

Decisions where the documentation is unsure:

* **Caller audio**: binary frames, any length. An odd trailing byte is carried into the
  next frame. An empty frame after the metadata is mod_audio_fork's graceful shutdown (it
  then waits for the server to close): :class:`CallStopped` (``empty_frame_ends=False``
  ignores it); before the metadata it is ignored. Audio before the metadata (we missed the
  first frame) is skipped and reported as ``UnknownMessage("binary before metadata")``.
* **Text frames**: a UTF-8 BOM is dropped; several JSON texts joined in one frame (drachtio
  appends queued texts) are read one by one, the first as the metadata if it is still due.
* **Text after the metadata is never fatal**: a JSON object whose ``event``/``type`` is
  DTMF-like (``dtmf``, ``websocket:dtmf``) with a valid digit becomes :class:`Dtmf`; a
  stop-like one (``stop``, ``hangup``, ``disconnect``, ``websocket:disconnected``...)
  becomes :class:`CallStopped`; anything else becomes :class:`UnknownMessage` (``kind`` is
  the event/type name, or ``"text"``). None of these are documented for Knowlarity.
* After a stop-like message every further message is reported as ``UnknownMessage``.
* **Clips**: each PlayAudio becomes one or more ``playAudio`` messages of at most
  ``max_clip_ms`` (default 10 s), and never more PCM than fits mod_audio_fork's 665,600
  byte receive buffer (a 10 s 16 kHz clip is ~427 KB of base64). The WAV is at the
  PlayAudio's own rate; FreeSWITCH reads the header and resamples.
* **Clip mode** (``clips``): whether Knowlarity's application queues a new clip behind
  the playing one or cuts it is unknown. ``"stream"`` (default) sends short clips ahead
  (right for an application that queues); ``"utterance"`` sends one clip per playback and
  the next only once it has played (right for either, at the cost of latency).
* ``outbound_rate`` follows the call's announced sample rate once the metadata arrived
  (16 kHz before that), so FreeSWITCH need not resample our audio.
* ``killAudio`` (native to mod_audio_fork, unverified on Knowlarity) is sent for Clear when
  ``kill_audio=True``; with ``kill_audio=False`` Clear sends nothing and
  ``capabilities.clear`` is False, so the engine relies on short clips and a small lead.
* Mark sends nothing (no mark on the wire; the engine's playout ledger settles marks).
* Commands before the metadata raise LocalProtocolError; after a stop-like message they are
  still encoded (the writer may race the reader).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs

from ..audio.wav import build_wav
from ..errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ..events import (
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
from ._common import CallState, b64encode, dumps, is_binary, loads_object, parse_digit, parse_sample_rate, split_json_texts
from .base import Capabilities, Role, WireMessage
from .knowlarity_metadata import (
    DEFAULT_RATE,
    LAYOUTS,
    MAX_METADATA_CHARS,
    Undecodable,
    call_started,
    decode_text,
    encode_metadata,
    parse_metadata,
)
from .modaudiofork import (
    MAX_CLIP_PCM_BYTES,
    MOD_AUDIO_FORK_MAX_MESSAGE,
    check_transfer_target,
    decode_clip,
    parse_text_content,
    play_message,
)
from .skeleton import TableCodec

__all__ = [
    "KnowlarityCodec",
    "parse_metadata",
    "MOD_AUDIO_FORK_MAX_MESSAGE",
    "MAX_CLIP_PCM_BYTES",
    "LAYOUTS",
    "CLIP_MODES",
]

#: How the ENGINE sends playbacks (the ``clips`` option).
CLIP_MODES = ("stream", "utterance")

_DTMF_KINDS = frozenset({"dtmf", "websocket:dtmf", "dtmf_event", "dtmf-event"})
_STOP_KINDS = frozenset(
    {
        "stop", "stopped", "hangup", "hang_up", "hang-up", "disconnect", "disconnected",
        "call_end", "call_ended", "callended", "end", "websocket:disconnected",
        "websocket:stop", "websocket:closed",
    }
)


# --- the state machine ----------------------------------------------------------------

_State = CallState


# Message kinds, named after what is on the wire, the same in both roles.
_METADATA, _AUDIO, _TEXT, _STOP = "metadata", "caller audio", "text event", "stop"
_PLAY, _KILL, _MARK, _HANGUP, _TRANSFER = "playAudio", "killAudio", "mark", "hang-up", "transfer"
_UNKNOWN = "unknown message"
_CALL_KINDS = (_AUDIO, _TEXT, _PLAY, _KILL, _MARK, _HANGUP, _TRANSFER, _UNKNOWN)

# The whole state machine: (state, kind) -> next state. A missing pair is a protocol
# violation: RemoteProtocolError if the peer sent it, LocalProtocolError if we tried to.
_TRANSITIONS: dict[tuple[_State, str], _State] = {
    (_State.IDLE, _METADATA): _State.STARTED,
    (_State.IDLE, _STOP): _State.STOPPED,
    (_State.IDLE, _UNKNOWN): _State.IDLE,
    **{(_State.STARTED, kind): _State.STARTED for kind in _CALL_KINDS},
    (_State.STARTED, _STOP): _State.STOPPED,
    **{(_State.STOPPED, kind): _State.STOPPED for kind in _CALL_KINDS + (_STOP,)},
}


class KnowlarityCodec(TableCodec):
    """Sans-IO codec for Knowlarity's mod_audio_fork-style stream.

    ``clips``, ``clip_ms``, ``max_clip_ms`` and ``kill_audio`` shape what the ENGINE sends.
    ``clips``: ``"stream"`` (default): short clips, ``clip_ms`` each, with up to two
    unplayed (an application that queues clips plays them back to back); ``"utterance"``:
    each playback goes out as one clip (when the agent finishes it, or at ``clip_ms``),
    and the next clip only once the previous one has played by the engine's ledger
    (``capabilities.one_clip_in_flight``), so an application that cuts the playing clip
    for a new one never cuts audio.
    ``clip_ms``: the clip length the engine's writer should hand us (reported as
    ``capabilities.chunk_ms``): 200 by default in stream mode; in utterance mode the cap
    on one clip, 5000 by default. ``max_clip_ms``: the longest clip one ``playAudio`` may
    carry; longer PlayAudio commands are split (must fit mod_audio_fork's message limit at
    16 kHz, i.e. at most ~15.5 s). ``kill_audio``: send ``killAudio`` for Clear.
    ``default_rate``: ENGINE only: the caller audio's rate when the first message says
    none (16000, Verloop's configuration; legacy Awaaz-style streams are 8000).
    ``empty_frame_ends``: ENGINE only: an empty binary frame after the metadata ends the
    call cleanly (mod_audio_fork's graceful shutdown sends one and then waits for us to
    close); False ignores empty frames.
    ``layout``: PROVIDER only: the first-frame layout to send, ``"verloop"`` (uuid,
    sample_rate, from, to, campaign, metadata) or ``"callid"`` (callid, virtual_number,
    customer_number, ivr_data as a JSON string, client_meta_id, event_timestamp) or
    ``"fork"`` (callId, from, to and the custom parameters; no rate unless it differs from
    the codec's default, since mod_audio_fork takes the rate as an argument, not metadata).
    """

    name = "knowlarity"
    family = "mod_audio_fork"
    engine_sends: ClassVar[Mapping[type, str]] = {PlayAudio: _PLAY, Clear: _KILL, Mark: _MARK, Hangup: _HANGUP, Transfer: _TRANSFER}
    provider_sends: ClassVar[Mapping[type, str]] = {CallStarted: _METADATA, CallerAudio: _AUDIO, CallStopped: _STOP}
    provider_lacks: ClassVar[Mapping[type, str]] = {
        Dtmf: "no DTMF events (keys are in-band tones)",
        MarkEchoed: "no mark echoes",
        Connected: "no separate connected message (the metadata frame is the hello)",
    }
    raw_kind_key = "type"
    _transitions = _TRANSITIONS
    _start_kind = _METADATA
    _second_start = "a second metadata frame"
    _before_start = "before the metadata"
    capabilities = Capabilities(
        clear=True,
        mark_echo=False,
        transfer=True,
        hangup_message=True,
        dtmf_events=False,
        inbound_rate=DEFAULT_RATE,
        outbound_rate=DEFAULT_RATE,
        chunk_ms=200,
        # Each playAudio is probably one file playback. The engine's lead bounds all audio
        # sent but not yet played, the playing clip included: two clips keep one queued
        # behind the playing one (no gap between files) and bound what can still play if
        # killAudio turns out not to flush Knowlarity's queue to a single clip.
        lead_ms=400,
    )

    def __init__(
        self,
        role: Role = Role.ENGINE,
        *,
        clips: str = "stream",
        clip_ms: int | None = None,
        max_clip_ms: int = 10000,
        kill_audio: bool = True,
        layout: str = "verloop",
        empty_frame_ends: bool = True,
        default_rate: int | None = None,
    ) -> None:
        super().__init__(Role(role))
        self.empty_frame_ends = bool(empty_frame_ends)
        self.rate_source = ""  # where the caller audio's rate came from, once started
        try:
            self.default_rate = parse_sample_rate(
                default_rate if default_rate is not None else type(self).capabilities.inbound_rate, DEFAULT_RATE, what="default_rate"
            )
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None
        if clips not in CLIP_MODES:
            raise ValueError(f"clips is {' or '.join(map(repr, CLIP_MODES))}, not {clips!r}")
        self.clips = clips
        if clip_ms is None:
            # utterance: 5 s holds most sentences in one clip, is a third of the 665,600-byte
            # message limit at 16 kHz, and bounds how long a streaming playback waits to go out
            clip_ms = 200 if clips == "stream" else min(5000, max_clip_ms)
        for option, value in (("clip_ms", clip_ms), ("max_clip_ms", max_clip_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if max_clip_ms * DEFAULT_RATE // 1000 * 2 > MAX_CLIP_PCM_BYTES:
            raise ValueError(
                f"max_clip_ms={max_clip_ms} does not fit mod_audio_fork's {MOD_AUDIO_FORK_MAX_MESSAGE}-byte "
                f"message limit at {DEFAULT_RATE} Hz (at most {MAX_CLIP_PCM_BYTES * 1000 // (2 * DEFAULT_RATE)} ms)"
            )
        if clip_ms > max_clip_ms:
            raise ValueError(f"clip_ms ({clip_ms}) must not exceed max_clip_ms ({max_clip_ms})")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        self.clip_ms = clip_ms
        self.max_clip_ms = max_clip_ms
        self.kill_audio = bool(kill_audio)
        self.layout = layout
        # Per-instance capabilities shadow the class defaults when options change them.
        one_clip = clips == "utterance"
        self.capabilities = attrs.evolve(
            type(self).capabilities,
            chunk_ms=clip_ms,
            # one clip in flight: the lead is the clip itself (the playout waits for the ledger)
            lead_ms=clip_ms if one_clip else 2 * clip_ms,
            clear=self.kill_audio,
            one_clip_in_flight=one_clip,
            # FreeSWITCH writes each clip to a file and starts playing it: how long that
            # takes on Knowlarity is unknown. Where a new clip may cut the playing one,
            # 100 ms of margin per clip costs a little silence and protects the words.
            start_delay_ms=100.0 if one_clip else 0.0,
        )

        self._rate = self.default_rate
        self._carry = b""
        self.call_id = ""

    # --- state ----------------------------------------------------------------------

    @property
    def inbound_rate(self) -> int:
        return self._rate

    @property
    def outbound_rate(self) -> int:
        return self._rate

    # --- receive --------------------------------------------------------------------

    def _receive_as_engine(self, message: WireMessage) -> list[Event]:
        if not isinstance(message, str):
            data = bytes(message)
            if not data:
                if self.empty_frame_ends and self._state is _State.STARTED:
                    # mod_audio_fork's graceful shutdown: one empty frame, then it waits for
                    # us to close. The caller's stream is over: end the call cleanly.
                    self._commit(_State.STOPPED)
                    return [CallStopped(reason="graceful shutdown (empty binary frame)")]
                return []  # before the metadata, or after the end
            if self._state is _State.IDLE:
                # audio before the metadata: we missed the first frame; skipped until it comes
                return [UnknownMessage(kind="binary before metadata", raw=b"")]
            after = self._next_state(_AUDIO, local=False)
            if self._state is _State.STOPPED:
                return [UnknownMessage(kind="binary", raw=data)]
            data = self._carry + data
            cut = len(data) - len(data) % 2
            self._carry = data[cut:]
            self._commit(after)
            return [CallerAudio(pcm=data[:cut], sample_rate=self._rate)] if cut else []
        texts = split_json_texts(message.lstrip("\ufeff"))
        out: list[Event] = []
        for text in texts:
            if self._state is _State.IDLE:
                after = self._next_state(_METADATA, local=False)
                started, rate_given = call_started(parse_metadata(text), self.default_rate)
                self.rate_source = "the first message" if rate_given else f"{self.name}'s default (default_rate)"
                self._rate = started.sample_rate
                self.call_id = started.call_id
                self._commit(after)
                out.append(started)
            else:
                out.extend(self._decode_text_event(text))
        return out

    def _decode_text_event(self, text: str) -> list[Event]:
        try:
            value = decode_text(text) if text.strip() and len(text) <= MAX_METADATA_CHARS else text
        except Undecodable:
            value = text
        if isinstance(value, dict):
            name = value.get("event", value.get("type"))
            name = name if isinstance(name, str) and name else "text"
            kind, event = self._classify(name, value)
        else:
            name, value = "text", text
            kind, event = _TEXT, UnknownMessage(kind=name, raw=text)
        after = self._next_state(kind, local=False)
        if self._state is _State.STOPPED:
            event = UnknownMessage(kind=name, raw=value)
        self._commit(after)
        return [event]

    @staticmethod
    def _classify(name: str, value: dict) -> tuple[str, Event]:
        lowered = name.lower()
        if lowered == "text" and "dtmf" in value:
            # drachtio's example shape: {"dtmf": "5", "duration": ..., "source": ...}
            digit = _find_digit(value)
            if digit is not None:
                return _TEXT, Dtmf(digit)
        if lowered in _DTMF_KINDS:
            digit = _find_digit(value)
            if digit is not None:
                return _TEXT, Dtmf(digit)
        elif lowered in _STOP_KINDS:
            reason = value.get("reason")
            return _STOP, CallStopped(reason=reason if isinstance(reason, str) else "", raw=value)
        return _TEXT, UnknownMessage(kind=name, raw=value)

    def _receive_as_provider(self, message: WireMessage) -> list[Event]:
        if is_binary(message):
            raise RemoteProtocolError(
                "knowlarity: the engine must not send binary frames (mod_audio_fork discards them)",
                CloseCode.UNSUPPORTED_DATA,
            )
        assert isinstance(message, str)
        msg = loads_object(message, what="knowlarity command")
        kind_name = msg.get("type")
        if not isinstance(kind_name, str) or not kind_name:
            raise RemoteProtocolError("knowlarity: command has no \"type\" string", CloseCode.INVALID_PAYLOAD)
        result: list[Event]
        if kind_name == "playAudio":
            after = self._next_state(_PLAY, local=False)
            result = self._decode_play(msg)
        elif kind_name == "killAudio":
            after = self._next_state(_KILL, local=False)
            result = [Clear()]
        else:
            after = self._next_state(_UNKNOWN, local=False)
            result = [UnknownMessage(kind=kind_name, raw=msg)]
        self._commit(after)
        return result

    @staticmethod
    def _decode_play(msg: dict) -> list[Event]:
        data = msg.get("data")
        if not isinstance(data, dict):
            raise RemoteProtocolError("knowlarity: playAudio without a \"data\" object", CloseCode.INVALID_PAYLOAD)
        content = data.get("audioContent")
        text_content = data.get("textContent")
        if text_content is not None and not isinstance(text_content, str):
            raise RemoteProtocolError("knowlarity: playAudio textContent must be a string", CloseCode.INVALID_PAYLOAD)
        events: list[Event] = []
        if content not in (None, "", "None"):
            events.extend(decode_clip(data))
        instructions = parse_text_content(text_content or "")
        if instructions.get("asr_disconnect", "").lower() == "true":
            target = instructions.get("parameter1")
            events.append(Hangup() if target is None else Transfer(target))
        return events or [UnknownMessage(kind="playAudio", raw=msg)]

    # --- send -----------------------------------------------------------------------

    def _encode_as_engine(self, kind: str, command: Event) -> list[WireMessage]:
        if isinstance(command, PlayAudio):
            return self._encode_play(command)
        if isinstance(command, Clear):
            return [dumps({"type": "killAudio"})] if self.kill_audio else []
        if isinstance(command, Mark):
            return []  # no mark on the wire: the engine's playout ledger settles marks
        if isinstance(command, Hangup):
            return [play_message("None", "asr_disconnect=true")]
        assert isinstance(command, Transfer)
        check_transfer_target(command.target)
        return [play_message("None", f"asr_disconnect=true,parameter1={command.target}")]

    def clip_bytes(self, sample_rate: int) -> int:
        """The most PCM bytes one playAudio carries at ``sample_rate``."""
        return max(2, min(sample_rate * self.max_clip_ms // 1000 * 2, MAX_CLIP_PCM_BYTES))

    def _encode_play(self, command: PlayAudio) -> list[WireMessage]:
        step = self.clip_bytes(command.sample_rate)
        pcm = command.pcm
        return [
            play_message(b64encode(build_wav(pcm[offset : offset + step], command.sample_rate)))
            for offset in range(0, len(pcm), step)
        ]

    def _encode_as_provider(self, kind: str, event: Event) -> list[WireMessage]:
        if isinstance(event, CallStarted):
            self._rate = event.sample_rate
            self.call_id = event.call_id
            return [encode_metadata(event, self.layout, self.default_rate)]
        if isinstance(event, CallerAudio):
            if event.sample_rate != self._rate:
                raise LocalProtocolError(
                    f"knowlarity: this call announced {self._rate} Hz, got {event.sample_rate} Hz caller audio"
                )
            return [bytes(event.pcm)] if event.pcm else []
        assert isinstance(event, CallStopped)
        return [b""]  # mod_audio_fork's flush frame; the transport then closes


def _find_digit(value: dict) -> str | None:
    return parse_digit(value.get("digit"), value.get("dtmf"), value.get("data"))
