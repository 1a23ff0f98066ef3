"""Telnyx: hang-up, transfer and outbound calls through Call Control v2.

Written against the Telnyx API v2 reference, "Call Commands" (developers.telnyx.com
api-reference/call-commands: dial, hangup, transfer; OpenAPI "Telnyx Calls API" 2.0.0)
and the "Media Streaming" guide, as stored in December 2026; the hang-up shape matches
Pipecat's telnyx.py (HEAD 2026-08-21).

* hang-up: ``POST /v2/calls/{call_control_id}/actions/hangup`` with ``command_id`` ->
  200 ``{"data": {"result": "ok"}}``; 422 with error code 90018 means the call has
  already ended. *C.*
* transfer: ``POST /v2/calls/{call_control_id}/actions/transfer`` with ``to`` (number or
  SIP URI) and ``command_id``. *C.*
* ``command_id`` makes Telnyx ignore a repeated command for the same call, so these two
  are retried safely (one id for all attempts of one operation). *C (field doc).*
* place call: ``POST /v2/calls`` with ``connection_id``, ``to``, ``from``, ``stream_url``,
  ``stream_track=inbound_track``, ``stream_bidirectional_mode=rtp`` and
  ``stream_bidirectional_codec=PCMU`` (without rtp mode Telnyx drops what we send) ->
  ``data.call_control_id``. *C.* Dial has no per-call custom values that reach the stream's
  start message, so the custom values go on the stream URL's query string. *I.*
* auth: ``Authorization: Bearer <API key>``. Errors: ``{"errors": [{"code", "title",
  "detail"}]}``. *C.*

Environment: ``TELNYX_API_KEY``; ``TELNYX_CONNECTION_ID`` (the Call Control application)
for outbound calls only.
"""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any, Mapping

import attrs

from .base import CallIds, ControlConfigError, HangupOutcome, ProviderControl, split_target
from .plivo import with_query

__all__ = ["TelnyxConfig", "TelnyxControl"]

#: Telnyx's error code for a command on a call that has ended
CALL_ENDED = "90018"


@attrs.frozen
class TelnyxConfig:
    api_key: str = attrs.field(repr=False)
    connection_id: str = ""
    stream_codec: str = "PCMU"


class TelnyxControl(ProviderControl):
    provider = "telnyx"
    default_base_url = "https://api.telnyx.com"

    def __init__(self, config: TelnyxConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config: TelnyxConfig = config

    def _secrets(self) -> tuple[str, ...]:
        return (self.config.api_key,)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _action(self, ids: CallIds, action: str) -> str:
        self._check_provider(ids)
        # the v3: prefix keeps its colon, as Telnyx prints ids in paths; anything else is escaped
        return f"/v2/calls/{urllib.parse.quote(ids.call_id, safe=':')}/actions/{action}"

    async def hangup(self, ids: CallIds) -> HangupOutcome:
        status, body = await self._request(
            "hangup", "POST", self._action(ids, "hangup"), call_id=ids.call_id, idempotent=True,
            json_body={"command_id": str(uuid.uuid4())}, ok=(200,), already_ended=(422,),
        )
        if status == 422:
            code, message = self._error_fields(body)
            if code != CALL_ENDED:
                raise self._error("hangup", status, message or "unprocessable", code)
            return "already-ended"
        return "ended"

    async def transfer(self, ids: CallIds, target: str) -> None:
        kind, value = split_target(target)
        if kind == "url":
            raise self.unsupported("transfer to a URL", "Telnyx transfers to a number or a SIP URI (the 'to' of actions/transfer)")
        await self._request(
            "transfer", "POST", self._action(ids, "transfer"), call_id=ids.call_id, idempotent=True,
            json_body={"to": value, "command_id": str(uuid.uuid4())}, ok=(200,),
        )

    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        if not self.config.connection_id:
            raise ControlConfigError("telnyx: placing a call needs the Call Control connection id (TELNYX_CONNECTION_ID)")
        if not stream_url.lower().startswith(("wss://", "ws://")):
            raise ControlConfigError("telnyx: the stream URL must be wss:// (Telnyx's stream_url)")
        body = {
            "connection_id": self.config.connection_id,
            "to": to,
            "from": from_,
            "stream_url": with_query(stream_url, custom),
            "stream_track": "inbound_track",
            "stream_bidirectional_mode": "rtp",
            "stream_bidirectional_codec": self.config.stream_codec,
        }
        # not retried past a connect failure: a repeated dial is a second call
        status, answer = await self._request("place-call", "POST", "/v2/calls", idempotent=False, json_body=body, ok=(200, 201))
        return self._answer_field("place-call", status, answer, "data", "call_control_id")

    def _error_fields(self, body: Any) -> tuple[str, str]:
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            first: Mapping[str, Any] = errors[0]
            title, detail = str(first.get("title", "")), str(first.get("detail", ""))
            message = f"{title}: {detail}" if title and detail and detail != title else (title or detail)
            return str(first.get("code", "")), message
        return super()._error_fields(body)
