"""Plivo, and Vobiz (Plivo-compatible): hang-up, transfer and outbound calls.

Written against Plivo's Voice API reference, "Call" object (plivo.com/docs/voice/api/call:
hang up, transfer, make a call; the plivo-ruby 4.x ``CallInterface`` docs for the transfer
fields), as stored in December 2026; the hang-up shape matches Pipecat's plivo.py
(HEAD 2026-08-21). Vobiz: docs.vobiz.ai ``call/hangup-call`` and ``call/make-call``
(December 2026).

* hang-up: ``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/`` -> 204. **404 counts as
  success** (``already-ended``): Plivo answers 404 for a call that has already ended,
  which is the usual race with the caller hanging up; a wrong call uuid looks the same,
  which is why the outcome says which it was. *C (Pipecat treats 204 and 404 alike).*
* transfer: ``POST /v1/Account/{auth_id}/Call/{call_uuid}/`` with ``legs=aleg``,
  ``aleg_url``, ``aleg_method`` -> 202. Plivo fetches new XML from ``aleg_url``, so the
  target must be an http(s) URL that answers Plivo XML (e.g. ``<Dial><Number>…``). *C.*
* place call: ``POST /v1/Account/{auth_id}/Call/`` with ``from``, ``to``, ``answer_url``,
  ``answer_method`` -> 201 ``{"message": "call fired", "request_uuid": …}``. Plivo does not
  take a stream URL here: **the user serves the answer XML** at ``answer_url``, e.g.
  ``<Response><Stream bidirectional="true" keepCallAlive="true"
  contentType="audio/x-l16;rate=8000">wss://…</Stream></Response>``. So ``stream_url`` is
  that https answer URL; the custom values go on its query string, for the answer server
  to put into the Stream's ``extraHeaders``. The returned ``request_uuid`` is taken as the
  call's id. *C for the fields; I that request_uuid is the call_uuid of a one-number call.*
* bodies are JSON (what the Plivo SDKs send). *C.* Errors: ``{"api_id", "error"}``. *C.*
* auth: Plivo HTTP Basic (auth id, auth token); Vobiz the headers ``X-Auth-ID`` and
  ``X-Auth-Token``, base ``https://api.vobiz.ai/api``. *C.* Vobiz transfer is taken to be
  Plivo's (no Vobiz page read for it). *I.*

Environment: ``PLIVO_AUTH_ID``, ``PLIVO_AUTH_TOKEN``; ``VOBIZ_AUTH_ID``,
``VOBIZ_AUTH_TOKEN``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Mapping

import attrs
import httpx

from .base import CallIds, ControlConfigError, HangupOutcome, ProviderControl, split_target

__all__ = ["PlivoConfig", "PlivoControl", "VobizControl", "with_query"]


@attrs.frozen
class PlivoConfig:
    auth_id: str
    auth_token: str = attrs.field(repr=False)


def with_query(url: str, extra: Mapping[str, str] | None) -> str:
    """``url`` with ``extra`` added to its query string (existing parameters kept)."""
    if not extra:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class PlivoControl(ProviderControl):
    provider = "plivo"
    default_base_url = "https://api.plivo.com"

    def __init__(self, config: PlivoConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config: PlivoConfig = config

    def _secrets(self) -> tuple[str, ...]:
        # the auth id is the Basic-auth user name: not quoted either
        return (self.config.auth_token, self.config.auth_id)

    def _auth(self) -> httpx.Auth | None:
        return httpx.BasicAuth(self.config.auth_id, self.config.auth_token)

    def _calls(self) -> str:
        return f"/v1/Account/{urllib.parse.quote(self.config.auth_id, safe='')}/Call/"

    def _call(self, ids: CallIds) -> str:
        self._check_provider(ids)
        return f"{self._calls()}{urllib.parse.quote(ids.call_id, safe='')}/"

    async def hangup(self, ids: CallIds) -> HangupOutcome:
        status, _ = await self._request(
            "hangup", "DELETE", self._call(ids), call_id=ids.call_id, idempotent=True, ok=(200, 202, 204), already_ended=(404,)
        )
        return "already-ended" if status == 404 else "ended"

    async def transfer(self, ids: CallIds, target: str) -> None:
        kind, value = split_target(target)
        if kind != "url":
            raise self.unsupported(
                f"transfer to {kind} {value!r}",
                "Plivo transfers a call to an http(s) URL that answers Plivo XML, "
                "e.g. <Response><Dial><Number>…</Number></Dial></Response>; pass that URL",
            )
        body = {"legs": "aleg", "aleg_url": value, "aleg_method": "POST"}
        await self._request("transfer", "POST", self._call(ids), call_id=ids.call_id, idempotent=False, json_body=body)

    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        if not stream_url.lower().startswith(("https://", "http://")):
            raise ControlConfigError(
                f"{self.provider}: an outbound call takes an answer URL (https://…) that serves "
                '<Response><Stream bidirectional="true">wss://…</Stream></Response>, not the wss:// URL itself'
            )
        body = {"from": from_, "to": to, "answer_url": with_query(stream_url, custom), "answer_method": "POST"}
        status, answer = await self._request("place-call", "POST", self._calls(), idempotent=False, json_body=body, ok=(200, 201))
        return self._answer_field("place-call", status, answer, "request_uuid")

    def _error_fields(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping) and isinstance(body.get("error"), str):
            return "", str(body["error"])
        return super()._error_fields(body)


class VobizControl(PlivoControl):
    """Vobiz speaks Plivo's call API under ``/api`` with header authentication."""

    provider = "vobiz"
    default_base_url = "https://api.vobiz.ai/api"

    def _auth(self) -> httpx.Auth | None:
        return None

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Auth-ID": self.config.auth_id, "X-Auth-Token": self.config.auth_token}
