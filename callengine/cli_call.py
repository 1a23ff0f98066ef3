"""``callengine call``: place an outbound call through the provider's REST API and stream
it to a WebSocket URL.

    callengine call --provider twilio --to +919800000001 --from +14155550100 \\
        --url wss://bot.example.com/twilio --param lead=42

Prints the placed call's id. Credentials come from the environment (the variables of
:data:`callengine.control.ENV_VARS`); without them it exits with code 2 and one line
naming what to set. Provider errors exit with code 1 and the provider's message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import trio

from .shutdown import EXIT_USAGE

__all__ = ["add_call_parser", "cmd_call", "EXIT_PROVIDER"]

#: the provider refused the call or did not answer
EXIT_PROVIDER = 1

#: Plivo and Vobiz take an answer URL, not the stream URL (see callengine.control.plivo)
_ANSWER_URL_HELP = 'an https answer URL that serves <Stream bidirectional="true">wss://…</Stream>'


def add_call_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``call`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    from .control import PROVIDERS

    p: argparse.ArgumentParser = subparsers.add_parser(
        "call",
        help="place an outbound call through the provider's REST API, streamed to a WebSocket URL",
        description="Place an outbound call through the provider's REST API and print its id. "
        "Credentials come from the environment (e.g. TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN).",
    )
    p.add_argument("--provider", choices=list(PROVIDERS), required=True)
    p.add_argument("--to", required=True, metavar="NUMBER", help="the number to call")
    p.add_argument("--from", dest="from_", required=True, metavar="NUMBER", help="the caller id: your number with the provider")
    p.add_argument(
        "--url", required=True,
        help=f"where the call's audio goes: wss://… (Plivo and Vobiz: {_ANSWER_URL_HELP})",
    )
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a custom value the call's start message will carry (repeatable)")
    p.add_argument("--api-base", help="the provider API's base URL (a region, a compatible server, a test server)")
    p.add_argument("--timeout", type=float, default=20.0, help="give up after this many seconds (default 20)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    p.set_defaults(func=cmd_call)
    return p


def _params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _fail(code: int, message: str) -> int:
    print(f"callengine call: {message}", file=sys.stderr)
    return code


def cmd_call(args: argparse.Namespace) -> int:
    from . import control

    if not logging.getLogger().handlers:  # a program embedding main() keeps its own logging
        from .cli import setup_logging

        setup_logging("text", args.log_level)
    try:
        custom = _params(args.param)
    except ValueError as exc:
        return _fail(EXIT_USAGE, str(exc))
    if not args.timeout > 0:
        return _fail(EXIT_USAGE, "--timeout must be positive")
    missing = control.missing_credentials(args.provider)
    if missing:
        return _fail(EXIT_USAGE, f"{args.provider} needs {', '.join(missing)} in the environment")
    http = control.HttpSettings(timeout_s=min(10.0, args.timeout), deadline_s=args.timeout)

    async def run() -> str:
        return await control.place_call(
            args.provider, to=args.to, from_=args.from_, stream_url=args.url, custom=custom, base_url=args.api_base, http=http
        )

    try:
        call_id = trio.run(run)
    except control.ControlConfigError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except control.ProviderAPIError as exc:
        return _fail(EXIT_PROVIDER, str(exc))
    print(call_id)
    return 0
