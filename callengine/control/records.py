"""The plain records of :mod:`callengine.control`: a call's identifiers, the settings, the
errors, and the two small text helpers (credential scrubbing, transfer-target kinds).

Also masks the account segment of the URLs httpx logs (see :class:`_MaskAccountInUrls`).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Iterable, Literal, Mapping

import attrs

from ..errors import CallEngineError

__all__ = [
    "CallIds",
    "ProviderAPIError",
    "ControlConfigError",
    "HttpSettings",
    "HangupOutcome",
    "scrub",
    "split_target",
]


class _MaskAccountInUrls(logging.Filter):
    """httpx logs every request's URL at INFO; Plivo's and Exotel's paths carry the account
    id that is also the Basic-auth user name (Twilio's the Account SID): mask that segment.
    No token is ever in a URL, so this is the only part of httpx's line to hide."""

    _ACCOUNT = re.compile(r"(/Accounts?/)[^/\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: self._mask(v) for k, v in record.args.items()}
        record.msg = self._mask(record.msg)
        return True

    def _mask(self, value: object) -> object:
        # only text changes; numbers stay numbers for %d
        return self._ACCOUNT.sub(r"\1***", str(value)) if not isinstance(value, (int, float)) else value


logging.getLogger("httpx").addFilter(_MaskAccountInUrls())

#: What :meth:`ProviderControl.hangup` reports: the provider ended the call now, or says
#: the call had already ended (Twilio 404/20404, Plivo 404, Telnyx 422/90018, Vonage 404).
HangupOutcome = Literal["ended", "already-ended"]

_MASK = "***"


@attrs.frozen
class CallIds:
    """A call's identifiers as the provider's start message gives them.

    ``call_id`` is the one the REST API acts on: Twilio and Exotel ``CallSid``, Plivo
    ``callId`` (the call_uuid), Vonage call ``uuid``, Telnyx ``call_control_id``.
    ``account_id`` is Twilio's ``AccountSid`` (and Exotel's ``account_sid``); the REST path
    needs it. Where it is empty the control's configured account is used.
    """

    provider: str
    call_id: str
    account_id: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.call_id:
            raise ValueError(f"{self.provider}: the call id is empty")


class ProviderAPIError(CallEngineError):
    """A provider's REST API refused or failed a request.

    ``status`` is the HTTP status (None when no answer came: timeout, connection refused);
    ``code`` the provider's own error code where it sends one; ``provider_message`` its
    text, scrubbed of credentials.
    """

    def __init__(self, provider: str, operation: str, status: int | None, provider_message: str, code: str = "") -> None:
        self.provider = provider
        self.operation = operation
        self.status = status
        self.code = code
        self.provider_message = provider_message
        where = f"HTTP {status}" if status is not None else "no answer"
        coded = f" (code {code})" if code else ""
        super().__init__(f"{provider} {operation} failed: {where}{coded}: {provider_message}")


class ControlConfigError(CallEngineError):
    """The control is missing a setting it needs for this operation (a Telnyx
    connection id, a Vonage private key, an optional package...)."""


@attrs.frozen
class HttpSettings:
    """Timeouts and retries of one control's requests.

    ``timeout_s`` bounds each phase of one attempt (connect, write, read, pool);
    ``deadline_s`` bounds the whole operation, retries and back-off included. ``retries``
    is the number of extra attempts a retryable failure may get.
    """

    timeout_s: float = 10.0
    deadline_s: float = 20.0
    retries: int = 2
    backoff_s: float = 0.3
    #: a Retry-After longer than this is not waited for: the operation fails instead
    max_retry_after_s: float = 5.0

    def __attrs_post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise ValueError("timeouts must be positive and finite")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of four or more characters replaced by ``***``
    (a provider may quote what it was sent: an account id, a malformed key)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _MASK)
    return text


def split_target(target: str) -> tuple[Literal["url", "sip", "number"], str]:
    """What a transfer target is: an instructions URL, a SIP URI or a phone number."""
    target = target.strip()
    lowered = target.lower()
    if lowered.startswith(("http://", "https://")):
        return "url", target
    if lowered.startswith(("sip:", "sips:")):
        return "sip", target
    if not target:
        raise ValueError("the transfer target is empty")
    return "number", target
