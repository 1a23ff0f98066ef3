"""Twilio: hang-up, transfer and outbound calls through the Calls resource.

Written against the Twilio REST API 2010-04-01 "Call resource" reference
(twilio.com/docs/voice/api/call-resource, as stored in December 2026) and its "Modify
calls in progress" guide; the hang-up shape matches Pipecat's twilio.py (HEAD 2026-08-21).

* hang-up: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``, form
  ``Status=completed``; 404 with code 20404 means the call no longer exists (taken as
  already ended). *C.*
* transfer: the same resource with ``Twiml=<Response><Dial>…</Dial></Response>`` (a SIP
  URI as ``<Dial><Sip>…</Sip></Dial>``), or ``Url=`` when the target is an instructions
  URL. The new TwiML ends the ``<Connect><Stream>``. *C for the fields; I that a single
  ``<Dial>`` is what users want.*
* place call: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``, form ``To``,
  ``From``, ``Twiml=<Response><Connect><Stream url=…>`` with one ``<Parameter name value>``
  per custom value (they arrive as ``start.customParameters``); 201 with ``sid``. *C.*
* auth: HTTP Basic, Account SID and Auth Token. Errors: JSON ``code``, ``message``,
  ``more_info``, ``status``. *C.*

Environment: ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Mapping
from xml.sax.saxutils import escape, quoteattr

import attrs
import httpx

from .base import CallIds, ControlConfigError, HangupOutcome, ProviderControl, split_target

__all__ = ["TwilioConfig", "TwilioControl", "connect_stream_twiml"]


@attrs.frozen
class TwilioConfig:
    account_sid: str
    auth_token: str = attrs.field(repr=False)


def connect_stream_twiml(stream_url: str, custom: Mapping[str, str] | None = None) -> str:
    """The TwiML that connects an answered call to a bidirectional Media Stream."""
    params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in (custom or {}).items())
    return f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"


def dial_twiml(target: str) -> str:
    kind, value = split_target(target)
    inner = f"<Sip>{escape(value)}</Sip>" if kind == "sip" else escape(value)
    return f"<Response><Dial>{inner}</Dial></Response>"


class TwilioControl(ProviderControl):
    provider = "twilio"
    default_base_url = "https://api.twilio.com"

    def __init__(self, config: TwilioConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config: TwilioConfig = config

    def _secrets(self) -> tuple[str, ...]:
        return (self.config.auth_token,)

    def _auth(self) -> httpx.Auth:
        return httpx.BasicAuth(self.config.account_sid, self.config.auth_token)

    def _calls(self, account: str) -> str:
        return f"/2010-04-01/Accounts/{urllib.parse.quote(account or self.config.account_sid, safe='')}/Calls"

    def _call(self, ids: CallIds) -> str:
        self._check_provider(ids)
        # the start message's accountSid names the (sub)account that owns the call
        return f"{self._calls(ids.account_id)}/{urllib.parse.quote(ids.call_id, safe='')}.json"

    async def hangup(self, ids: CallIds) -> HangupOutcome:
        status, body = await self._request(
            "hangup", "POST", self._call(ids), call_id=ids.call_id, idempotent=True,
            form={"Status": "completed"}, already_ended=(404,),
        )
        if status == 404:
            return "already-ended"
        return "ended"

    async def transfer(self, ids: CallIds, target: str) -> None:
        kind, value = split_target(target)
        form = {"Url": value} if kind == "url" else {"Twiml": dial_twiml(value)}
        # not idempotent: a repeated update could start a second <Dial>
        await self._request("transfer", "POST", self._call(ids), call_id=ids.call_id, idempotent=False, form=form)

    async def place_call(self, to: str, from_: str, stream_url: str, custom: Mapping[str, str] | None = None) -> str:
        if not stream_url.lower().startswith("wss://"):
            raise ControlConfigError("twilio: the stream URL must be wss:// (Twilio connects to it as a Media Stream)")
        form = {"To": to, "From": from_, "Twiml": connect_stream_twiml(stream_url, custom)}
        status, body = await self._request("place-call", "POST", self._calls("") + ".json", idempotent=False, form=form, ok=(200, 201))
        return self._answer_field("place-call", status, body, "sid")

    def _error_fields(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping) and isinstance(body.get("message"), str):
            return str(body.get("code", "")), str(body["message"])
        return super()._error_fields(body)

