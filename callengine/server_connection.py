"""One connection to the call server, from the accepted TCP stream to the call's end:
the per-connection half of :class:`callengine.server.CallServer`.

Built on the engine's own wsproto connection (``call/websocket.py``: the call's reader
task drives the socket), inside a per-connection error boundary: one connection's
failure, whatever it is, ends only that call.

Per connection: a cap on connections mid-handshake (HTTP 503); a handshake deadline;
routing by path (``/awaaz``, ``/knowlarity``, with any prefix and trailing parts) or
detection of the provider from the first message; an optional shared secret (path
segment, ``token`` query parameter, ``Authorization: Bearer`` or ``X-Callengine-Token``
header; compared in constant time, never logged: ``redact.py``); a limit on concurrent
calls (HTTP 503); a bound on message size (close 1009); and a shielded, bounded close.
Plain HTTP on the call port: ``/healthz``, ``/readyz`` and ``/metrics``. A call's hang-up
and transfer go through the provider's REST API where the socket cannot.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
from typing import Any

import trio

from .call.causes import ControlKind
from .call.handshake import PlainRequest, read_request
from .call.session import Agent, CallSession
from .call.transport import Transport, TransportClosed, aclose_quietly
from .call.websocket import HandshakeFailed, UpgradeRequest
from .errors import CloseCode, UnsupportedCommand
from .limits import BUSY_RESPONSE, HandshakeGate, RateLimitedLog
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, ServerMetrics
from .protocols.base import Role
from .protocols.registry import create_codec, explain_provider, needs_more
from .redact import redact_headers, redact_text
from .registry import SessionRegistry
from .routing import Rejection, offered_token, route, shown_path
from .server_config import Route, ServerConfig

__all__ = ["ConnectionHandling", "KNOWLARITY_SUBPROTOCOL", "PLAIN_PATHS"]

log = logging.getLogger("callengine.server")
summary_log = logging.getLogger("callengine.calls")

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"
#: plain HTTP paths answered on the call port (health checks and the metrics scrape)
PLAIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ConnectionHandling:
    """The per-connection half of :class:`~callengine.server.CallServer`, whose
    ``__init__`` sets up these attributes and whose accept loop hands each TCP stream to
    :meth:`_handle_stream`."""

    agent: Agent
    config: ServerConfig
    accepting: bool
    active_calls: int
    counters: dict[str, int]
    rejections: dict[str, int]
    end_causes: dict[str, int]
    reports: list
    metrics: ServerMetrics
    _idle: trio.Event
    _sessions: SessionRegistry
    _gate: HandshakeGate
    _busy_log: RateLimitedLog
    _ssl_context: ssl.SSLContext | None
    _controls: dict[str, Any]
    _no_control_logged: set[str]

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
