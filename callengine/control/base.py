"""What every provider-control implementation shares: the call's identifiers, the
interface, the errors and one careful HTTP request helper.

Some providers cannot end, move or place a call over the media WebSocket; their REST API
can. This package is that seam. It sits beside :mod:`callengine.call` (it may use trio and
httpx); the sans-IO layers never import it.

Rules every implementation follows, because the helper here enforces them:

* every request has a timeout (per phase, and one deadline over all attempts);
* a request is retried only when repeating it cannot do harm: an idempotent operation
  (hang-up, a Telnyx command with ``command_id``) on a transport failure, 429 or 5xx; any
  operation when the connection could not even be opened (the request never left);
* every failure is a :class:`ProviderAPIError` carrying the HTTP status and the
  provider's own message;
* no credential reaches a log line or an exception message: requests are logged by
  operation and call id only, and the provider's text is scrubbed of the secrets before
  it is quoted.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from typing import Any, Iterable, Mapping

import httpx
import trio

from ..errors import UnsupportedCommand
from .records import CallIds, ControlConfigError, HangupOutcome, HttpSettings, ProviderAPIError, scrub, split_target

# the records are re-exported: implementations import everything they need from here
__all__ = [
    "CallIds",
    "ProviderControl",
    "ProviderAPIError",
    "ControlConfigError",
    "HttpSettings",
    "HangupOutcome",
    "scrub",
    "split_target",
]

log: logging.Logger = logging.getLogger("callengine.control")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare on these APIs; fall back to the back-off


_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ProviderControl(abc.ABC):
    """Hang up, transfer or place calls through one provider's REST API.

    Use as ``async with`` (or call :meth:`aclose`): the control owns one
    :class:`httpx.AsyncClient`, opened on first use in the running trio loop. An
    operation the provider cannot do raises :class:`~callengine.errors.UnsupportedCommand`
    naming the provider.
    """

    #: the provider's name, as in ``callengine call --provider``
    provider: str = ""
    #: the production API base URL; overridable per instance (tests, regions, compatibles)
    default_base_url: str = ""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpSettings | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url: str = (base_url or self.default_base_url).rstrip("/")
        self.http: HttpSettings = http or HttpSettings()
        self._client = client
        self._owns_client = client is None
        self._client_token: trio.lowlevel.TrioToken | None = None

    # --- the interface ------------------------------------------------------------------

    @abc.abstractmethod
    async def hangup(self, ids: CallIds) -> HangupOutcome:
        """End the call. A call that had already ended is not an error."""

    @abc.abstractmethod
    async def transfer(self, ids: CallIds, target: str) -> None:
        """Hand the live call over to ``target`` (number, SIP URI or, where the provider
        works that way, a URL of call instructions); this ends the media stream."""

    @abc.abstractmethod
    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        """Dial ``to`` from ``from_`` and stream the answered call to ``stream_url``, with
        ``custom`` as the per-call values the start message will carry. Returns the
        placed call's id."""

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> "ProviderControl":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            client, self._client = self._client, None
            with trio.move_on_after(2.0) as scope:
                scope.shield = True  # closing must finish even while we are being cancelled
                await client.aclose()

    # --- for implementations ------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        """The credential strings that must never be quoted (scrubbed from provider text)."""
        return ()

    def _auth(self) -> httpx.Auth | None:
        return None

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def unsupported(self, what: str, hint: str) -> UnsupportedCommand:
        return UnsupportedCommand(f"{self.provider} cannot {what} through its API: {hint}")

    def _check_provider(self, ids: CallIds) -> None:
        if ids.provider != self.provider:
            raise ValueError(f"call ids of {ids.provider!r} given to the {self.provider} control")

    def _client_now(self) -> httpx.AsyncClient:
        token = trio.lowlevel.current_trio_token()
        if self._client is not None and self._owns_client and token is not self._client_token:
            # made in an earlier trio.run: its pooled connections belong to that loop
            self._client = None
        self._client_token = token
        if self._client is None:
            t = self.http.timeout_s
            # no environment proxies or netrc: credentials go where the code says, nowhere else
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(t, connect=min(t, 5.0)), trust_env=False)
        return self._client

    async def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        call_id: str = "",
        idempotent: bool,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        already_ended: Iterable[int] = (),
    ) -> tuple[int, Any]:
        """Send one request (with retries where safe); return (status, decoded JSON or None).

        A status in ``already_ended`` is returned as it is, for the caller to read as "the
        call has already ended"; anything else outside ``ok`` raises ProviderAPIError.
        """
        ok_set, ended_set = frozenset(ok), frozenset(already_ended)
        url = self.base_url + path
        headers = {"Accept": "application/json", **self._auth_headers()}
        attempts = 1 + self.http.retries
        started = time.monotonic()
        last_error: ProviderAPIError | None = None
        with trio.move_on_after(self.http.deadline_s) as deadline:
            for attempt in range(1, attempts + 1):
                try:
                    response = await self._client_now().request(
                        method, url, headers=headers, data=form, json=json_body, auth=self._auth() or httpx.USE_CLIENT_DEFAULT
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    # the request never left: repeating it cannot do anything twice
                    last_error = self._error(operation, None, f"could not connect ({type(exc).__name__})")
                    retry = True
                    wait = self._backoff(attempt)
                except httpx.TransportError as exc:
                    # it may have reached the provider: only an idempotent request goes again
                    last_error = self._error(operation, None, f"no answer ({type(exc).__name__})")
                    retry = idempotent
                    wait = self._backoff(attempt)
                else:
                    status = response.status_code
                    log.debug("%s %s %s: HTTP %d (attempt %d)", self.provider, operation, call_id or "-", status, attempt)
                    if status in ok_set or status in ended_set:
                        return status, _json_or_none(response)
                    last_error = self._api_error(operation, response)
                    retry = idempotent and status in _RETRY_STATUSES
                    after = _retry_after(response) if retry else None
                    if after is not None and after > self.http.max_retry_after_s:
                        retry = False
                    wait = after if after is not None else self._backoff(attempt)
                if not retry or attempt == attempts:
                    break
                log.info("%s %s %s: %s; retrying in %.1f s", self.provider, operation, call_id or "-", last_error.provider_message, wait)
                await trio.sleep(wait)
        if deadline.cancelled_caught:
            last_error = self._error(operation, None, f"no answer within {self.http.deadline_s:g} s")
        assert last_error is not None
        log.warning("%s %s %s failed after %.1f s: %s", self.provider, operation, call_id or "-", time.monotonic() - started, last_error)
        raise last_error

    def _answer_field(self, operation: str, status: int, body: Any, *path: str) -> str:
        """The string at ``path`` in a successful answer (keys matched case-insensitively,
        as Exotel's casing varies); a ProviderAPIError if it is not there."""
        node: Any = body
        for key in path:
            if not isinstance(node, Mapping):
                node = None
                break
            lowered = {str(k).lower(): v for k, v in node.items()}
            node = lowered.get(key.lower())
        if not isinstance(node, str) or not node:
            # the provider said yes: the call may well exist, so say that rather than "failed" alone
            raise self._error(operation, status, f"accepted, but the answer has no {'.'.join(path)} (the call may have been placed)")
        return node

    def _backoff(self, attempt: int) -> float:
        return self.http.backoff_s * (2 ** (attempt - 1))

    def _error(self, operation: str, status: int | None, message: str, code: str = "") -> ProviderAPIError:
        secrets = self._secrets()
        return ProviderAPIError(self.provider, operation, status, scrub(message, secrets), scrub(code, secrets))

    def _api_error(self, operation: str, response: httpx.Response) -> ProviderAPIError:
        code, message = self._error_fields(_json_or_none(response))
        if not message:
            text = response.text.strip()
            message = text[:200] if text and not text.startswith("<") else response.reason_phrase or "error"
        return self._error(operation, response.status_code, message, code)

    def _error_fields(self, body: Any) -> tuple[str, str]:
        """(code, message) of the provider's error body; per provider, as documented."""
        if isinstance(body, Mapping):
            for key in ("message", "error", "detail", "title"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return str(body.get("code", "")), value
        return "", ""


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None
