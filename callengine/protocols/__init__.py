"""Sans-IO provider codecs (no I/O, no trio).

Each codec turns one provider's WebSocket messages into :mod:`callengine.events` and back,
in either role: ``Role.ENGINE`` (the server) or ``Role.PROVIDER`` (the simulator).
"""

from .awaaz import AwaazCodec
from .base import Capabilities, Codec, Role, WireMessage
from .awaaz_legacy import LegacyAwaazCodec
from .knowlarity import KnowlarityCodec, parse_metadata
from .registry import CODECS, create_codec, detect_provider, get_codec, provider_from_path

__all__ = [
    "Role",
    "WireMessage",
    "Capabilities",
    "Codec",
    "AwaazCodec",
    "KnowlarityCodec",
    "LegacyAwaazCodec",
    "parse_metadata",
    "CODECS",
    "get_codec",
    "create_codec",
    "detect_provider",
    "provider_from_path",
]
