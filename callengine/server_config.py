"""How the call server accepts calls: :class:`ServerConfig` (checked when it is made: a
bad provider, codec option, call setting or route is a start-up error, not a failure of
every call), the :class:`Route` s it sends paths by, and :func:`split_settings`.
:class:`callengine.server.CallServer` runs with one.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from .call.config import CALL_SETTINGS, CallConfig
from .events import FrozenDict
from .limits import default_max_pending_handshakes
from .protocols.base import Role
from .protocols.registry import CODECS, create_codec

__all__ = ["ServerConfig", "Route", "split_settings"]


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
