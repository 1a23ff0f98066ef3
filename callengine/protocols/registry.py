"""Find a provider codec by name, by URL path, or from the first message on a socket."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from ..errors import ProtocolError
from .awaaz import AwaazCodec
from .base import Codec, Role, WireMessage
from .knowlarity import KnowlarityCodec, LegacyAwaazCodec, parse_metadata

__all__ = ["CODECS", "get_codec", "create_codec", "detect_provider", "provider_from_path"]

#: Provider name -> codec class.
CODECS: dict[str, type[Codec]] = {
    "awaaz": AwaazCodec,
    "knowlarity": KnowlarityCodec,
    "awaaz-legacy": LegacyAwaazCodec,
}

# Events an Awaaz socket can open with ("connected" may come before or after "start";
# a media frame first means we missed the start, which the codec will report).
_AWAAZ_FIRST_EVENTS = frozenset({"connected", "start", "media"})
# Event names of the JSON-event family (Awaaz, Twilio, Exotel...): a first frame carrying
# one of these at the top level is never Knowlarity metadata.
_JSON_EVENT_NAMES = _AWAAZ_FIRST_EVENTS | {"dtmf", "mark", "stop", "clear"}
# camelCase ids mean Twilio or Plivo, which callengine does not speak yet.
_CAMEL_CASE_IDS = ("streamSid", "callSid", "streamId", "callId", "accountSid")
# Keys that only a Knowlarity first frame carries (either known layout).
_KNOWLARITY_KEYS = frozenset(
    {"uuid", "callid", "call_id", "sample_rate", "virtual_number", "customer_number", "ivr_data", "client_meta_id"}
)


def get_codec(name: str) -> type[Codec]:
    """The codec class for provider ``name`` (case-insensitive). Raises ValueError."""
    key = name.strip().lower() if isinstance(name, str) else name
    try:
        return CODECS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown provider {name!r}; choose one of: {', '.join(sorted(CODECS))}") from None


def create_codec(name: str, role: Role | str = Role.ENGINE, **options: Any) -> Codec:
    """A new codec for provider ``name`` in ``role``, with codec-specific ``options``."""
    return get_codec(name)(Role(role), **options)


def detect_provider(message: WireMessage) -> str | None:
    """Guess the provider from the first message of a connection, or None if unsure.

    * Awaaz: a JSON object whose top-level ``event`` is ``connected``, ``start`` or
      ``media`` (``connected`` alone is enough), unless its ids are camelCase (Twilio,
      Plivo).
    * Knowlarity: a text frame that decodes leniently to a dict with a Knowlarity key
      (uuid, callid, sample_rate, virtual_number, ...) and no top-level JSON-event name in
      ``event``. Verloop's ``"event": "websocket:connected"`` is nested inside
      ``metadata``, so it does not count.
    * A binary first frame is None: both providers open with text.
    """
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        event = value.get("event")
        if isinstance(event, str) and event in _AWAAZ_FIRST_EVENTS:
            start = value.get("start")
            places = [value, start] if isinstance(start, dict) else [value]
            if any(key in place for place in places for key in _CAMEL_CASE_IDS):
                return None
            return "awaaz"
    try:
        metadata = parse_metadata(message)
    except ProtocolError:
        return None
    event = metadata.get("event")
    if isinstance(event, str) and event in _JSON_EVENT_NAMES:
        return None
    if _KNOWLARITY_KEYS.intersection(metadata):
        return "knowlarity"
    return None


def provider_from_path(path: str) -> str | None:
    """The provider named by a segment of a URL path, e.g. ``/vaani/knowlarity/setup-call-streams``.

    Accepts a bare path or a whole URL; the query string and fragment are ignored, and
    segments are URL-decoded and compared case-insensitively. If no segment names a
    provider, or segments name two different providers, returns None (then detect the
    provider from the first message).
    """
    if not isinstance(path, str):
        return None
    if "://" in path:
        path = urllib.parse.urlsplit(path).path
    path = path.split("?", 1)[0].split("#", 1)[0]
    found = {
        segment
        for segment in (urllib.parse.unquote(part).strip().lower() for part in path.split("/"))
        if segment in CODECS
    }
    return found.pop() if len(found) == 1 else None
