"""Keep the shared token out of logs and reports.

Providers may carry the token in the URL path (``wss://host/s3cret/awaaz``, the usual
Awaaz setup), in the ``token`` query parameter or in a header. Whatever the server logs
or reports about a request goes through here first:

* a path segment or query value equal to the token becomes ``***``;
* the ``token`` query parameter is always ``***``, right or wrong (a wrong token is often
  an old or mistyped real one);
* with ``unknown_segments=True`` (a request whose token was not found, so any segment may
  be a wrong token) every segment but the provider names and the detection paths becomes
  ``***``;
* the Authorization and X-Callengine-Token headers become ``***``.
"""

from __future__ import annotations

import urllib.parse
from typing import Iterable, Sequence

__all__ = ["MASK", "redact_path", "redact_headers", "redact_text", "SECRET_HEADERS"]

MASK = "***"
SECRET_HEADERS = frozenset({b"authorization", b"x-callengine-token", b"cookie", b"proxy-authorization"})
TOKEN_QUERY_KEYS = frozenset({"token", "access_token"})


def _is_secret(value: str, token: str | None) -> bool:
    if not token or not value:
        return False
    return value == token or urllib.parse.unquote(value) == token


def redact_path(target: str, token: str | None = None, *, keep: Iterable[str] = (), unknown_segments: bool = False) -> str:
    """``target`` (an HTTP request target: path and query) with secrets masked.

    ``keep``: segments shown even with ``unknown_segments`` (provider names, the segments
    of the detection paths); compared case-insensitively.
    """
    if not isinstance(target, str):
        return MASK
    path, sep, query = target.partition("?")
    path = path.split("#", 1)[0]
    kept = {k.lower() for k in keep}
    segments = []
    for seg in path.split("/"):
        if not seg:
            segments.append(seg)
        elif _is_secret(seg, token):
            segments.append(MASK)
        elif unknown_segments and urllib.parse.unquote(seg).lower() not in kept:
            segments.append(MASK)
        else:
            segments.append(seg)
    out = "/".join(segments)
    if sep:
        out += "?" + _redact_query(query, token)
    return out


def _redact_query(query: str, token: str | None) -> str:
    parts = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        name = urllib.parse.unquote_plus(key).lower()
        if name in TOKEN_QUERY_KEYS or _is_secret(value, token) or _is_secret(key, token):
            # a bare "?s3cret" is a key without a value
            parts.append(f"{MASK if _is_secret(key, token) else key}{eq}{MASK if eq else ''}")
        else:
            parts.append(item)
    return "&".join(parts)


def redact_headers(headers: Sequence[tuple[bytes, bytes]], token: str | None = None) -> list[tuple[str, str]]:
    """Headers as text pairs, with the credential headers (and any value equal to the
    token) masked."""
    out = []
    for name, value in headers:
        key = bytes(name).lower()
        text = bytes(value).decode("latin-1")
        if key in SECRET_HEADERS or _is_secret(text, token):
            text = MASK
        out.append((key.decode("latin-1"), text))
    return out


def redact_text(text: str, token: str | None) -> str:
    """Free text (an exception's message) with every occurrence of the token masked."""
    if not token or not isinstance(text, str):
        return text
    text = text.replace(token, MASK)
    quoted = urllib.parse.quote(token, safe="")
    return text.replace(quoted, MASK) if quoted != token else text
