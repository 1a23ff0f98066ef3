"""Test an agent without a phone: the simulated provider, in memory or over a WebSocket.

* :func:`open_simulated_call` — engine + simulated provider joined in memory (works on
  ``trio.testing.MockClock`` for exact, deterministic timing);
* :func:`open_dialed_call` — a simulated provider dialing a server over a real WebSocket;
* :class:`SimulatedProvider` — the provider itself: streams the caller's audio in real
  time, plays what the engine sends, echoes marks, honours clear, presses keys, records.
"""

from .dial import DialError, open_dialed_call
from .harness import SimulatedCall, open_simulated_call
from .provider import HeardSegment, SimulatedProvider, TimelineEntry, default_start

__all__ = [
    "open_simulated_call",
    "SimulatedCall",
    "open_dialed_call",
    "DialError",
    "SimulatedProvider",
    "TimelineEntry",
    "HeardSegment",
    "default_start",
]
