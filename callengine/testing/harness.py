"""Run an agent against a simulated provider in-process, over an in-memory transport.

::

    async with open_simulated_call(agent, "awaaz") as sim:
        sim.provider.say(speech)
        await sim.finished.wait()
    print(sim.report, sim.provider.format_timeline())

Works on any clock, including ``trio.testing.MockClock(autojump_threshold=0)``, which makes
every timing in a call exact and deterministic.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import trio

from ..call.api import Call
from ..call.config import CallConfig
from ..call.session import Agent, CallReport, CallSession
from ..call.transport import MemoryTransport, memory_transport_pair
from ..protocols.base import Role
from ..protocols.registry import create_codec
from .provider import SimulatedProvider

__all__ = ["SimulatedCall", "open_simulated_call"]


class SimulatedCall:
    """An engine session and a simulated provider joined by an in-memory transport."""

    def __init__(self, session: CallSession, provider: SimulatedProvider, engine_end: MemoryTransport, provider_end: MemoryTransport) -> None:
        self.session = session
        self.provider = provider
        self.engine_transport = engine_end
        self.provider_transport = provider_end
        self.finished = trio.Event()
        self._report: CallReport | None = None

    @property
    def report(self) -> CallReport:
        """How the call went; available once it has ended (after the ``async with``)."""
        if self._report is None:
            raise RuntimeError("the simulated call has not ended yet: read its report after the async with block")
        return self._report

    @property
    def call(self) -> Call | None:
        """The agent's Call, once the start message has arrived."""
        return self.session.call


@contextlib.asynccontextmanager
async def open_simulated_call(
    agent: Agent,
    provider: str = "awaaz",
    config: CallConfig | None = None,
    *,
    codec_options: dict | None = None,
    provider_codec_options: dict | None = None,
    wait: bool = True,
    **provider_options,
) -> AsyncIterator[SimulatedCall]:
    """Start a call of ``agent`` through the engine with a simulated ``provider``.

    ``codec_options`` go to the engine's codec, ``provider_codec_options`` to the simulated
    provider's (how that provider behaves, e.g. ``{"wav_wrap": False}``: an Awaaz account that
    plays raw PCM; ``{"quirks": {...}}`` makes it send odd messages real providers send, see
    :mod:`callengine.testing.quirks`), and the other keyword arguments to
    :class:`SimulatedProvider`.

    On leaving the block the call runs to its end when ``wait`` is true (the default);
    otherwise the simulated provider drops the connection and the call is torn down.
    """
    engine_end, provider_end = memory_transport_pair()
    codec = create_codec(provider, Role.ENGINE, **(codec_options or {}))
    session = CallSession(engine_end, agent, codec, config)
    sim_provider = SimulatedProvider(provider_end, provider, codec_options=provider_codec_options, **provider_options)
    sim = SimulatedCall(session, sim_provider, engine_end, provider_end)

    async def run_engine() -> None:
        try:
            sim._report = await session.run()
        finally:
            sim.finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_engine)
        await nursery.start(sim_provider.run)
        yield sim
        if not wait and not sim.finished.is_set():
            await sim_provider.drop()
        await sim.finished.wait()
        await sim_provider.closed.wait()
