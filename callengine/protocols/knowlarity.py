"""Knowlarity (as documented by Verloop): mod_audio_fork framing.

Wire format (see protocols.md section 2)::

    Knowlarity -> us   one metadata text frame, then binary frames of raw PCM16LE
    us -> Knowlarity   JSON text: {"type":"playAudio","data":{...}} (a whole WAV file per
                       message), {"type":"killAudio"}; hang-up and transfer are playAudio
                       messages with audioContent "None" and a textContent instruction

Decisions where the documentation is unsure:

* **Metadata is parsed leniently** (:func:`parse_metadata`): a JSON object; a JSON string
  holding JSON (double-encoded, up to three layers); a Python dict literal
  (``ast.literal_eval``, which evaluates literals only, never code; tried only on texts up
  to 64 KiB); and URL-encoded forms of those. Nested ``metadata`` and ``ivr_data`` may be
  objects or strings in any of those forms. The result must be a dict, else
  RemoteProtocolError 1007 saying what was found.
* **Field mapping**: call id from ``uuid``/``callid``/``call_id``/``callId``/...; caller
  from ``from``/``customer_number``/...; called from ``to``/``virtual_number``/...;
  direction from ``call_type``/``direction``; sample rate from ``sample_rate`` (default
  16000; numeric strings allowed; outside [4000, 192000] Hz is RemoteProtocolError 1007).
  Keys are looked up at the top level first, then in the decoded ``metadata``, then in the
  decoded ``ivr_data``. ``custom`` gets every other key from all three levels, flattened
  (top level first, then metadata, then ivr_data, later levels winning on a clash).
  Recognised fields that are empty (``"campaign": ""`` on inbound calls, ...) and
  the ``"event": "websocket:connected"`` hello marker are left out of ``custom``; ``raw``
  keeps the whole message. A nested field that cannot be decoded to a dict is kept in
  ``custom`` unchanged.
* **No call id** (none of the id keys present and non-empty): accepted, with
  ``call_id=""``. mod_audio_fork's first frame is per-integration configuration, so a
  missing id is not a framing error, and inventing one would pass a fake id off as
  Knowlarity's; the session layer has its own connection id for logs. ``stream_id`` is
  always ``""`` (there is no separate stream id).
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

import ast
import json
import urllib.parse
import warnings
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

__all__ = [
    "KnowlarityCodec",
    "parse_metadata",
    "MOD_AUDIO_FORK_MAX_MESSAGE",
    "MAX_CLIP_PCM_BYTES",
    "LAYOUTS",
    "CLIP_MODES",
]

_DEFAULT_RATE = 16000

#: mod_audio_fork's ``MAX_RECV_BUF_SIZE``: text messages longer than this are dropped.
MOD_AUDIO_FORK_MAX_MESSAGE = 65 * 1024 * 10
# Keep a margin under the limit for the JSON envelope and any framing surprises.
_FRAME_BUDGET = MOD_AUDIO_FORK_MAX_MESSAGE - 1024
_PLAY_ENVELOPE = len('{"type":"playAudio","data":{"audioContentType":"wave","audioContent":""}}')
#: The most PCM one playAudio message may carry: its base64 WAV still fits the budget.
MAX_CLIP_PCM_BYTES = ((_FRAME_BUDGET - _PLAY_ENVELOPE) // 4 * 3 - 44) // 2 * 2

#: How the ENGINE sends playbacks (the ``clips`` option).
CLIP_MODES = ("stream", "utterance")

#: First-message layouts the PROVIDER role can send: Verloop's, the callid one seen in three
#: Knowlarity integrations, and mod_audio_fork's own example ({"callId","from","to"}, in
#: drachtio's and Awaaz's freeswitch_modules examples/audio_fork.js; legacy Awaaz's default).
LAYOUTS = ("verloop", "callid", "fork")

_ID_KEYS = ("uuid", "callid", "call_id", "callId", "call_uuid", "callUuid", "CallUUID", "call_sid", "callSid")
_CALLER_KEYS = ("from", "customer_number", "caller", "caller_number", "caller_id", "From", "cli")
_CALLED_KEYS = ("to", "virtual_number", "called", "called_number", "did", "To", "dnis")
_DIRECTION_KEYS = ("call_type", "direction", "callType", "call_direction")
_RATE_KEYS = ("sample_rate", "sampleRate", "rate")
_NESTED_KEYS = ("metadata", "ivr_data")
# Recognised fields: left out of ``custom`` when empty, because they then say nothing.
_RECOGNISED = frozenset(
    _ID_KEYS + _CALLER_KEYS + _CALLED_KEYS + _DIRECTION_KEYS + _RATE_KEYS + _NESTED_KEYS
    + ("campaign", "client_meta_id", "event_timestamp")
)
_HELLO_EVENT = "websocket:connected"

_DTMF_KINDS = frozenset({"dtmf", "websocket:dtmf", "dtmf_event", "dtmf-event"})
_STOP_KINDS = frozenset(
    {
        "stop", "stopped", "hangup", "hang_up", "hang-up", "disconnect", "disconnected",
        "call_end", "call_ended", "callended", "end", "websocket:disconnected",
        "websocket:stop", "websocket:closed",
    }
)

_MAX_METADATA_CHARS = 1024 * 1024
_LITERAL_MAX_CHARS = 64 * 1024
_MAX_LAYERS = 3


# --- lenient metadata parsing --------------------------------------------------------


class _Undecodable(Exception):
    pass


def _literal(text: str) -> Any:
    """A Python literal (dicts, lists, strings, numbers...), or raise _Undecodable."""
    if len(text) > _LITERAL_MAX_CHARS or text[:1] not in ("{", "'", '"'):
        raise _Undecodable("not a Python literal")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes warn at compile time
            return _jsonish(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, Warning) as exc:
        raise _Undecodable(f"not a Python literal ({type(exc).__name__})") from None


def _jsonish(value: Any) -> Any:
    """Make a literal_eval result look like decoded JSON (str keys, lists, no bytes)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else as_text(k) or repr(k)): _jsonish(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonish(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _decode_text(text: str, layers: int = 0) -> Any:
    """Decode JSON, JSON in a JSON string, a Python literal, or URL-encoded forms of them."""
    text = text.strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        json_problem = str(exc)
    else:
        if isinstance(value, str) and layers < _MAX_LAYERS:
            try:
                return _decode_text(value, layers + 1)
            except _Undecodable:
                return value
        return value
    try:
        value = _literal(text)
    except _Undecodable:
        pass
    else:
        if isinstance(value, str) and layers < _MAX_LAYERS:
            try:
                return _decode_text(value, layers + 1)
            except _Undecodable:
                return value
        return value
    if "%" in text and layers < _MAX_LAYERS:
        for unquote in (urllib.parse.unquote, urllib.parse.unquote_plus):
            decoded = unquote(text)
            if decoded != text:
                try:
                    return _decode_text(decoded, layers + 1)
                except _Undecodable:
                    pass
    raise _Undecodable(json_problem)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def parse_metadata(text: str) -> dict:
    """Decode a Knowlarity first frame leniently into a dict.

    Accepts a JSON object, a JSON string holding JSON, a Python dict literal, and
    URL-encoded forms of these. Raises RemoteProtocolError (1007) saying what was wrong.
    Nested ``metadata`` / ``ivr_data`` strings are left as they are here; see
    :class:`KnowlarityCodec` for how they are decoded.
    """
    if not isinstance(text, str):
        raise RemoteProtocolError("knowlarity: the metadata must be a text frame", CloseCode.UNSUPPORTED_DATA)
    if not text.strip():
        raise RemoteProtocolError("knowlarity: the metadata frame is empty", CloseCode.INVALID_PAYLOAD)
    if len(text) > _MAX_METADATA_CHARS:
        raise RemoteProtocolError(
            f"knowlarity: the metadata frame is {len(text)} characters, more than {_MAX_METADATA_CHARS}",
            CloseCode.INVALID_PAYLOAD,
        )
    try:
        value = _decode_text(text)
    except _Undecodable as exc:
        raise RemoteProtocolError(
            "knowlarity: the metadata is not JSON, JSON inside a string, URL-encoded JSON or a "
            f"Python dict literal (JSON parser: {exc})",
            CloseCode.INVALID_PAYLOAD,
        ) from None
    if not isinstance(value, dict):
        raise RemoteProtocolError(
            f"knowlarity: the metadata decoded to {_describe(value)}, expected an object", CloseCode.INVALID_PAYLOAD
        )
    return value


def _decode_nested(value: Any) -> dict | None:
    """A nested ``metadata``/``ivr_data`` value as a dict, or None if it is not one."""
    if isinstance(value, dict):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str) and len(value) <= _MAX_METADATA_CHARS:
        try:
            decoded = _decode_text(value)
        except _Undecodable:
            return None
        return decoded if isinstance(decoded, dict) else None
    return None


def _call_started(meta: dict, default_rate: int = _DEFAULT_RATE) -> tuple[CallStarted, bool]:
    """Map a decoded first frame (either known layout, or something close) to CallStarted."""
    nested: dict[str, dict] = {}
    kept_nested: dict[str, Any] = {}
    for key in _NESTED_KEYS:
        if key in meta:
            decoded = _decode_nested(meta[key])
            if decoded is None:
                kept_nested[key] = meta[key]
            else:
                nested[key] = decoded
    levels = [meta, nested.get("metadata", {}), nested.get("ivr_data", {})]

    used: set[tuple[int, str]] = set()

    def lookup(keys: tuple[str, ...]) -> str:
        value, source, key = first_text(levels, keys)
        if source is not None:
            used.add((next(i for i, level in enumerate(levels) if level is source), key))
        return value

    call_id = lookup(_ID_KEYS)
    caller = lookup(_CALLER_KEYS)
    called = lookup(_CALLED_KEYS)
    direction = lookup(_DIRECTION_KEYS)
    rate = default_rate
    rate_given = False
    for index, level in enumerate(levels):
        key = next((k for k in _RATE_KEYS if level.get(k) not in (None, "")), None)
        if key is not None:
            rate = parse_sample_rate(level[key], default_rate, what=f"knowlarity {key}")
            rate_given = True
            used.add((index, key))
            break

    custom: dict[str, Any] = {}
    for index, level in enumerate(levels):
        for key, value in level.items():
            if (index, key) in used or (index == 0 and key in _NESTED_KEYS):
                continue
            if key in _RECOGNISED and (value is None or value == ""):
                continue
            if key == "event" and value == _HELLO_EVENT:
                continue
            custom[key] = value
    custom.update(kept_nested)
    started = CallStarted(
        call_id=call_id,
        stream_id="",
        caller=caller,
        called=called,
        sample_rate=rate,
        direction=direction,
        custom=custom,
        raw=meta,
    )
    return started, rate_given


def _parse_text_content(text: str) -> dict[str, str]:
    """``"asr_disconnect=true,parameter1=default"`` -> {"asr_disconnect": "true", ...}."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


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


def _play_message(audio_b64: str, text_content: str | None = None) -> str:
    data: dict[str, str] = {"audioContentType": "wave", "audioContent": audio_b64}
    if text_content is not None:
        data["textContent"] = text_content
    return dumps({"type": "playAudio", "data": data})


class KnowlarityCodec(CallStateMachine, Codec):
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
        inbound_rate=_DEFAULT_RATE,
        outbound_rate=_DEFAULT_RATE,
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
                default_rate if default_rate is not None else type(self).capabilities.inbound_rate, _DEFAULT_RATE, what="default_rate"
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
        if max_clip_ms * _DEFAULT_RATE // 1000 * 2 > MAX_CLIP_PCM_BYTES:
            raise ValueError(
                f"max_clip_ms={max_clip_ms} does not fit mod_audio_fork's {MOD_AUDIO_FORK_MAX_MESSAGE}-byte "
                f"message limit at {_DEFAULT_RATE} Hz (at most {MAX_CLIP_PCM_BYTES * 1000 // (2 * _DEFAULT_RATE)} ms)"
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
        )

        self._state = _State.IDLE
        self._start_seen = False
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

    def receive(self, message: WireMessage) -> Sequence[Event]:
        check_role_and_type(message)
        if self.role is Role.ENGINE:
            return self._receive_as_engine(message)
        return self._receive_as_provider(message)

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
        texts = _split_json_texts(message.lstrip("\ufeff"))
        out: list[Event] = []
        for text in texts:
            if self._state is _State.IDLE:
                after = self._next_state(_METADATA, local=False)
                started, rate_given = _call_started(parse_metadata(text), self.default_rate)
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
            value = _decode_text(text) if text.strip() and len(text) <= _MAX_METADATA_CHARS else text
        except _Undecodable:
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
            events.extend(_decode_clip(data))
        instructions = _parse_text_content(text_content or "")
        if instructions.get("asr_disconnect", "").lower() == "true":
            target = instructions.get("parameter1")
            events.append(Hangup() if target is None else Transfer(target))
        return events or [UnknownMessage(kind="playAudio", raw=msg)]

    # --- send -----------------------------------------------------------------------

    def send(self, event: Event) -> Sequence[WireMessage]:
        if self.role is Role.ENGINE:
            return self._send_as_engine(event)
        return self._send_as_provider(event)

    def _send_as_engine(self, command: Event) -> list[WireMessage]:
        if isinstance(command, PlayAudio):
            kind = _PLAY
        elif isinstance(command, Clear):
            kind = _KILL
        elif isinstance(command, Mark):
            kind = _MARK
        elif isinstance(command, Hangup):
            kind = _HANGUP
        elif isinstance(command, Transfer):
            kind = _TRANSFER
            _check_transfer_target(command.target)
        else:
            raise LocalProtocolError(f"knowlarity: the engine cannot send {type(command).__name__}")
        after = self._next_state(kind, local=True)
        out: list[WireMessage]
        if isinstance(command, PlayAudio):
            out = self._encode_play(command)
        elif isinstance(command, Clear):
            out = [dumps({"type": "killAudio"})] if self.kill_audio else []
        elif isinstance(command, Mark):
            out = []  # no mark on the wire: the engine's playout ledger settles marks
        elif isinstance(command, Hangup):
            out = [_play_message("None", "asr_disconnect=true")]
        else:
            assert isinstance(command, Transfer)
            out = [_play_message("None", f"asr_disconnect=true,parameter1={command.target}")]
        self._commit(after)
        return out

    def clip_bytes(self, sample_rate: int) -> int:
        """The most PCM bytes one playAudio carries at ``sample_rate``."""
        return max(2, min(sample_rate * self.max_clip_ms // 1000 * 2, MAX_CLIP_PCM_BYTES))

    def _encode_play(self, command: PlayAudio) -> list[WireMessage]:
        step = self.clip_bytes(command.sample_rate)
        pcm = command.pcm
        return [
            _play_message(b64encode(build_wav(pcm[offset : offset + step], command.sample_rate)))
            for offset in range(0, len(pcm), step)
        ]

    def _send_as_provider(self, event: Event) -> list[WireMessage]:
        if isinstance(event, CallStarted):
            kind = _METADATA
        elif isinstance(event, CallerAudio):
            kind = _AUDIO
        elif isinstance(event, CallStopped):
            kind = _STOP
        elif isinstance(event, UnknownMessage):
            kind = _UNKNOWN
        elif isinstance(event, (Dtmf, MarkEchoed, Connected)):
            what = {Dtmf: "DTMF events (keys are in-band tones)", MarkEchoed: "mark echoes",
                    Connected: "a separate connected message (the metadata frame is the hello)"}
            raise UnsupportedCommand(f"knowlarity has no {what[type(event)]}")
        else:
            raise LocalProtocolError(f"knowlarity: the provider cannot send {type(event).__name__}")
        after = self._next_state(kind, local=True)
        if isinstance(event, CallStarted):
            out: list[WireMessage] = [self._encode_metadata(event)]
            self._rate = event.sample_rate
            self.call_id = event.call_id
        elif isinstance(event, CallerAudio):
            if event.sample_rate != self._rate:
                raise LocalProtocolError(
                    f"knowlarity: this call announced {self._rate} Hz, got {event.sample_rate} Hz caller audio"
                )
            out = [bytes(event.pcm)] if event.pcm else []
        elif isinstance(event, CallStopped):
            out = [b""]  # mod_audio_fork's flush frame; the transport then closes
        else:
            assert isinstance(event, UnknownMessage)
            out = [_raw_message(event)]
        self._commit(after)
        return out

    def _encode_metadata(self, event: CallStarted) -> str:
        custom = dict(event.custom)
        if self.layout == "verloop":
            campaign = custom.pop("campaign", "")
            metadata = {**custom, "event": _HELLO_EVENT, "call_type": event.direction}
            frame: dict[str, Any] = {
                "uuid": event.call_id,
                "sample_rate": event.sample_rate,
                "from": event.caller,
                "to": event.called,
                "campaign": campaign,
                "metadata": metadata,
            }
        elif self.layout == "fork":
            frame = {"callId": event.call_id, "from": event.caller, "to": event.called, **custom}
            if event.sample_rate != self.default_rate:
                frame["sample_rate"] = event.sample_rate
        else:
            client_meta_id = custom.pop("client_meta_id", "")
            event_timestamp = custom.pop("event_timestamp", "")
            if event.direction:
                custom["call_type"] = event.direction
            frame = {
                "ivr_data": dumps(custom),
                "callid": event.call_id,
                "virtual_number": event.called,
                "customer_number": event.caller,
                "client_meta_id": client_meta_id,
                "event_timestamp": event_timestamp,
            }
            if event.sample_rate != _DEFAULT_RATE:  # the layout has no rate field otherwise
                frame["sample_rate"] = event.sample_rate
        return dumps(frame)


def _find_digit(value: dict) -> str | None:
    candidates = [value.get("digit"), value.get("dtmf"), value.get("data")]
    for candidate in candidates:
        if isinstance(candidate, dict):
            candidate = candidate.get("digit")
        if isinstance(candidate, int) and not isinstance(candidate, bool) and 0 <= candidate <= 9:
            candidate = str(candidate)
        if isinstance(candidate, str):
            digit = candidate.strip().upper()
            if len(digit) == 1 and digit in DTMF_DIGITS:
                return digit
    return None


def _decode_clip(data: dict) -> list[Event]:
    """The audio of one playAudio: a WAV file ("wave"/"wav") or headerless PCM ("raw")."""
    content_type = data.get("audioContentType")
    raw = b64decode(data.get("audioContent"), what="knowlarity playAudio audioContent")
    if content_type in ("wave", "wav"):
        try:
            wav = parse_wav(raw)
        except WavError as exc:
            raise RemoteProtocolError(f"knowlarity: playAudio audioContent is not a WAV file: {exc}", CloseCode.INVALID_PAYLOAD) from exc
        pcm, rate = wav.pcm, wav.sample_rate
    elif content_type == "raw":
        if data.get("sampleRate") in (None, ""):
            raise RemoteProtocolError("knowlarity: raw playAudio needs a sampleRate", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(data.get("sampleRate"), _DEFAULT_RATE, what="knowlarity playAudio sampleRate")
        if len(raw) % 2:
            raise RemoteProtocolError(
                f"knowlarity: raw playAudio is {len(raw)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD
            )
        pcm = raw
    else:
        raise RemoteProtocolError(
            f"knowlarity: unsupported audioContentType {content_type!r:.40} (expected wave, wav or raw)",
            CloseCode.INVALID_PAYLOAD,
        )
    return [PlayAudio(pcm=pcm, sample_rate=rate)] if pcm else []


def _check_transfer_target(target: object) -> None:
    if not isinstance(target, str) or not target:
        raise LocalProtocolError(f"knowlarity: transfer target must be a non-empty string, got {target!r}")
    bad = sorted({c for c in target if c in ",=" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise LocalProtocolError(
            f"knowlarity: transfer target {target!r} contains {bad!r}; textContent is a comma-separated "
            "key=value list, so commas, '=' and control characters cannot be carried"
        )


def _raw_message(event: UnknownMessage) -> WireMessage:
    """Let the simulator inject arbitrary frames: a dict is JSON-encoded, text/bytes go as is."""
    raw = event.raw
    if isinstance(raw, (str, bytes)):
        return raw
    if isinstance(raw, Mapping):
        return dumps(dict(raw))
    return dumps({"type": event.kind})


def _split_json_texts(text: str) -> list[str]:
    """One text frame may hold several JSON texts back to back (drachtio's mod_audio_fork
    appends queued texts into one frame): split them. Anything that is not a run of JSON
    objects comes back whole, for the lenient parsers."""
    stripped = text.strip()
    if not stripped.startswith("{") or "}" not in stripped[:-1]:
        return [text]
    decoder = json.JSONDecoder()
    parts: list[str] = []
    at = 0
    try:
        while at < len(stripped):
            _, end = decoder.raw_decode(stripped, at)
            parts.append(stripped[at:end])
            at = end
            while at < len(stripped) and stripped[at] in " \t\r\n":
                at += 1
    except ValueError:
        return [text]
    return parts

