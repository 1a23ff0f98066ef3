"""Which provider a WebSocket upgrade request is for, and whether it may connect: the
shared token (path segment, ``token`` query parameter, ``Authorization: Bearer`` or
``X-Callengine-Token``, compared in constant time), then the path (``/awaaz``,
``/knowlarity`` with any prefix and trailing parts, or a detection path)."""

from __future__ import annotations

import hmac
import urllib.parse
from typing import TYPE_CHECKING

from .protocols.registry import CODECS, provider_from_path
from .redact import redact_path

if TYPE_CHECKING:
    from .call.websocket import UpgradeRequest
    from .server_config import Route, ServerConfig

__all__ = ["Rejection", "route", "routed", "shown_path"]


class Rejection(Exception):
    """Answer the upgrade request with HTTP ``status``."""

    def __init__(self, status: int, reason: str, *, token_unknown: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.token_unknown = token_unknown  # no token found: any path segment may be a wrong one


def route(config: "ServerConfig", request: "UpgradeRequest") -> "tuple[str | None, Route | None]":
    """(the provider, None to detect it from the first message; the configured route the
    path came by, if any) or :class:`Rejection` (401 no token, 403 wrong token, 404 unknown
    path)."""
    parsed = urllib.parse.urlsplit(request.path)
    segments = [s for s in (parsed.path or "/").split("/") if s]
    token = config.token
    if token is not None:
        offered = offered_token(request.path, request.headers)
        token_segment = None
        if offered is None:
            for seg in segments:
                if hmac.compare_digest(seg.encode(), token.encode()):
                    token_segment = seg
                    break
            if token_segment is None:
                raise Rejection(401, "missing or unknown token", token_unknown=True)
            offered = token_segment
        if not hmac.compare_digest(offered.encode(), token.encode()):
            raise Rejection(403, "wrong token")
        segments = [s for s in segments if s != token_segment]
    bare = "/" + "/".join(segments)
    if config.provider is not None:
        return config.provider, None
    via = routed(config.routes, segments)
    if via is not None:
        return via.provider, via
    provider = provider_from_path(bare)
    if provider is not None:
        return provider, None
    if bare in config.detect_paths or bare.rstrip("/") in config.detect_paths:
        return None, None
    raise Rejection(404, f"unknown path: use a provider's path ({', '.join('/' + name for name in CODECS)}) or a route")


def offered_token(target: str, headers: "list[tuple[bytes, bytes]]") -> str | None:
    """The token a request offers outside its path: ``X-Callengine-Token``, then
    ``Authorization: Bearer``, then the ``token`` query parameter."""
    offered = _header(headers, "x-callengine-token")
    auth = _header(headers, "authorization")
    if offered is None and auth and auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    if offered is None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        if "token" in query:
            offered = query["token"][0]
    return offered


def routed(routes: "tuple[Route, ...]", segments: list[str]) -> "Route | None":
    """The route of the longest prefix the path's segments start with."""
    best: tuple[int, Route] | None = None
    for r in routes:
        want = [s for s in r.prefix.split("/") if s]
        if segments[: len(want)] == want and (best is None or len(want) > best[0]):
            best = (len(want), r)
    return best[1] if best else None


def shown_path(config: "ServerConfig", target: str, *, token_unknown: bool = False) -> str:
    """``target`` as logs and reports show it: the token, right or wrong, masked. With
    ``token_unknown`` (a token is required and none was found), every segment but the
    provider names and the detection paths' segments is masked."""
    keep = list(CODECS) + [seg for p in (*config.detect_paths, *(r.prefix for r in config.routes)) for seg in p.split("/") if seg]
    return redact_path(target, config.token, keep=keep, unknown_segments=token_unknown and config.token is not None)


def _header(headers: "list[tuple[bytes, bytes]]", name: str) -> str | None:
    want = name.lower().encode()
    for key, value in headers:
        if key.lower() == want:
            return value.decode("latin-1")
    return None
