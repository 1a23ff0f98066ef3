"""Knowlarity's first frame: the call's metadata, read leniently, and the layouts the
simulated provider sends. Sans-IO, no trio.

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
"""

from __future__ import annotations

import ast
import json
import urllib.parse
import warnings
from typing import Any

from ..errors import CloseCode, RemoteProtocolError
from ..events import CallStarted
from ._common import as_text, dumps, first_text, parse_sample_rate

__all__ = ["parse_metadata", "call_started", "encode_metadata", "decode_text", "Undecodable", "LAYOUTS", "HELLO_EVENT", "DEFAULT_RATE", "MAX_METADATA_CHARS"]

#: the caller audio's rate when the metadata says none (Verloop's configuration)
DEFAULT_RATE = 16000

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
HELLO_EVENT = "websocket:connected"
MAX_METADATA_CHARS = 1024 * 1024
_LITERAL_MAX_CHARS = 64 * 1024
_MAX_LAYERS = 3


# --- lenient metadata parsing --------------------------------------------------------


class Undecodable(Exception):
    pass


def _literal(text: str) -> Any:
    """A Python literal (dicts, lists, strings, numbers...), or raise Undecodable."""
    if len(text) > _LITERAL_MAX_CHARS or text[:1] not in ("{", "'", '"'):
        raise Undecodable("not a Python literal")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes warn at compile time
            return _jsonish(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, Warning) as exc:
        raise Undecodable(f"not a Python literal ({type(exc).__name__})") from None


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


def decode_text(text: str, layers: int = 0) -> Any:
    """Decode JSON, JSON in a JSON string, a Python literal, or URL-encoded forms of them."""
    text = text.strip()
    json_problem = ""
    for parse in (json.loads, _literal):
        try:
            value = parse(text)
        except (ValueError, RecursionError, Undecodable) as exc:
            if parse is json.loads:
                json_problem = str(exc)
            continue
        if isinstance(value, str) and layers < _MAX_LAYERS:
            try:
                return decode_text(value, layers + 1)  # a string holding JSON: decode it too
            except Undecodable:
                return value
        return value
    if "%" in text and layers < _MAX_LAYERS:
        for unquote in (urllib.parse.unquote, urllib.parse.unquote_plus):
            decoded = unquote(text)
            if decoded != text:
                try:
                    return decode_text(decoded, layers + 1)
                except Undecodable:
                    pass
    raise Undecodable(json_problem)


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
    if len(text) > MAX_METADATA_CHARS:
        raise RemoteProtocolError(
            f"knowlarity: the metadata frame is {len(text)} characters, more than {MAX_METADATA_CHARS}",
            CloseCode.INVALID_PAYLOAD,
        )
    try:
        value = decode_text(text)
    except Undecodable as exc:
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
    if isinstance(value, str) and len(value) <= MAX_METADATA_CHARS:
        try:
            decoded = decode_text(value)
        except Undecodable:
            return None
        return decoded if isinstance(decoded, dict) else None
    return None


def call_started(meta: dict, default_rate: int = DEFAULT_RATE) -> tuple[CallStarted, bool]:
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
            if key == "event" and value == HELLO_EVENT:
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


def encode_metadata(event: CallStarted, layout: str, default_rate: int) -> str:
    """The first frame the PROVIDER role sends, in one of :data:`LAYOUTS`."""
    custom = dict(event.custom)
    if layout == "verloop":
        campaign = custom.pop("campaign", "")
        metadata = {**custom, "event": HELLO_EVENT, "call_type": event.direction}
        frame: dict[str, Any] = {
            "uuid": event.call_id,
            "sample_rate": event.sample_rate,
            "from": event.caller,
            "to": event.called,
            "campaign": campaign,
            "metadata": metadata,
        }
    elif layout == "fork":
        frame = {"callId": event.call_id, "from": event.caller, "to": event.called, **custom}
        if event.sample_rate != default_rate:
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
        if event.sample_rate != DEFAULT_RATE:  # the layout has no rate field otherwise
            frame["sample_rate"] = event.sample_rate
    return dumps(frame)
