"""Vonage Voice API: hang-up, transfer and outbound calls, authenticated by an
application JWT.

Written against the Vonage Voice API reference (developer.vonage.com/en/api/voice:
"Create an outbound call" ``POST /v1/calls``, "Modify an in progress call"
``PUT /v1/calls/{uuid}``), the NCCO reference (``connect`` with a ``websocket`` endpoint)
and the "Authentication" / JWT generator pages, as stored in December 2026; the transfer
body also matches the derived JSON schema ``UpdateCallRequestTransferAnswerUrl`` of the
Vonage OpenAPI (api-evangelist/vonage, 2026-10-08).

* hang-up: ``PUT /v1/calls/{uuid}`` ``{"action": "hangup"}`` -> 204. *C.* A 404 is taken as
  "already ended". *I: the answer for an ended call is not documented.*
* transfer: the same with ``{"action": "transfer", "destination": {"type": "ncco",
  "ncco": [connect…]}}`` (a phone number or SIP URI), or ``"url": [url]`` for an NCCO URL. *C.*
* place call: ``POST /v1/calls`` with ``to: [{"type": "phone", "number"}]``, ``from:
  {"type": "phone", "number"}`` and ``ncco: [{"action": "connect", "endpoint": [{"type":
  "websocket", "uri", "content-type": "audio/l16;rate=16000", "headers": custom}]}]`` ->
  201 ``{"uuid", "status", "direction", "conversation_uuid"}``. The ``headers`` come back in
  the WebSocket's first text message. *C.* Numbers are sent without a leading ``+`` (the
  reference's examples are bare E.164 digits). *S.*
* auth: ``Authorization: Bearer <JWT>``, RS256 over the application's private key, claims
  ``application_id``, ``iat``, ``nbf``, ``exp``, ``jti``; a fresh token per request. *C.*
  Errors: ``{"type", "title", "detail", "instance"}``. *C.*

Environment: ``VONAGE_APPLICATION_ID`` and ``VONAGE_PRIVATE_KEY`` (the PEM text; ``\\n``
escapes are accepted) or ``VONAGE_PRIVATE_KEY_PATH``. Needs PyJWT with cryptography
(``pip install 'callengine[vonage]'``).
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any, Mapping

import attrs

from .base import CallIds, ControlConfigError, HangupOutcome, ProviderControl, split_target

__all__ = ["VonageConfig", "VonageControl", "websocket_connect_ncco"]

#: how long one request's token is valid; short, since a token is made per request
TOKEN_LIFETIME_S = 300


@attrs.frozen
class VonageConfig:
    application_id: str
    private_key: str = attrs.field(repr=False)  # PEM
    sample_rate: int = 16000


def _number(value: str) -> str:
    return value.strip().removeprefix("+")


def websocket_connect_ncco(stream_url: str, custom: Mapping[str, str] | None, sample_rate: int = 16000) -> list[dict[str, Any]]:
    """The NCCO that connects a call to our WebSocket, with ``custom`` as its headers."""
    endpoint = {"type": "websocket", "uri": stream_url, "content-type": f"audio/l16;rate={sample_rate}", "headers": dict(custom or {})}
    return [{"action": "connect", "endpoint": [endpoint]}]


class VonageControl(ProviderControl):
    provider = "vonage"
    default_base_url = "https://api.nexmo.com"

    def __init__(self, config: VonageConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config: VonageConfig = config
        self._key: Any = None

    def _secrets(self) -> tuple[str, ...]:
        return (self.config.private_key,)

    def _signing_key(self) -> Any:
        if self._key is None:
            try:
                from cryptography.hazmat.primitives.serialization import load_pem_private_key
            except ImportError:
                raise ControlConfigError("vonage: signing the JWT needs PyJWT and cryptography: pip install 'callengine[vonage]'") from None
            try:
                self._key = load_pem_private_key(self.config.private_key.encode(), password=None)
            except (ValueError, TypeError):
                # the parser's message could quote the input: say only what was wrong
                raise ControlConfigError("vonage: the private key is not a readable PEM private key") from None
        return self._key

    def token(self) -> str:
        """A JWT for one request, signed RS256 with the application's private key."""
        try:
            import jwt
        except ImportError:
            raise ControlConfigError("vonage: signing the JWT needs PyJWT: pip install 'callengine[vonage]'") from None
        now = int(time.time())
        claims = {"application_id": self.config.application_id, "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME_S, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._signing_key(), algorithm="RS256")

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def _call(self, ids: CallIds) -> str:
        self._check_provider(ids)
        return f"/v1/calls/{urllib.parse.quote(ids.call_id, safe='')}"

    async def hangup(self, ids: CallIds) -> HangupOutcome:
        status, _ = await self._request(
            "hangup", "PUT", self._call(ids), call_id=ids.call_id, idempotent=True, json_body={"action": "hangup"},
            ok=(200, 204), already_ended=(404,),
        )
        return "already-ended" if status == 404 else "ended"

    async def transfer(self, ids: CallIds, target: str) -> None:
        kind, value = split_target(target)
        if kind == "url":
            destination: dict[str, Any] = {"type": "ncco", "url": [value]}
        else:
            endpoint = {"type": "sip", "uri": value} if kind == "sip" else {"type": "phone", "number": _number(value)}
            destination = {"type": "ncco", "ncco": [{"action": "connect", "endpoint": [endpoint]}]}
        body = {"action": "transfer", "destination": destination}
        await self._request("transfer", "PUT", self._call(ids), call_id=ids.call_id, idempotent=False, json_body=body, ok=(200, 204))

    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        if not stream_url.lower().startswith(("wss://", "ws://")):
            raise ControlConfigError("vonage: the stream URL must be wss:// (the websocket endpoint of the connect NCCO)")
        body = {
            "to": [{"type": "phone", "number": _number(to)}],
            "from": {"type": "phone", "number": _number(from_)},
            "ncco": websocket_connect_ncco(stream_url, custom, self.config.sample_rate),
        }
        status, answer = await self._request("place-call", "POST", "/v1/calls", idempotent=False, json_body=body, ok=(200, 201))
        return self._answer_field("place-call", status, answer, "uuid")

    def _error_fields(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping) and ("title" in body or "detail" in body):
            title, detail = str(body.get("title", "")), str(body.get("detail", ""))
            return str(body.get("type", "")).rsplit("#", 1)[-1], f"{title}: {detail}" if title and detail else (title or detail)
        return super()._error_fields(body)
