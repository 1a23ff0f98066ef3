"""What every provider codec does the same way, written once. Sans-IO, no trio.

A codec is a state machine over message kinds (:class:`~._common.CallStateMachine`) in one
of two roles. Both directions have the same skeleton on every provider:

* ``receive``: check the message is text or bytes, then read it as the engine (the
  provider's messages) or as the provider (the engine's commands, in the simulator);
* ``send``: look the event's type up in the role's table (which message kind it is, or why
  this provider has no such message), check the state machine allows it, encode it, and
  only then move the state machine, so a refused command changes nothing.

A provider codec sets the two tables and writes the four hooks: ``_receive_as_engine``,
``_receive_as_provider``, ``_encode_as_engine`` and ``_encode_as_provider``.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

from ..errors import LocalProtocolError, UnsupportedCommand
from ..events import Event, UnknownMessage
from ._common import CallState, CallStateMachine, check_role_and_type, raw_message
from .base import Codec, Role, WireMessage

__all__ = ["TableCodec"]


class TableCodec(CallStateMachine, Codec):
    """The shared skeleton of the provider codecs.

    ``engine_sends`` / ``provider_sends``: event type -> message kind, for what each role
    may send. ``engine_lacks`` / ``provider_lacks``: event type -> why the protocol has no
    such message (raised as :class:`UnsupportedCommand`, which the engine turns into a
    clear error for the agent, rather than a bug). ``raw_kind_key``: the key the simulator's
    injected :class:`UnknownMessage` names its kind under when it carries no raw message.
    """

    engine_sends: ClassVar[Mapping[type, str]]
    provider_sends: ClassVar[Mapping[type, str]]
    engine_lacks: ClassVar[Mapping[type, str]] = {}
    provider_lacks: ClassVar[Mapping[type, str]] = {}
    raw_kind_key: ClassVar[str] = "event"

    def __init__(self, role: Role = Role.ENGINE) -> None:
        super().__init__(Role(role))
        self._state = CallState.IDLE
        self._start_seen = False

    # --- the two directions -----------------------------------------------------------

    def receive(self, message: WireMessage) -> Sequence[Event]:
        check_role_and_type(message)
        if self.role is Role.ENGINE:
            return self._receive_as_engine(message)
        return self._receive_as_provider(message)

    def send(self, event: Event) -> Sequence[WireMessage]:
        engine = self.role is Role.ENGINE
        if not engine and isinstance(event, UnknownMessage):
            return [raw_message(event, self.raw_kind_key)]  # the simulator injects what it likes
        lacks = self._lacks(event)
        if lacks is not None:
            raise UnsupportedCommand(f"{self.name}: {lacks}")
        kind = (self.engine_sends if engine else self.provider_sends).get(type(event))
        if kind is None:
            raise LocalProtocolError(f"{self.name}: the {self.role.value} cannot send {type(event).__name__}")
        after = self._next_state(kind, local=True)
        out = self._encode_as_engine(kind, event) if engine else self._encode_as_provider(kind, event)
        self._commit(after)
        return out

    # --- hooks ------------------------------------------------------------------------

    def _lacks(self, event: Event) -> str | None:
        """Why this provider has no message for ``event`` in this role, or None if it has."""
        return (self.engine_lacks if self.role is Role.ENGINE else self.provider_lacks).get(type(event))

    def _receive_as_engine(self, message: WireMessage) -> list[Event]:
        raise NotImplementedError

    def _receive_as_provider(self, message: WireMessage) -> list[Event]:
        raise NotImplementedError

    def _encode_as_engine(self, kind: str, command: Event) -> list[WireMessage]:
        """The wire messages for ``command`` (of ``kind``); may raise LocalProtocolError
        for a command this call cannot carry (the state machine has not moved yet)."""
        raise NotImplementedError

    def _encode_as_provider(self, kind: str, event: Event) -> list[WireMessage]:
        raise NotImplementedError
