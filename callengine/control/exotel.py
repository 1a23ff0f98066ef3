"""Exotel: outbound calls straight to a voice bot through the Connect Voice AI API.

Written against Exotel's "Connect Voice AI API" (developer.exotel.com/docs/agentstream/
connect-voice-ai and the AgentStream developer guide, as stored in December 2026; launched
in Exotel's post "One API call. Your AI bot is on the phone") and the classic Voice v1
"Connect two numbers" reference for the endpoint's conventions.

* place call: ``POST /v1/Accounts/{AccountSid}/Calls/connect.json``, form ``From`` (the
  number to dial), ``CallerId`` (your ExoPhone), ``StreamUrl`` (wss://, at most 600
  characters), ``StreamType=bidirectional``; answers a Call object with its ``Sid``. *C.*
  Note the naming: Exotel's ``From`` is the customer, so ``to`` goes there and ``from_``
  is the ``CallerId``. The ``.json`` suffix asks the v1 API for JSON instead of XML; the
  answer is read as ``Call.Sid`` in any letter case (the guide shows ``call.sid``). *S.*
  Custom values go on the stream URL's query string, which Exotel echoes as
  ``start.custom_parameters`` (at most 3, 256 characters together). *C.*
* hang-up and transfer: **no REST call**. Exotel's way is to close the WebSocket: the call
  flow then runs its next applet (none, or a Hangup applet, ends the call; a Connect applet
  transfers it). Both raise UnsupportedCommand saying so. *C (AgentStream best practices).*
* auth: HTTP Basic, API key and API token; the host is the account's region,
  ``api.exotel.com`` (Singapore) or ``api.in.exotel.com`` (Mumbai). *C.*
  Errors: v1 JSON ``{"RestException": {"Status", "Message"}}``. *S.*

Environment: ``EXOTEL_API_KEY``, ``EXOTEL_API_TOKEN``, ``EXOTEL_SID`` (the account SID),
``EXOTEL_SUBDOMAIN`` (``api.exotel.com`` unless set).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Mapping

import attrs
import httpx

from .base import CallIds, ControlConfigError, HangupOutcome, ProviderControl
from .plivo import with_query

__all__ = ["ExotelConfig", "ExotelControl", "MAX_STREAM_URL"]

MAX_STREAM_URL = 600
MAX_CUSTOM = 3

_CLOSE_HINT = "close the WebSocket; the call flow's next applet then runs (a Hangup applet ends the call, a Connect applet transfers it)"


@attrs.frozen
class ExotelConfig:
    api_key: str
    api_token: str = attrs.field(repr=False)
    account_sid: str
    subdomain: str = "api.exotel.com"


class ExotelControl(ProviderControl):
    provider = "exotel"

    def __init__(self, config: ExotelConfig, **kwargs: Any) -> None:
        if not kwargs.get("base_url"):
            host = config.subdomain.strip().removeprefix("https://").removeprefix("http://").strip("/")
            kwargs["base_url"] = f"https://{host}"
        super().__init__(**kwargs)
        self.config: ExotelConfig = config

    def _secrets(self) -> tuple[str, ...]:
        return (self.config.api_token, self.config.api_key)

    def _auth(self) -> httpx.Auth:
        return httpx.BasicAuth(self.config.api_key, self.config.api_token)

    async def hangup(self, ids: CallIds) -> HangupOutcome:
        self._check_provider(ids)
        raise self.unsupported("hang up", _CLOSE_HINT)

    async def transfer(self, ids: CallIds, target: str) -> None:
        self._check_provider(ids)
        raise self.unsupported("transfer", _CLOSE_HINT)

    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        if not stream_url.lower().startswith(("wss://", "ws://")):
            raise ControlConfigError("exotel: StreamUrl must be a ws:// or wss:// URL")
        if custom and len(custom) > MAX_CUSTOM:
            raise ControlConfigError(f"exotel: at most {MAX_CUSTOM} custom values reach the stream (got {len(custom)})")
        url = with_query(stream_url, custom)
        if len(url) > MAX_STREAM_URL:
            raise ControlConfigError(f"exotel: the stream URL with its custom values is {len(url)} characters; Exotel takes {MAX_STREAM_URL}")
        form = {"From": to, "CallerId": from_, "StreamUrl": url, "StreamType": "bidirectional"}
        path = f"/v1/Accounts/{urllib.parse.quote(self.config.account_sid, safe='')}/Calls/connect.json"
        status, answer = await self._request("place-call", "POST", path, idempotent=False, form=form, ok=(200, 201))
        return self._answer_field("place-call", status, answer, "Call", "Sid")

    def _error_fields(self, body: Any) -> tuple[str, str]:
        rest = body.get("RestException") if isinstance(body, Mapping) else None
        if isinstance(rest, Mapping):
            return str(rest.get("Code", rest.get("Status", ""))), str(rest.get("Message", ""))
        return super()._error_fields(body)
