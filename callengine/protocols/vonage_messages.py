"""Vonage Voice API WebSockets: the messages, what is known of them and from where, and
the helpers that read and write them (the codec is ``vonage.py``). Sans-IO, no trio.

Vonage dials our ``wss://`` URL from an NCCO ``connect`` action whose endpoint has
``"type": "websocket"``. Wire format::

    Vonage -> us   one JSON text frame: the endpoint's ``headers`` at the top level, plus
                   "content-type": "audio/l16;rate=16000" (and, in current docs,
                   "event": "websocket:connected"); then binary frames of raw PCM16LE,
                   20 ms each; interleaved JSON text events: websocket:dtmf,
                   websocket:notify, websocket:cleared
    us -> Vonage   binary frames of raw PCM16LE at the same rate, 20 ms each; JSON text
                   commands {"action":"clear"} and {"action":"notify","payload":{...}}

Facts, where each came from, and how sure we are (C: confirmed in Vonage's own docs; S:
secondary source, e.g. third-party code or a spec generated from the docs; I: inferred,
unverified). References, as stored copies read on 2026-12-02:

* [N16] developer.nexmo.com/voice/voice-api/guides/websockets (the Nexmo-era guide,
  2016-2019 text): first message is JSON text with the ``headers`` plus ``content-type``,
  no ``event`` key; "after the initial text message all subsequent messages ... will be
  binary"; headers at most 512 bytes; Vonage is the client.
* [V21] Vonage's developer-portal source, ``_documentation/en/voice/voice-api/concepts/
  websockets.md`` (the nexmo-developer repository, ~2021): the first message has
  ``"event":"websocket:connected"`` and ``content-type``, headers flattened to the top
  level (``headers`` itself is not a key); "subsequent messages ... can be text or
  binary"; L16 at 8 or 16 kHz, "a 20ms frame size", 320 B at 8 kHz, 640 B at 16 kHz; DTMF
  as ``{"event":"websocket:dtmf","digit":"5","duration":260}``, one digit per event,
  ``0-9 * #``; outbound audio "must be in the same format", "each message is 320 or 640
  bytes ... and contains 20ms"; sent faster than real time it is buffered (1024 messages
  in that version); hang-up by REST ``PUT /v1/calls/{uuid}`` ``{"action":"hangup"}``.
* [T26] developer.vonage.com/en/tutorials/play-audio-into-a-websocket (2026 copy):
  "Vonage will only buffer 3072 messages ... around 60 seconds of audio"; for longer
  audio, pace at 18-19 ms per message.
* [A26] the AsyncAPI description "Vonage Voice WebSocket API" (api-evangelist/vonage,
  ``asyncapi/vonage-asyncapi.yml``, version 2026.05, validated 2026-05-29 against
  developer.vonage.com/en/voice/voice-api/concepts/websockets): ``{"action":"clear"}``
  discards queued audio and stops playback, acknowledged by ``{"event":
  "websocket:cleared"}``; ``{"action":"notify","payload":{...}}`` is answered with
  ``{"event":"websocket:notify","payload":{...}}`` (the payload echoed) once every frame
  buffered before it has played.
* [P] Pipecat's Vonage serializer (written for the Video API Audio Connector, which uses
  the same event names) and two other third-party Voice API integrations: DTMF digit at
  the top level or as ``dtmf.digit``; one sample uses ``audio/l16;rate=24000``.

So: first-message shape C [N16, V21]; ``event: websocket:connected`` C [V21, A26]; binary
L16 20 ms frames C [V21]; 8 and 16 kHz C [V21]; 24 kHz S [P] (newer docs are said to
list it; not seen in a stored Vonage page); DTMF top-level shape C [V21], ``dtmf.digit``
shape S [P]; clear/cleared and notify C-by-proxy [A26 quoting the current guide], S for
the exact payload echo; buffer of 3072 messages C [T26]; that Vonage puts no call uuid in
the first frame C for the documented examples [N16, V21, A26] (they carry only ``event``,
``content-type`` and the NCCO's headers), I that it never does.

**The call's uuid.** The REST API (hang-up, transfer, talk...) needs the call (leg)
``uuid``, which Vonage sends to the answer webhook, not to the socket. The NCCO must pass
it in the endpoint headers, e.g.::

    {"action": "connect", "endpoint": [{"type": "websocket", "uri": "wss://.../vonage",
      "content-type": "audio/l16;rate=16000",
      "headers": {"call_uuid": "<uuid>", "conversation_uuid": "<conversation_uuid>",
                  "from": "<from>", "to": "<to>"}}]}

The codec reads the call id from ``call_uuid`` (then ``uuid``, ``callUuid``,
``call-uuid``, ``call_id``, ``callId``), the caller from ``from`` (``caller``,
``caller-id``, ``caller_id``), the called number from ``to`` (``called``), the direction
from ``direction``; ``conversation_uuid`` stays in ``custom`` and is also exposed as
:attr:`VonageCodec.conversation_uuid`. Without a uuid header ``call_id`` is ``""``.
(``callengine.control.ids_from_start`` reads ``call_uuid`` or ``uuid`` from the raw first
message: use one of those two.) An outbound call placed with an inline NCCO (``POST
/v1/calls``) learns its uuid only from the 201 response, after the NCCO was sent, so its
first message cannot carry it: correlate with a header of your own instead (I).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted, Dtmf, Event, MarkEchoed, UnknownMessage
from ._common import dumps, first_text, parse_digit, parse_sample_rate

__all__ = [
    "looks_like_vonage",
    "parse_content_type",
    "is_first_message",
    "loads_or_none",
    "call_started",
    "read_event",
    "mark_name",
    "first_message",
    "dtmf_message",
    "DEFAULT_RATE",
    "FRAME_MS",
    "VONAGE_RATES",
    "VONAGE_BUFFER_MESSAGES",
    "VONAGE_DIGITS",
    "DTMF_SHAPES",
    "NOTIFY_EVENT",
    "CLEARED_EVENT",
]

#: the call's rate when the first message's content-type gives none (the codec's default_rate)
DEFAULT_RATE = 16000
#: Every Vonage audio message, either way, is this long [V21].
FRAME_MS = 20
#: The rates Vonage offers in ``content-type`` (24000: S, see the module docstring).
VONAGE_RATES = (8000, 16000, 24000)
#: Outbound messages Vonage buffers ahead of playout [T26].
VONAGE_BUFFER_MESSAGES = 3072
#: PROVIDER ``dtmf_shape`` values.
DTMF_SHAPES = ("top", "nested")

_HELLO = "websocket:connected"
_DTMF_EVENT = "websocket:dtmf"
NOTIFY_EVENT = "websocket:notify"
CLEARED_EVENT = "websocket:cleared"
_CONTENT_TYPE = "content-type"
_MEDIA_TYPE = "audio/l16"

_ID_KEYS = ("call_uuid", "uuid", "callUuid", "call-uuid", "call_id", "callId")
_CALLER_KEYS = ("from", "caller", "caller-id", "caller_id")
_CALLED_KEYS = ("to", "called")
_DIRECTION_KEYS = ("direction",)
_CONVERSATION_KEYS = ("conversation_uuid", "conversationUuid", "conversation-uuid")
_MARK_KEYS = ("name", "mark")
#: The keys Vonage documents for DTMF; the rest of DTMF_DIGITS is accepted on receive.
VONAGE_DIGITS = "0123456789*#"

_MAX_TEXT_CHARS = 1024 * 1024


def looks_like_vonage(message: object) -> bool:
    """Whether the first message of a connection is Vonage's: a JSON object text frame with
    a top-level ``content-type`` of ``audio/l16...`` (both documented shapes), or a
    top-level ``"event": "websocket:connected"``. (Knowlarity's Verloop metadata nests
    its ``websocket:connected`` inside ``metadata`` and has no content-type.) For the
    registry's ``detect_provider``, checked before the Knowlarity rule: a Vonage first
    message whose NCCO headers include ``uuid`` would otherwise pass for Knowlarity's."""
    if not isinstance(message, str) or len(message) > _MAX_TEXT_CHARS:
        return False
    value = loads_or_none(message.lstrip("\ufeff"))
    if not isinstance(value, dict):
        return False
    if value.get("event") == _HELLO:
        return True
    _, content_type = _content_type_of(value)
    return isinstance(content_type, str) and content_type.strip().lower().startswith(_MEDIA_TYPE)


