"""Small helpers shared by the provider codecs. Sans-IO: stdlib only (plus our errors).

Close-code policy used by every codec (RFC 6455 section 7.4.1):

* 1003 ``UNSUPPORTED_DATA``: the frame type is wrong (binary where only text is allowed).
* 1007 ``INVALID_PAYLOAD``: the frame type is right but its content is not (bad JSON, not
  an object, bad base64, odd PCM length, absurd sample rate, a broken WAV file).
* 1002 ``PROTOCOL_ERROR``: a well-formed message at the wrong time (audio before the call
  started, a second start). RFC 6455 reserves 1008 for policy violations when no other code
  fits; an out-of-order message is exactly what 1002 describes.
"""

from __future__ import annotations

import base64
import enum
import binascii
import json
import math
from typing import Any, ClassVar, Iterable, Mapping

from ..errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ..events import DTMF_DIGITS, UnknownMessage

__all__ = [
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "dumps",
    "loads_object",
    "b64decode",
    "b64encode",
    "parse_sample_rate",
    "as_text",
    "first_text",
    "is_binary",
    "check_role_and_type",
    "split_json_texts",
    "parse_digit",
    "raw_message",
]

#: Sample rates outside this range are treated as malformed metadata.
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000


def is_binary(message: object) -> bool:
    return isinstance(message, (bytes, bytearray, memoryview))


def check_role_and_type(message: object) -> None:
    """A wire message is ``str`` or bytes-like; anything else is a bug in the caller."""
    if not isinstance(message, str) and not is_binary(message):
        raise TypeError(f"a wire message is str or bytes, not {type(message).__name__}")


def dumps(obj: Any) -> str:
    """Compact JSON (audio frames are big enough without padding)."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode message as JSON: {exc}") from exc


def loads_object(text: str, *, what: str = "message") -> dict:
    """Parse a text frame that must hold one JSON object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise RemoteProtocolError(f"{what} is not valid JSON: {exc}", CloseCode.INVALID_PAYLOAD) from exc
    if not isinstance(value, dict):
        raise RemoteProtocolError(
            f"{what} must be a JSON object, got {type(value).__name__}", CloseCode.INVALID_PAYLOAD
        )
    return value


def b64decode(value: object, *, what: str, lenient: bool = False) -> bytes:
    """Strict base64 (no stray characters), as a RemoteProtocolError on failure. With
    ``lenient``, line breaks and spaces are allowed (Python's ``base64.encodebytes`` puts a
    newline every 76 characters, and some peers send that)."""
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{what} must be a base64 string, got {type(value).__name__}", CloseCode.INVALID_PAYLOAD)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        if lenient and any(c in value for c in " \t\r\n"):
            try:
                return base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                pass
        raise RemoteProtocolError(f"{what} is not valid base64: {exc}", CloseCode.INVALID_PAYLOAD) from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_sample_rate(value: object, default: int, *, what: str = "sample_rate") -> int:
    """A sample rate from JSON: an int, an integral float, or a numeric string.

    Missing (None or "") means ``default``. Anything else that is not a whole number in
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] raises RemoteProtocolError (1007).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    rate: int | None = None
    if isinstance(value, bool):
        rate = None
    elif isinstance(value, int):
        rate = value
    elif isinstance(value, float):
        rate = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str) and len(value) <= 32:
        text = value.strip()
        try:
            rate = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            rate = int(number) if math.isfinite(number) and number.is_integer() else None
    if rate is None or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise RemoteProtocolError(
            f"{what} must be a whole number of Hz in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}], got {value!r:.80}",
            CloseCode.INVALID_PAYLOAD,
        )
    return rate


def as_text(value: object) -> str:
    """Identifiers and phone numbers: strings as they are, numbers spelled out, else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return ""


def first_text(mappings: Iterable[Mapping[str, Any]], keys: Iterable[str]) -> tuple[str, Mapping[str, Any] | None, str]:
    """The first non-empty text value under any of ``keys``, searching each mapping in turn.

    Returns ``(value, mapping it came from, key)``, or ``("", None, "")``.
    """
    keys = tuple(keys)
    for mapping in mappings:
        for key in keys:
            text = as_text(mapping.get(key))
            if text:
                return text, mapping, key
    return "", None, ""


def split_json_texts(text: str) -> list[str]:
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
    except (ValueError, RecursionError):
        return [text]
    return parts


def parse_digit(*candidates: object) -> str | None:
    """The first DTMF digit among ``candidates``: a one-character key (any case, spaces
    around it), a number 0-9, or an object holding either under ``digit``; None if none is."""
    for candidate in candidates:
        if isinstance(candidate, Mapping):
            candidate = candidate.get("digit")
        if isinstance(candidate, int) and not isinstance(candidate, bool) and 0 <= candidate <= 9:
            candidate = str(candidate)
        if isinstance(candidate, str):
            digit = candidate.strip().upper()
            if len(digit) == 1 and digit in DTMF_DIGITS:
                return digit
    return None


def raw_message(event: UnknownMessage, kind_key: str = "event") -> str | bytes:
    """What the simulator injects for an UnknownMessage: text or bytes as they are, a
    mapping as JSON, else a message whose ``kind_key`` is the event's kind."""
    raw = event.raw
    if isinstance(raw, (str, bytes)):
        return raw
    if isinstance(raw, Mapping):
        return dumps(dict(raw))
    return dumps({kind_key: event.kind})


class CallState(enum.Enum):
    """Where a codec is in its call: the same three states for every provider."""

    IDLE = "idle"  # socket open, the call's start not seen yet
    STARTED = "started"  # start received (ENGINE) / sent (PROVIDER)
    STOPPED = "stopped"  # stop received (ENGINE) / sent (PROVIDER)


class CallStateMachine:
    """A codec's state machine, driven by one table: (state, message kind) -> next state.

    A missing pair is a protocol violation: RemoteProtocolError when the peer sent it,
    LocalProtocolError when we tried to send it. Subclasses set the table and how their
    start message is called in errors.
    """

    name: ClassVar[str]
    _transitions: ClassVar[Mapping[tuple[CallState, str], CallState]]
    _start_kind: ClassVar[str]  # the message kind that starts the call
    _second_start: ClassVar[str]  # e.g. "a second start"
    _before_start: ClassVar[str]  # e.g. "before start"
    _state: CallState
    _start_seen: bool

    # --- state the engine reads (the same for every codec on this machine) ---------------

    @property
    def started(self) -> bool:
        """True once the call's start has been received (ENGINE) or sent (PROVIDER)."""
        return self._start_seen

    @property
    def stopped(self) -> bool:
        return self._state is CallState.STOPPED

    @property
    def state(self) -> str:
        return self._state.value

    def _next_state(self, kind: str, *, local: bool) -> CallState:
        """Where ``kind`` takes the state machine, without moving it yet."""
        try:
            return self._transitions[(self._state, kind)]
        except KeyError:
            pass
        if kind == self._start_kind:
            problem = self._second_start if self._start_seen else f"{self._start_kind} after stop"
        else:
            problem = f"{kind} {self._before_start}"
        if local:
            raise LocalProtocolError(f"{self.name}: cannot send {problem} (state {self._state.value})")
        raise RemoteProtocolError(f"{self.name}: peer sent {problem} (state {self._state.value})", CloseCode.PROTOCOL_ERROR)

    def _commit(self, state: CallState) -> None:
        if state is CallState.STARTED:
            self._start_seen = True
        self._state = state
