"""What a telephony provider tells us, and what we tell it.

Every event is a small frozen attrs class. Audio inside an event is always one canonical
format: 16-bit signed little-endian mono PCM (``pcm``, bytes) at a stated ``sample_rate``.

Two families:

* Provider events (provider -> engine): :class:`Connected`, :class:`CallStarted`,
  :class:`CallerAudio`, :class:`Dtmf`, :class:`MarkEchoed`, :class:`CallStopped`,
  :class:`UnknownMessage`.
* Commands (engine -> provider): :class:`PlayAudio`, :class:`Mark`, :class:`Clear`,
  :class:`Hangup`, :class:`Transfer`.

A codec in the ENGINE role turns wire messages into provider events and commands into wire
messages; in the PROVIDER role (the simulator) it does the opposite. This module imports
only attrs and numpy.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import attrs
import numpy as np

__all__ = [
    "Event",
    "ProviderEvent",
    "Command",
    "Connected",
    "CallStarted",
    "CallerAudio",
    "Dtmf",
    "MarkEchoed",
    "ClearAcknowledged",
    "CallStopped",
    "UnknownMessage",
    "PlayAudio",
    "Mark",
    "Clear",
    "Hangup",
    "Transfer",
    "AgentEvent",
    "SpeechStarted",
    "SpeechEnded",
    "PlaybackResult",
    "BargeIn",
    "Backchannel",
    "MarkReached",
    "MarkCleared",
    "DTMF_DIGITS",
    "FrozenDict",
    "FrozenList",
]

#: The sixteen DTMF keys, row by row of the keypad.
DTMF_DIGITS = "123A456B789C*0#D"


def _refuse(self, *args: Any, **kwargs: Any) -> None:
    raise TypeError(f"{type(self).__name__} is immutable: copy it first, e.g. dict(x)")


class FrozenDict(dict):
    """An immutable, hashable dict: what an event holds where it keeps a provider's JSON object.

    A ``dict`` subclass so that ``json.dumps`` and ``isinstance(x, dict)`` take it as is, but
    every mutator raises TypeError. Values are frozen deeply when it is built: dicts (any
    Mapping) become FrozenDicts, lists and tuples :class:`FrozenList`, sets frozensets.
    It compares equal to a dict with the same items (nested lists included, since a
    FrozenList equals a list), hashes by its items, and its repr is a dict's. ``dict(x)``
    is a shallow mutable copy (nested values stay frozen).
    """

    __slots__ = ("_hash",)

    def __new__(cls, *args: Any, **kwargs: Any) -> "FrozenDict":
        self = dict.__new__(cls)
        # All the filling happens here, with dict's own methods: __init__ is a no-op, so
        # calling it again on an existing instance cannot add items.
        dict.update(self, *args, **kwargs)
        thawed = [(k, v) for k, v in dict.items(self) if isinstance(v, _CONTAINERS) and not isinstance(v, _FROZEN)]
        for key, value in thawed:
            dict.__setitem__(self, key, _deep_freeze(value))
        self._hash = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]  # refusing is the point
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        h = self._hash
        if h is None:
            h = self._hash = hash(frozenset(dict.items(self)))
        return h

    def __reduce__(self) -> tuple:
        # dict's default pickling refills the new object with __setitem__, which refuses.
        return (type(self), (dict(self),))

    def copy(self) -> "FrozenDict":
        return self

    def __copy__(self) -> "FrozenDict":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenDict":
        return self

    @classmethod
    def fromkeys(cls, keys: Any, value: Any = None) -> "FrozenDict":
        return cls(dict.fromkeys(keys, value))


class FrozenList(tuple):
    """The frozen form of a list inside a :class:`FrozenDict`: a tuple that also compares
    equal to a list with the same items (so ``FrozenDict({"a": [1]}) == {"a": [1]}``)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return tuple.__eq__(self, tuple(other))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

    def __reduce__(self) -> tuple:
        return (type(self), (tuple(self),))


_CONTAINERS = (Mapping, list, tuple, set, frozenset)
_FROZEN = (FrozenDict, FrozenList, frozenset)