def parse_content_type(value: object, default_rate: int) -> tuple[int, bool]:
    """``"audio/l16;rate=16000"`` -> ``(16000, True)``; no rate -> ``(default_rate, False)``.

    The media type must be ``audio/l16`` (any case, parameters in any order, spaces
    allowed); anything else, or a rate outside [4000, 192000] Hz, raises
    RemoteProtocolError 1007: audio read at the wrong rate or as the wrong codec is noise.
    """
    if not isinstance(value, str):
        raise RemoteProtocolError(f"vonage: content-type must be a string, got {type(value).__name__}", CloseCode.INVALID_PAYLOAD)
    media_type, *params = (part.strip() for part in value.split(";"))
    if media_type.lower() != _MEDIA_TYPE:
        raise RemoteProtocolError(
            f"vonage: content-type {value!r:.80} is not {_MEDIA_TYPE} (the only codec Vonage streams)", CloseCode.INVALID_PAYLOAD
        )
    for param in params:
        key, sep, rate = param.partition("=")
        if sep and key.strip().lower() == "rate":
            return parse_sample_rate(rate.strip().strip('"'), default_rate, what="vonage content-type rate"), True
    return default_rate, False


def _content_type_of(msg: Mapping[str, Any]) -> tuple[str | None, Any]:
    """The content-type key of a first message and its value (the key in any case, or
    with an underscore), or (None, None)."""
    if _CONTENT_TYPE in msg:
        return _CONTENT_TYPE, msg[_CONTENT_TYPE]
    for key, value in msg.items():
        if isinstance(key, str) and key.lower().replace("_", "-") in ("content-type", "contenttype"):
            return key, value
    return None, None


