"""callengine: run voice AI agents on live phone calls over WebSocket, with Trio.

The public names live here; the subpackages hold the layers:

* :mod:`callengine.events`, :mod:`callengine.audio`, :mod:`callengine.protocols` — pure,
  sans-IO, no trio (importable without it);
* :mod:`callengine.call` — one nursery per call: reader, writer, barge-in and agent tasks;
* :mod:`callengine.server`, :mod:`callengine.cli`, :mod:`callengine.testing` — serving,
  the command line, the simulated provider and the load generator.

An agent is any async callable taking a :class:`Call`::

    async def agent(call: callengine.Call) -> None:
        await call.play(audio, sample_rate=16000)
        async for event in call:
            ...
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use
    from .call.api import Call as Call
    from .call.api import CallInfo as CallInfo
    from .call.api import CallEnded as CallEnded
    from .call.api import PlaybackWriter as PlaybackWriter
    from .call.config import CallConfig as CallConfig
    from .call.handles import Playback as Playback
    from .call.handles import MarkHandle as MarkHandle
    from .call.handles import MarkState as MarkState
    from .call.session import CallSession as CallSession
    from .call.session import run_call as run_call
    from .call.causes import CallReport as CallReport
    from .call.causes import CallStatistics as CallStatistics
    from .call.causes import EndCause as EndCause
    from .call.causes import ControlKind as ControlKind
    from .call.transport import Transport as Transport
    from .call.transport import TransportClosed as TransportClosed
    from .call.transport import MemoryTransport as MemoryTransport
    from .call.transport import WebSocketTransport as WebSocketTransport
    from .call.transport import memory_transport_pair as memory_transport_pair
    from .call.websocket import WebSocketConnection as WebSocketConnection
    from .call.websocket import read_upgrade_request as read_upgrade_request
    from .server import serve as serve
    from .server import CallServer as CallServer
    from .server import ServerConfig as ServerConfig
    from .errors import CallEngineError as CallEngineError
    from .errors import ProtocolError as ProtocolError
    from .errors import RemoteProtocolError as RemoteProtocolError
    from .errors import LocalProtocolError as LocalProtocolError
    from .errors import UnsupportedCommand as UnsupportedCommand
    from .errors import CloseCode as CloseCode
    from .events import CallerAudio as CallerAudio
    from .events import Dtmf as Dtmf
    from .events import SpeechStarted as SpeechStarted
    from .events import SpeechEnded as SpeechEnded
    from .events import BargeIn as BargeIn
    from .events import Backchannel as Backchannel
    from .events import MarkReached as MarkReached
    from .events import MarkCleared as MarkCleared
    from .events import PlaybackResult as PlaybackResult



# The names below are imported on first use (PEP 562), so that ``import callengine.events``,
# ``callengine.audio`` or ``callengine.protocols`` never pulls in trio: those layers are
# sans-IO and must import where trio is not installed.
_LAZY = {
    "Call": "call.api",
    "CallInfo": "call.api",
    "CallEnded": "call.api",
    "PlaybackWriter": "call.api",
    "CallConfig": "call.config",
    "Playback": "call.handles",
    "MarkHandle": "call.handles",
    "MarkState": "call.handles",
    "CallSession": "call.session",
    "CallReport": "call.causes",
    "CallStatistics": "call.causes",
    "EndCause": "call.causes",
    "ControlKind": "call.causes",
    "run_call": "call.session",
    "Transport": "call.transport",
    "TransportClosed": "call.transport",
    "MemoryTransport": "call.transport",
    "WebSocketTransport": "call.transport",
    "memory_transport_pair": "call.transport",
    "WebSocketConnection": "call.websocket",
    "read_upgrade_request": "call.websocket",
    "serve": "server",
    "CallServer": "server",
    "ServerConfig": "server",
    "CallEngineError": "errors",
    "ProtocolError": "errors",
    "RemoteProtocolError": "errors",
    "LocalProtocolError": "errors",
    "UnsupportedCommand": "errors",
    "CloseCode": "errors",
    "CallerAudio": "events",
    "Dtmf": "events",
    "SpeechStarted": "events",
    "SpeechEnded": "events",
    "BargeIn": "events",
    "Backchannel": "events",
    "MarkReached": "events",
    "MarkCleared": "events",
    "PlaybackResult": "events",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callengine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    # the agent API
    "Call",
    "CallInfo",
    "CallEnded",
    "Playback",
    "PlaybackWriter",
    "PlaybackResult",
    "MarkHandle",
    "MarkState",
    # what the agent reads
    "CallerAudio",
    "Dtmf",
    "SpeechStarted",
    "SpeechEnded",
    "BargeIn",
    "Backchannel",
    "MarkReached",
    "MarkCleared",
    # running calls
    "CallConfig",
    "CallSession",
    "CallReport",
    "CallStatistics",
    "EndCause",
    "ControlKind",
    "run_call",
    "serve",
    "CallServer",
    "ServerConfig",
    # transports
    "Transport",
    "TransportClosed",
    "MemoryTransport",
    "WebSocketTransport",
    "WebSocketConnection",
    "read_upgrade_request",
    "memory_transport_pair",
    # errors
    "CallEngineError",
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "UnsupportedCommand",
    "CloseCode",
]