def _deep_freeze(root: Any) -> Any:
    """``root`` with every Mapping, list, tuple and set inside it frozen (see FrozenDict).

    Iterative, not recursive: JSON nested as deep as json.loads accepts must not overflow
    the stack here.
    """
    if not isinstance(root, _CONTAINERS) or isinstance(root, _FROZEN):
        return root
    # Each frame: (the container's kind, an iterator over its entries, the frozen entries so far).
    stack: list[tuple[type, Iterator[Any], list[Any]]] = []
    pending_keys: list[Any] = []

    def open_frame(value: Any) -> None:
        if isinstance(value, Mapping):
            stack.append((FrozenDict, iter(value.items()), []))
        else:
            kind = frozenset if isinstance(value, (set, frozenset)) else FrozenList
            stack.append((kind, iter(value), []))

    open_frame(root)
    while True:
        kind, entries, done = stack[-1]
        for entry in entries:
            key, value = entry if kind is FrozenDict else (None, entry)
            if isinstance(value, _CONTAINERS) and not isinstance(value, _FROZEN):
                pending_keys.append(key)
                open_frame(value)
                break
            done.append(entry)
        else:
            stack.pop()
            # FrozenDict.__new__ finds every value already frozen, so it does not recurse.
            built = kind(done)
            if not stack:
                return built
            key = pending_keys.pop()
            parent_kind, _, parent_done = stack[-1]
            parent_done.append((key, built) if parent_kind is FrozenDict else built)


_EMPTY = FrozenDict()


def _frozen_mapping(value: Mapping[str, Any] | None) -> FrozenDict:
    if isinstance(value, FrozenDict):
        return value
    return FrozenDict(value) if value else _EMPTY