def is_first_message(msg: Mapping[str, Any]) -> bool:
    """A first message has the hello event, or no event at all (the Nexmo-era shape), or a
    content-type whatever it says."""
    event = msg.get("event")
    return event is None or event == _HELLO or _content_type_of(msg)[0] is not None


def loads_or_none(text: str) -> Any:
    if len(text) > _MAX_TEXT_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _find_digit(msg: Mapping[str, Any]) -> str | None:
    """The digit of a websocket:dtmf event: ``digit`` at the top level [V21], or ``dtmf``
    as an object with ``digit`` or as the digit itself [P]."""
    return parse_digit(msg.get("digit"), msg.get("dtmf"))


def mark_name(payload: Any) -> str:
    if isinstance(payload, dict):
        for key in _MARK_KEYS:
            name = payload.get(key)
            if isinstance(name, str) and name:
                return name
    return ""


def call_started(msg: dict, default_rate: int) -> tuple[CallStarted, str, bool, str]:
    """The CallStarted of a first message (a JSON object), with its content-type as sent
    (``""`` if not a string), whether that gave the rate (else ``default_rate``), and the
    conversation uuid (kept in ``custom`` too). The NCCO headers not read as a field go in
    ``custom``; RemoteProtocolError 1007 for a content-type that is not L16 at a sane rate."""
    ct_key, ct_value = _content_type_of(msg)
    if ct_key is None or ct_value in (None, ""):
        rate, given = default_rate, False
    else:
        rate, given = parse_content_type(ct_value, default_rate)
    used: set[str] = {"event", ct_key} if ct_key is not None else {"event"}

    def lookup(keys: tuple[str, ...]) -> str:
        value, source, key = first_text([msg], keys)
        if source is not None:
            used.add(key)
        return value

    call_id = lookup(_ID_KEYS)
    caller = lookup(_CALLER_KEYS)
    called = lookup(_CALLED_KEYS)
    direction = lookup(_DIRECTION_KEYS)
    conversation, _, _ = first_text([msg], _CONVERSATION_KEYS)  # kept in custom too
    custom = {key: value for key, value in msg.items() if key not in used}
    started = CallStarted(
        call_id=call_id, stream_id="", caller=caller, called=called, sample_rate=rate,
        direction=direction, custom=custom, raw=msg,
    )
    return started, ct_value if isinstance(ct_value, str) else "", given, conversation


def read_event(value: dict) -> Event | None:
    """The event of a JSON object text after the first message: a second first message,
    a key, a mark's echo, or else UnknownMessage; None for ``websocket:cleared`` (the clear's
    acknowledgement)."""
    name = value.get("event")
    name = name if isinstance(name, str) and name else "text"
    if name == _HELLO or (name == "text" and _content_type_of(value)[0] is not None):
        return UnknownMessage(kind="second metadata", raw=value)
    if name == _DTMF_EVENT:
        digit = _find_digit(value)
        return Dtmf(digit) if digit is not None else UnknownMessage(kind=name, raw=value)
    if name == NOTIFY_EVENT:
        mark = mark_name(value.get("payload"))
        return MarkEchoed(mark) if mark else UnknownMessage(kind=name, raw=value)
    if name == CLEARED_EVENT:
        return None
    return UnknownMessage(kind=name, raw=value)


def first_message(event: CallStarted, headers: Mapping[str, Any], *, connected_event: bool, uuid_header: str) -> str:
    """PROVIDER: the first message announcing ``event``: the hello (if ``connected_event``),
    the content-type, the NCCO ``headers`` and the CallStarted's ``custom`` (which wins),
    the call id under ``uuid_header`` (if any), ``from``, ``to`` and ``direction``."""
    frame: dict[str, Any] = {}
    if connected_event:
        frame["event"] = _HELLO
    frame[_CONTENT_TYPE] = f"{_MEDIA_TYPE};rate={event.sample_rate}"
    for key, value in {**headers, **event.custom}.items():
        if key not in ("event", _CONTENT_TYPE):  # the codec's own fields are not headers
            frame[key] = value
    if event.call_id and uuid_header:
        frame[uuid_header] = event.call_id
    if event.caller:
        frame["from"] = event.caller
    if event.called:
        frame["to"] = event.called
    if event.direction:
        frame["direction"] = event.direction
    return dumps(frame)


def dtmf_message(digit: str, shape: str, duration_ms: int) -> str:
    """PROVIDER: a ``websocket:dtmf`` event, ``shape`` ``"top"`` (as documented) or ``"nested"``."""
    if shape == "nested":
        return dumps({"event": _DTMF_EVENT, "dtmf": {"digit": digit, "duration": duration_ms}})
    return dumps({"event": _DTMF_EVENT, "digit": digit, "duration": duration_ms})
