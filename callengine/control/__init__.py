"""Hang-up, transfer and outbound calls through the provider's REST API, where the media
WebSocket cannot do them (Twilio, Plivo, Vobiz, Telnyx, Vonage, Exotel).

    control = callengine.control.from_env("twilio")      # None without credentials
    if control is not None:
        async with control:
            await control.hangup(ids_from_start("twilio", started))

    call_id = await callengine.control.place_call(
        "twilio", to="+919800000001", from_="+14155550100",
        stream_url="wss://bot.example.com/twilio", custom={"lead": "42"})

Credentials come from the environment (:data:`ENV_VARS` lists the names per provider) or
from the config objects (:class:`TwilioConfig`...). One module per provider; each records
the reference its request shapes were written against.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from .base import CallIds, ControlConfigError, HangupOutcome, HttpSettings, ProviderAPIError, ProviderControl
from .exotel import ExotelConfig, ExotelControl
from .plivo import PlivoConfig, PlivoControl, VobizControl
from .telnyx import TelnyxConfig, TelnyxControl
from .twilio import TwilioConfig, TwilioControl
from .vonage import VonageConfig, VonageControl

__all__ = [
    "CallIds",
    "ProviderControl",
    "ProviderAPIError",
    "ControlConfigError",
    "HttpSettings",
    "HangupOutcome",
    "TwilioConfig",
    "TwilioControl",
    "PlivoConfig",
    "PlivoControl",
    "VobizControl",
    "TelnyxConfig",
    "TelnyxControl",
    "VonageConfig",
    "VonageControl",
    "ExotelConfig",
    "ExotelControl",
    "PROVIDERS",
    "ENV_VARS",
    "from_env",
    "missing_credentials",
    "ids_from_start",
    "place_call",
]

#: The environment variables each provider's control reads. In each inner tuple one of
#: the names is enough (Vonage's key as text or as a file); the rest are all required.
#: Optional settings (TELNYX_CONNECTION_ID, EXOTEL_SUBDOMAIN) are not listed as required.
ENV_VARS: dict[str, tuple[tuple[str, ...], ...]] = {
    "twilio": (("TWILIO_ACCOUNT_SID",), ("TWILIO_AUTH_TOKEN",)),
    "plivo": (("PLIVO_AUTH_ID",), ("PLIVO_AUTH_TOKEN",)),
    "vobiz": (("VOBIZ_AUTH_ID",), ("VOBIZ_AUTH_TOKEN",)),
    "telnyx": (("TELNYX_API_KEY",),),
    "vonage": (("VONAGE_APPLICATION_ID",), ("VONAGE_PRIVATE_KEY", "VONAGE_PRIVATE_KEY_PATH")),
    "exotel": (("EXOTEL_API_KEY",), ("EXOTEL_API_TOKEN",), ("EXOTEL_SID",)),
}

#: Optional variables, for the docs: what each adds.
OPTIONAL_ENV_VARS: dict[str, tuple[str, ...]] = {
    "telnyx": ("TELNYX_CONNECTION_ID",),  # needed to place calls
    "exotel": ("EXOTEL_SUBDOMAIN",),  # api.exotel.com (default) or api.in.exotel.com
}

PROVIDERS: tuple[str, ...] = tuple(ENV_VARS)


def missing_credentials(provider: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables still to set for ``provider`` (``A or B`` where either will do).

    Raises KeyError for a provider that has no REST control here.
    """
    env = os.environ if environ is None else environ
    return [" or ".join(names) for names in ENV_VARS[provider] if not any(env.get(n) for n in names)]


def _vonage_key(env: Mapping[str, str]) -> str:
    if env.get("VONAGE_PRIVATE_KEY"):
        # a PEM in one environment line usually has its newlines written as \n
        return env["VONAGE_PRIVATE_KEY"].replace("\\n", "\n")
    path = env["VONAGE_PRIVATE_KEY_PATH"]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ControlConfigError(f"vonage: cannot read VONAGE_PRIVATE_KEY_PATH ({exc.strerror})") from None


