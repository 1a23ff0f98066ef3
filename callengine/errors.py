"""Exception types shared by every layer. Imports nothing but the standard library."""

from __future__ import annotations

__all__ = [
    "CallEngineError",
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "UnsupportedCommand",
    "CloseCode",
]


class CloseCode:
    """WebSocket close codes (RFC 6455 section 7.4.1) the engine uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class CallEngineError(Exception):
    """Base class of callengine's own errors."""


class ProtocolError(CallEngineError):
    """A message broke the provider protocol.

    ``close_code`` is the WebSocket close code the connection should be closed with.
    """

    def __init__(self, message: str, close_code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed (bad JSON, bad base64, wrong frame type...)."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow in the current state
    (audio before the call started, a command the codec does not know...)."""

    def __init__(self, message: str, close_code: int = CloseCode.INTERNAL_ERROR) -> None:
        super().__init__(message, close_code)


class UnsupportedCommand(LocalProtocolError):
    """The provider has no way to carry out this command (e.g. transfer on Awaaz)."""
