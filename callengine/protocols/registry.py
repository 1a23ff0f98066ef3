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
from .exotel import ExotelCodec
from ._common import split_json_texts
from .knowlarity import KnowlarityCodec, parse_metadata
from .plivo import PlivoCodec, VobizCodec
from .smartflo import SmartfloCodec
from .telnyx import TelnyxCodec
from .twilio import TwilioCodec
from .vonage import VonageCodec, parse_content_type

__all__ = ["CODECS", "get_codec", "create_codec", "detect_provider", "explain_provider", "explain_json_event", "needs_more", "provider_from_path"]

#: Provider name -> codec class.
CODECS: dict[str, type[Codec]] = {
    "awaaz": AwaazCodec,
    "knowlarity": KnowlarityCodec,
    "awaaz-legacy": LegacyAwaazCodec,
    "twilio": TwilioCodec,
    "exotel": ExotelCodec,
    "plivo": PlivoCodec,
    "vobiz": VobizCodec,
    "smartflo": SmartfloCodec,
    "telnyx": TelnyxCodec,
    "vonage": VonageCodec,
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


def detect_provider(message: WireMessage, *more: WireMessage) -> str | None:
    """The provider from the first message of a connection (and the next, where the
    first says too little), or None if unsure; logs why (see :func:`explain_provider`)."""
    provider, why = explain_provider(message, *more)
    if provider is None:
        log.info("no provider detected: %s", why)
    elif why.startswith("ambiguous"):
        log.warning("provider %s detected: %s", provider, why)
    else:
        log.info("provider %s detected: %s", provider, why)
    return provider


def explain_provider(message: WireMessage, *more: WireMessage) -> tuple[str | None, str]:
    """(the provider the first message of a connection is from, or None; why).

    A bare ``{"event":"connected"}`` says too little: Awaaz, Exotel and Smartflo open with
    the same one. Then the next message (``more``) decides; without one the answer is None
    and the reason starts with "a bare 'connected'" (:func:`needs_more`).

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
    texts = split_json_texts(text)
    text = texts[0]
    joined = f" (the first of {len(texts)} JSON texts in one frame)" if len(texts) > 1 else ""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        event = value.get("event")
        if isinstance(event, str) and event in _AWAAZ_FIRST_EVENTS:
            provider, why = explain_json_event(value)
            following = list(texts[1:]) + list(more)  # joined texts come first
            if provider is None and following:
                provider, then = explain_provider(*following)
                return provider, f"{then}, after a bare 'connected'"
            where = joined + (" in a binary frame" if binary else "")
            return provider, why + where
    if isinstance(value, dict) and isinstance(value.get("content-type"), str) and value["content-type"].strip().lower().startswith("audio/l16"):
        # Vonage's first message: the NCCO's headers and the content-type, always present
        # (Knowlarity's metadata has none; its websocket:connected hello is nested)
        rate, given = parse_content_type(value["content-type"], 16000)
        return "vonage", f"a Vonage first message (content-type {value['content-type']!r:.40}){joined}; " + (
            f"{rate} Hz from it" if given else "no rate in it: Vonage's 16000 Hz default"
        )
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

#: where each JSON-event provider puts the stream id at the top level of its messages
_SID_KEYS = {"streamSid": "twilio", "stream_sid": "awaaz", "stream_id": "telnyx", "streamId": "plivo"}


def explain_json_event(value: dict) -> tuple[str | None, str]:
    """(provider, why) for the first JSON event of a connection (``connected``, ``start``
    or ``media``). A bare ``connected`` says too little (Awaaz, Exotel and Smartflo send the
    same one): (None, "a bare 'connected' ...") and the caller reads the next message.
    Twilio and Smartflo send the same start, as Plivo and Vobiz do: the first of each pair
    is taken and the reason says to route the other by its path."""
    event = value.get("event")
    raw_start = value.get("start")
    start: dict = raw_start if isinstance(raw_start, dict) else {}
    if event == "connected":
        if value.get("protocol") == "Call":
            return "twilio", "Twilio's connected event (protocol Call)"
        if "version" in value and len(value) == 2:
            return "telnyx", "Telnyx's connected event (event and version only)"
        return None, "a bare 'connected' event: Awaaz, Exotel and Smartflo all open with it; the next message decides"
    if "call_control_id" in start or "stream_id" in value:
        return "telnyx", "a Telnyx start (stream_id, call_control_id)"
    if "streamId" in start or "callId" in start:
        return "plivo", "a Plivo start (streamId, callId; Vobiz sends the same: route it by /vobiz)"
    if "streamSid" in start or "callSid" in start or "accountSid" in start:
        return "twilio", "a Twilio start (streamSid, callSid; Tata Smartflo sends the same: route it by /smartflo)"
    if "account_sid" in start:
        return "exotel", "an Exotel start (stream_sid, call_sid, account_sid)"
    if event == "start":
        return "awaaz", "an Awaaz start (stream_sid without account_sid)"
    for key, provider in _SID_KEYS.items():
        if key in value:
            return provider, f"a {event!r} event with {key} at the top level"
    return "awaaz", f"a JSON {event!r} event"


def needs_more(why: str) -> bool:
    """Whether :func:`explain_provider`'s reason asks for the connection's next message."""
    return why.startswith("a bare 'connected'")


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
