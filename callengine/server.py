"""The WebSocket server: accepts provider connections and runs one call per connection.

``serve(agent, host=..., port=...)`` runs until cancelled and supports ``nursery.start``
(the started value is the bound port). Built on ``trio.serve_listeners`` and the
engine's own wsproto connection (``call/websocket.py``: the call's reader task drives the
socket, no per-connection reader task or queue), inside a per-connection error boundary:
one connection's failure, whatever it is, ends only that call.

Per connection: a handshake deadline; routing by path (``/awaaz``, ``/knowlarity``, with
any prefix and trailing parts) or detection of the provider from the first message; an
optional shared secret (path segment, ``token`` query parameter, ``Authorization: Bearer``
or ``X-Callengine-Token`` header; compared in constant time); a limit on concurrent calls
(HTTP 503); a bound on message size (close 1009); and a shielded, bounded close.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import sys
import threading
import time
import urllib.parse
from typing import Any

import attrs
import trio

from .call.config import CallConfig
from .call.session import Agent, CallSession
from .call.transport import Transport, TransportClosed, aclose_quietly
from .call.websocket import HandshakeFailed, UpgradeRequest, read_upgrade_request
from .errors import CloseCode
from .protocols.base import Role
from .protocols.registry import CODECS, create_codec, detect_provider, provider_from_path

__all__ = ["ServerConfig", "CallServer", "serve", "KNOWLARITY_SUBPROTOCOL"]

log = logging.getLogger("callengine.server")
summary_log = logging.getLogger("callengine.calls")

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"


@attrs.frozen
class ServerConfig:
    """How the server accepts calls.

    ``provider``: force one provider for every path (else route by path, then detect).
    ``detect_paths``: paths on which the provider is detected from the first message.
    ``token``: shared secret; None disables the check. ``certfile``/``keyfile``: serve wss.
    ``max_calls``: concurrent calls; more get HTTP 503. ``max_message_size``: bytes; a
    larger inbound message closes the call with 1009. ``handshake_timeout_s``: TCP accept
    to WebSocket accepted (and, for detection, the first message). ``drain_grace_s``: how
    long live calls may go on after a drain starts.
    ``loop_watchdog_s``: report when the event loop is blocked this long (an agent that
    never reaches a checkpoint), None to disable.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    provider: str | None = None
    detect_paths: tuple[str, ...] = ("/", "/ws", "/stream", "/call")
    token: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    max_calls: int = 500
    max_message_size: int = 256 * 1024
    handshake_timeout_s: float = 10.0
    drain_grace_s: float = 30.0
    loop_watchdog_s: float | None = 1.0
    call: CallConfig = attrs.field(factory=CallConfig)

    def __attrs_post_init__(self) -> None:
        if self.provider is not None and self.provider not in CODECS:
            raise ValueError(f"unknown provider {self.provider!r}; choose from {', '.join(CODECS)}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("TLS needs both certfile and keyfile")


class _Rejection(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
        self._accept_scope: trio.CancelScope | None = None
        self._calls_scope: trio.CancelScope | None = None
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
            "rejections": dict(self.rejections),
            "end_causes": dict(self.end_causes),
        }

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept calls until cancelled or drained. ``task_status.started(port)``."""
        cfg = self.config
        if self._ssl_context is not None:
            listeners = await trio.open_ssl_over_tcp_listeners(cfg.port, self._ssl_context, host=cfg.host)
        else:
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        self._listeners = listeners
        sock = listeners[0].transport_listener.socket if self._ssl_context is not None else listeners[0].socket
        self.port = sock.getsockname()[1]
        scheme = "wss" if self._ssl_context else "ws"
        log.info("callengine listening on %s://%s:%d (max %d calls)", scheme, cfg.host, self.port, cfg.max_calls)
        try:
            async with trio.open_nursery() as calls:
                self._calls_scope = calls.cancel_scope
                if cfg.loop_watchdog_s:
                    calls.start_soon(self._heartbeat)
                self._accept_scope = trio.CancelScope()
                self.accepting = True
                task_status.started(self.port)
                with self._accept_scope:
                    await trio.serve_listeners(self._handle_stream, listeners, handler_nursery=calls)
                # drained: stop the heartbeat once the calls are gone
                await self._idle.wait()
                calls.cancel_scope.cancel()
        finally:
            self.accepting = False
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    try:
                        await listener.aclose()
                    except Exception:
                        pass
            log.info("callengine stopped: %s", json.dumps(self.statistics()))

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop accepting; let live calls finish for ``grace_s`` (default the config's
        ``drain_grace_s``); then end the rest (they close with 1001). Returns when no call
        is left."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        self.accepting = False
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for listener in self._listeners:
            with trio.CancelScope(shield=True):
                try:
                    await listener.aclose()
                except Exception:
                    pass
        log.info("draining: %d live call(s), grace %.1f s", self.active_calls, grace)
        with trio.move_on_after(grace):
            await self._idle.wait()
        if self.active_calls and self._calls_scope is not None:
            log.info("drain grace over: ending %d call(s)", self.active_calls)
            self._calls_scope.cancel()
        await self._idle.wait()

    # --- one connection ----------------------------------------------------------------

    async def _handle_stream(self, stream: trio.abc.Stream) -> None:
        self.counters["connections"] += 1
        remote = _peer_name(stream)
        try:
            await self._handle_connection(stream, remote)
        except Exception as exc:  # the error boundary: never past this connection
            self.counters["errors"] += 1
            log.error("connection from %s failed: %r", remote, exc, exc_info=exc)
        finally:
            await aclose_quietly(stream)

    async def _handle_connection(self, stream: trio.abc.Stream, remote: str) -> None:
        cfg = self.config
        try:
            with trio.fail_after(cfg.handshake_timeout_s):
                request = await read_upgrade_request(stream)
        except (trio.TooSlowError, HandshakeFailed, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.counters["handshake_failures"] += 1
            log.warning("handshake from %s failed: %s", remote, "timed out" if isinstance(exc, trio.TooSlowError) else exc)
            return
        try:
            provider, path = self._route(request)
        except _Rejection as rej:
            await self._reject(request, rej, remote)
            return
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
                log.warning("accepting %s failed: %r", remote, exc)
                return
            await self._run_call(ws, provider, path, remote, release)
        finally:
            release()

    def _route(self, request: UpgradeRequest) -> tuple[str | None, str]:
        cfg = self.config
        if not self.accepting:
            raise _Rejection(503, "server is draining")
        if self.active_calls >= cfg.max_calls:
            raise _Rejection(503, f"call limit reached ({cfg.max_calls})")
        parsed = urllib.parse.urlsplit(request.path)
        path = parsed.path or "/"
        segments = [s for s in path.split("/") if s]
        if cfg.token is not None:
            query = urllib.parse.parse_qs(parsed.query)
            offered = _header(request, "x-callengine-token")
            auth = _header(request, "authorization")
            if offered is None and auth and auth.lower().startswith("bearer "):
                offered = auth[7:].strip()
            if offered is None and "token" in query:
                offered = query["token"][0]
            token_segment = None
            if offered is None:
                for seg in segments:
                    if hmac.compare_digest(seg.encode(), cfg.token.encode()):
                        token_segment = seg
                        break
                if token_segment is None:
                    raise _Rejection(401, "missing or unknown token")
                offered = token_segment
            if not hmac.compare_digest(offered.encode(), cfg.token.encode()):
                raise _Rejection(403, "wrong token")
            segments = [s for s in segments if s != token_segment]
        bare = "/" + "/".join(segments)
        if cfg.provider is not None:
            return cfg.provider, path
        provider = provider_from_path(bare)
        if provider is not None:
            return provider, path
        if bare in cfg.detect_paths or bare.rstrip("/") in cfg.detect_paths:
            return None, path
        raise _Rejection(404, f"unknown path {path!r}: use /awaaz or /knowlarity")

    async def _reject(self, request: UpgradeRequest, rej: _Rejection, remote: str) -> None:
        self.counters["rejected"] += 1
        key = str(rej.status)
        self.rejections[key] = self.rejections.get(key, 0) + 1
        level = logging.INFO if rej.status == 503 else logging.WARNING
        log.log(level, "rejected %s %s: %d %s", remote, urllib.parse.urlsplit(request.path).path, rej.status, rej.reason)
        with trio.move_on_after(2.0):
            try:
                await request.reject(rej.status, body=rej.reason.encode() + b"\n")
            except Exception:
                pass

    async def _run_call(self, transport: Transport, provider: str | None, path: str, remote: str, release) -> None:
        cfg = self.config
        pending = []
        if provider is None:
            try:
                with trio.fail_after(cfg.handshake_timeout_s):
                    first = await transport.get_message()
            except (trio.TooSlowError, TransportClosed) as exc:
                log.warning("no first message from %s on %s: %s", remote, path, type(exc).__name__)
                with trio.move_on_after(cfg.call.close_timeout_s, shield=True):
                    await transport.aclose(CloseCode.POLICY_VIOLATION, "no start message")
                return
            provider = detect_provider(first)
            if provider is None:
                self.counters["rejected"] += 1
                self.rejections["unknown_provider"] = self.rejections.get("unknown_provider", 0) + 1
                log.warning("could not tell the provider from the first message from %s on %s", remote, path)
                with trio.move_on_after(cfg.call.close_timeout_s, shield=True):
                    await transport.aclose(CloseCode.POLICY_VIOLATION, "unknown provider: use /awaaz or /knowlarity")
                return
            pending.append(first)
        self.counters["calls"] += 1
        codec = create_codec(provider, Role.ENGINE)
        session = CallSession(transport, self.agent, codec, cfg.call, provider=provider, pending_messages=pending)
        recorded = False

        def record_end() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            report = session.report
            self.counters["calls_ended"] += 1
            if report is not None:
                self.end_causes[report.end_cause] = self.end_causes.get(report.end_cause, 0) + 1
                self.reports.append(report)
                del self.reports[:-1000]
                summary = {"event": "call_ended", "remote": remote, "path": path, **report.as_dict()}
                summary_log.info(json.dumps(summary, default=str))
            release()

        async def on_closed() -> None:
            await session.closed.wait()
            record_end()

        async with trio.open_nursery() as nursery:
            # the summary and the slot do not wait for an agent that refuses to exit
            nursery.start_soon(on_closed)
            try:
                await session.run()
            finally:
                nursery.cancel_scope.cancel()
                record_end()

    # --- event loop watchdog ------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Detect a blocked event loop: an agent that never checkpoints stalls every call,
        and trio cannot cancel it. A thread watches a heartbeat and logs the stuck stack."""
        limit = self.config.loop_watchdog_s
        assert limit
        beat = [time.monotonic()]
        stop = threading.Event()
        main_id = threading.get_ident()

        def watch() -> None:
            reported = False
            while not stop.wait(limit / 4):
                stalled = time.monotonic() - beat[0]
                if stalled > limit and not reported:
                    reported = True
                    frame = sys._current_frames().get(main_id)
                    where = _describe_frame(frame)
                    log.error("event loop blocked for %.1f s (an agent that never awaits?) at %s", stalled, where)
                    self.counters["loop_stalls"] = self.counters.get("loop_stalls", 0) + 1
                elif stalled <= limit:
                    reported = False

        thread = threading.Thread(target=watch, name="callengine-loop-watchdog", daemon=True)
        thread.start()
        try:
            while True:
                beat[0] = time.monotonic()
                await trio.sleep(limit / 4)
        finally:
            stop.set()


def _describe_frame(frame) -> str:
    parts = []
    while frame is not None and len(parts) < 4:
        parts.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts) or "unknown"


def _header(request: UpgradeRequest, name: str) -> str | None:
    want = name.lower().encode()
    for key, value in request.headers:
        if key.lower() == want:
            return value.decode("latin-1")
    return None


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
    With ``nursery.start(serve, agent, port=0)`` the started value is the bound port.
    """
    if config is None:
        config = ServerConfig(host=host, port=port, **options)
    server = CallServer(agent, config)
    await server.serve(task_status=task_status)