_BUILDERS: dict[str, Callable[[Mapping[str, str], dict[str, Any]], ProviderControl]] = {
    "twilio": lambda e, kw: TwilioControl(TwilioConfig(e["TWILIO_ACCOUNT_SID"], e["TWILIO_AUTH_TOKEN"]), **kw),
    "plivo": lambda e, kw: PlivoControl(PlivoConfig(e["PLIVO_AUTH_ID"], e["PLIVO_AUTH_TOKEN"]), **kw),
    "vobiz": lambda e, kw: VobizControl(PlivoConfig(e["VOBIZ_AUTH_ID"], e["VOBIZ_AUTH_TOKEN"]), **kw),
    "telnyx": lambda e, kw: TelnyxControl(TelnyxConfig(e["TELNYX_API_KEY"], e.get("TELNYX_CONNECTION_ID", "")), **kw),
    "vonage": lambda e, kw: VonageControl(VonageConfig(e["VONAGE_APPLICATION_ID"], _vonage_key(e)), **kw),
    "exotel": lambda e, kw: ExotelControl(
        ExotelConfig(e["EXOTEL_API_KEY"], e["EXOTEL_API_TOKEN"], e["EXOTEL_SID"], e.get("EXOTEL_SUBDOMAIN") or "api.exotel.com"), **kw
    ),
}


def from_env(
    provider: str,
    environ: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    http: HttpSettings | None = None,
) -> ProviderControl | None:
    """The provider's control with credentials from the environment, or None when the
    provider has no REST control here or its credentials are not all set (the engine then
    ends calls by closing the socket). ``base_url`` overrides the API's address.

    Raises ControlConfigError only when a credential is set but unusable (a
    VONAGE_PRIVATE_KEY_PATH that cannot be read): a mistake to report, not a default.
    """
    if provider not in _BUILDERS:
        return None
    env = os.environ if environ is None else environ
    if missing_credentials(provider, env):
        return None
    return _BUILDERS[provider](env, {"base_url": base_url, "http": http})


def _get(mapping: Any, *path: str) -> str:
    node = mapping
    for key in path:
        if not isinstance(node, Mapping):
            return ""
        node = node.get(key)  # pyright: ignore[reportUnknownMemberType]
    return node if isinstance(node, str) else ""


def ids_from_start(provider: str, start: Mapping[str, Any]) -> CallIds | None:
    """The call's identifiers from the provider's decoded start message (a codec's
    ``CallStarted.raw``), or None when it does not carry them.

    Twilio ``start.callSid`` + ``start.accountSid``; Plivo/Vobiz ``start.callId``; Telnyx
    ``start.call_control_id``; Exotel ``start.call_sid`` + ``start.account_sid``. Vonage's
    first message carries only the connect NCCO's headers, so its uuid is found only when
    the answer webhook put it there as a ``call_uuid`` (or ``uuid``) header.
    """
    if provider == "twilio":
        call, account = _get(start, "start", "callSid"), _get(start, "start", "accountSid")
    elif provider in ("plivo", "vobiz"):
        call, account = _get(start, "start", "callId"), ""
    elif provider == "telnyx":
        call, account = _get(start, "start", "call_control_id"), ""
    elif provider == "exotel":
        call, account = _get(start, "start", "call_sid"), _get(start, "start", "account_sid")
    elif provider == "vonage":
        call, account = _get(start, "call_uuid") or _get(start, "uuid"), ""
    else:
        return None
    return CallIds(provider, call, account) if call else None


async def place_call(
    provider: str,
    *,
    to: str,
    from_: str,
    stream_url: str,
    custom: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    base_url: str | None = None,
    http: HttpSettings | None = None,
) -> str:
    """Place an outbound call with credentials from the environment; the placed call's id.

    Raises ControlConfigError naming the missing variables when they are not set.
    """
    if provider not in _BUILDERS:
        raise ControlConfigError(f"{provider}: no outbound-call API here (known: {', '.join(PROVIDERS)})")
    missing = missing_credentials(provider, environ)
    if missing:
        raise ControlConfigError(f"{provider}: set {', '.join(missing)} to place calls")
    control = from_env(provider, environ, base_url=base_url, http=http)
    assert control is not None
    async with control:
        return await control.place_call(to, from_, stream_url, custom or {})