def _frozen_raw(value: Any) -> Any:
    """UnknownMessage.raw: str and bytes as they are, containers frozen deeply."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return _deep_freeze(value)


def check_dtmf_digit(value: str) -> None:
    """Raise ValueError unless ``value`` is one of the sixteen DTMF keys."""
    if not isinstance(value, str) or len(value) != 1 or value not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF key: {value!r}")


def _check_pcm(instance: Any, attribute: attrs.Attribute, value: bytes) -> None:
    if len(value) % 2:
        raise ValueError(f"{type(instance).__name__}.pcm must hold whole 16-bit samples, got {len(value)} bytes")


def _check_rate(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{type(instance).__name__}.sample_rate must be positive, got {value}")


class Event:
    """Base class of every event and command."""

    __slots__ = ()


class ProviderEvent(Event):
    """Something the provider tells the engine."""

    __slots__ = ()


class Command(Event):
    """Something the engine tells the provider."""

    __slots__ = ()


class _PcmMixin:
    __slots__ = ()
    pcm: bytes
    sample_rate: int

    @property
    def samples(self) -> np.ndarray:
        """The audio as a read-only int16 numpy array (no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return len(self.pcm) / (2 * self.sample_rate)


# --- provider -> engine -------------------------------------------------------------


@attrs.frozen
class Connected(ProviderEvent):
    """The provider's transport-level hello (Awaaz ``connected``); carries no call data."""

    raw: FrozenDict = attrs.field(factory=FrozenDict, converter=_frozen_mapping, eq=False, repr=False)


@attrs.frozen
class CallStarted(ProviderEvent):
    """A call's metadata: the first thing a provider says about the call.

    ``sample_rate`` is the rate of the caller audio that follows. ``custom`` holds the
    provider's per-call parameters (Awaaz ``custom_parameters``, Knowlarity ``metadata`` /
    ``ivr_data``); ``raw`` is the whole decoded start message.
    """

    call_id: str
    stream_id: str = ""
    caller: str = ""
    called: str = ""
    sample_rate: int = attrs.field(default=8000, validator=_check_rate)
    direction: str = ""
    custom: FrozenDict = attrs.field(factory=FrozenDict, converter=_frozen_mapping)
    raw: FrozenDict = attrs.field(factory=FrozenDict, converter=_frozen_mapping, eq=False, repr=False)


@attrs.frozen
class CallerAudio(_PcmMixin, ProviderEvent):
    """A piece of the caller's audio: PCM16LE mono at ``sample_rate``."""

    pcm: bytes = attrs.field(validator=_check_pcm, repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int = attrs.field(validator=_check_rate)


@attrs.frozen
class Dtmf(ProviderEvent):
    """A key pressed by the caller: one of ``0-9 * # A-D``."""

    digit: str = attrs.field(validator=lambda instance, attribute, value: check_dtmf_digit(value))



@attrs.frozen
class MarkEchoed(ProviderEvent):
    """The provider says the audio sent before mark ``name`` has played."""

    name: str


@attrs.frozen
class ClearAcknowledged(ProviderEvent):
    """The provider confirms a clear (Plivo's ``clearedAudio``, Vonage's
    ``websocket:cleared``). The engine needs nothing from it: its playout settled what the
    clear cut when it sent the clear. Only the simulated provider sends it."""


@attrs.frozen
class CallStopped(ProviderEvent):
    """The provider says the call has ended."""

    reason: str = ""
    raw: FrozenDict = attrs.field(factory=FrozenDict, converter=_frozen_mapping, eq=False, repr=False)


@attrs.frozen
class UnknownMessage(ProviderEvent):
    """A well-formed message we do not understand. Reported, never fatal."""

    kind: str
    raw: Any = attrs.field(default=None, converter=_frozen_raw, eq=False)


# --- engine -> provider -------------------------------------------------------------


@attrs.frozen
class PlayAudio(_PcmMixin, Command):
    """Audio for the caller to hear: PCM16LE mono at ``sample_rate``."""

    pcm: bytes = attrs.field(validator=_check_pcm, repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int = attrs.field(validator=_check_rate)


@attrs.frozen
class Mark(Command):
    """Ask the provider to report when everything sent so far has played."""

    name: str


@attrs.frozen
class Clear(Command):
    """Stop playback now and drop whatever audio the provider has queued."""


@attrs.frozen
class Hangup(Command):
    """End the call."""


@attrs.frozen
class Transfer(Command):
    """Hand the call over to ``target`` (a provider-side branch or number)."""

    target: str = "default"


# --- engine -> agent ----------------------------------------------------------------
# The agent reads these from ``async for event in call`` together with CallerAudio (at the
# agent's sample rate) and Dtmf (from the provider's events or detected in-band).


class AgentEvent(Event):
    """Something the engine tells the agent about the call."""

    __slots__ = ()


@attrs.frozen
class SpeechStarted(AgentEvent):
    """The caller started speaking; ``at`` is the onset in seconds of inbound stream time."""

    at: float


@attrs.frozen
class SpeechEnded(AgentEvent):
    """The caller stopped speaking; ``at`` is when, ``duration`` how long the speech lasted."""

    at: float
    duration: float


@attrs.frozen
class PlaybackResult:
    """What became of one ``call.play``: ``played_ms`` of it reached the caller."""

    interrupted: bool
    played_ms: float
    duration_ms: float


@attrs.frozen
class BargeIn(AgentEvent):
    """The caller talked over the bot and playback was cleared.

    ``interrupted`` lists the results of the playbacks the clear cut short (the one the
    caller was hearing first); ``speech_started_at`` is the speech onset in stream time.
    """

    speech_started_at: float
    interrupted: tuple[PlaybackResult, ...] = ()


@attrs.frozen
class Backchannel(AgentEvent):
    """The caller spoke briefly over the bot ("haan", "hmm", "ok") and playback went on.

    Only with ``barge_in_mode="pause"``: the engine paused the bot when the speech began
    and, since it ended within ``backchannel_max_ms`` (or the agent called
    ``call.resume()``), resumed it from exactly where the caller stopped hearing it.
    ``speech_started_at`` is the onset in stream time (as in :class:`BargeIn`),
    ``duration`` the seconds of speech, ``paused`` the seconds the bot was silent.
    """

    speech_started_at: float
    duration: float
    paused: float


@attrs.frozen
class MarkReached(AgentEvent):
    """Everything played before mark ``name`` has been heard by the caller."""

    name: str


@attrs.frozen
class MarkCleared(AgentEvent):
    """Mark ``name`` will never be reached: the audio before it was cleared."""

    name: str
