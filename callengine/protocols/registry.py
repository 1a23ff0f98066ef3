"""Find a provider codec by name, by URL path, or from the first message on a socket."""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from ..errors import ProtocolError
from .awaaz import AwaazCodec
from .base import Codec, Role, WireMessage
from .awaaz_legacy import LegacyAwaazCodec
from .knowlarity import KnowlarityCodec, _split_json_texts, parse_metadata

__all__ = ["CODECS", "get_codec", "create_codec", "detect_provider", "explain_provider", "provider_from_path"]

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
# Keys that only Knowlarity's two known first-frame layouts carry: Verloop's (uuid,
# sample_rate, from, to, campaign, metadata with the "websocket:connected" hello) and the
# callid one (callid, virtual_number, customer_number, ivr_data, client_meta_id,
# event_timestamp). "uuid" and "callid" are not among them: mod_audio_fork's own examples
# use them too.
_KNOWLARITY_ONLY = frozenset(
    {"virtual_number", "customer_number", "ivr_data", "client_meta_id", "event_timestamp", "campaign"}
)
_HELLO = "websocket:connected"
# Keys of a mod_audio_fork metadata frame (any layout): a dict with none of these is not one.
_FORK_KEYS = frozenset({"uuid", "callid", "call_id", "callId", "sample_rate"}) | _KNOWLARITY_ONLY
# mod_audio_fork's example layout, {"callId", "to", "from"}: drachtio's and Awaaz's fork
# (awaazde/freeswitch_modules examples/audio_fork.js). Neither Knowlarity layout has callId.
_FORK_EXAMPLE = frozenset({"callId", "from", "to"})
_BOM = "\ufeff"

log = logging.getLogger(__name__)

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
    """The provider from the first message of a connection, or None if unsure; logs why
    (see :func:`explain_provider` for the rules)."""
    provider, why = explain_provider(message)
    if provider is None:
        log.info("no provider detected: %s", why)
    elif why.startswith("ambiguous"):
        log.warning("provider %s detected: %s", provider, why)
    else:
        log.info("provider %s detected: %s", provider, why)
    return provider


def explain_provider(message: WireMessage) -> tuple[str | None, str]:
    """(the provider the first message of a connection is from, or None; why).

    The message is read as the engine's codecs read it: a UTF-8 BOM is dropped, JSON text
    in a binary frame is read as text (Awaaz peers send that), and of several JSON texts
    joined in one frame (mod_audio_fork) the first counts. Then:

    * Awaaz: a JSON object whose top-level ``event`` is ``connected``, ``start`` or
      ``media``, unless its ids are camelCase (Twilio, Plivo).
    * Knowlarity: metadata (decoded leniently) with a key only Knowlarity's known layouts
      carry (virtual_number, customer_number, ivr_data, client_meta_id, event_timestamp,
      campaign) or Verloop's ``"event": "websocket:connected"`` hello in ``metadata``.
    * Legacy Awaaz: mod_audio_fork's example layout (``callId`` with ``from``/``to``, as
      Awaaz's freeswitch_modules fork has it) and no Knowlarity key. Awaaz's sample client
      reads no field of the first frame, so this is the one layout that points to Awaaz.
    * Ambiguous (other metadata with a call id or a ``sample_rate``): Knowlarity, the
      documented provider of the family; the reason says so and where the rate will come
      from (the message, or Knowlarity's 16 kHz default, wrong for legacy Awaaz's 8 kHz:
      route that by ``/awaaz-legacy``). :func:`detect_provider` logs this as a warning.
    * A binary first frame is None unless it holds an Awaaz event as JSON text: Awaaz
      opens with text (its peers may put it in a binary frame), mod_audio_fork with a text
      metadata frame, so its binary frames are audio.
    """
    binary = not isinstance(message, str)
    if not isinstance(message, str):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            return None, "the first message is a binary frame (audio?), not a start or metadata text"
        if not message.lstrip(_BOM + " \t\r\n").startswith("{"):
            return None, "the first message is a binary frame (audio?), not a start or metadata text"
    text = message.lstrip(_BOM)
    texts = _split_json_texts(text)
    text = texts[0]
    joined = f" (the first of {len(texts)} JSON texts in one frame)" if len(texts) > 1 else ""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        event = value.get("event")
        if isinstance(event, str) and event in _AWAAZ_FIRST_EVENTS:
            start = value.get("start")
            places = [value, start] if isinstance(start, dict) else [value]
            if any(key in place for place in places for key in _CAMEL_CASE_IDS):
                return None, f"a {event!r} event with camelCase ids (Twilio or Plivo, not spoken here)"
            return "awaaz", f"a JSON {event!r} event{joined}" + (" in a binary frame" if binary else "")
    if binary:
        # mod_audio_fork sends its metadata as text; its binary frames are audio
        return None, "JSON in a binary frame that is not an Awaaz event"
    try:
        metadata = parse_metadata(text)
    except ProtocolError:
        return None, "the first message is neither an Awaaz event nor mod_audio_fork metadata"
    event = metadata.get("event")
    if isinstance(event, str) and event in _JSON_EVENT_NAMES:
        return None, f"a JSON {event!r} event cannot open a call"
    keys = set(metadata)
    nested = metadata.get("metadata")
    hello = event == _HELLO or (isinstance(nested, dict) and nested.get("event") == _HELLO)
    rate = metadata.get("sample_rate")
    if keys & _KNOWLARITY_ONLY or hello:
        marks = sorted(keys & _KNOWLARITY_ONLY) + (["the websocket:connected hello"] if hello else [])
        return "knowlarity", f"Knowlarity metadata ({', '.join(marks)}){joined}"
    if _FORK_EXAMPLE <= keys:
        return "awaaz-legacy", (
            f"mod_audio_fork's example metadata (callId, from, to; Awaaz's fork has it) and no Knowlarity key{joined}; "
            + ("the rate is in the message" if rate not in (None, "") else "no rate in it: awaaz-legacy's 8000 Hz default")
        )
    if keys & _FORK_KEYS:
        where = (
            "the rate is in the message"
            if rate not in (None, "")
            else "no rate in it: Knowlarity's 16000 Hz default (a legacy Awaaz stream is 8000 Hz: route it by /awaaz-legacy)"
        )
        return "knowlarity", f"ambiguous mod_audio_fork metadata (keys {', '.join(sorted(keys & _FORK_KEYS))}, none only Knowlarity's); taken as Knowlarity{joined}; {where}"
    return None, "metadata with no call id, rate or Knowlarity key"

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
