"""Dial a callengine server (or any agent endpoint) as a simulated provider over a real
WebSocket, the way Awaaz or Knowlarity would: :func:`open_dialed_call`, and
:func:`simulate_call`, a scripted call with a printed timeline (``callengine dial``)."""

from __future__ import annotations

import contextlib
import json
import ssl
import sys
import time
import urllib.parse
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

import attrs
import numpy as np
import trio
from trio_websocket import HandshakeError, WebSocketConnection, wrap_client_stream
from wsproto.utilities import LocalProtocolError

from ..call.transport import WebSocketTransport, aclose_quietly
from ..events import CallStarted
from ..redact import redact_path
from ..protocols.registry import get_codec
from .provider import SimulatedProvider, default_start
from .quirks import check_quirks

__all__ = ["open_dialed_call", "DialError", "simulate_call", "parse_dtmf", "build_start", "close_problem"]

#: close codes of a call that ended as it should (normal, going away)
GOOD_CLOSE_CODES = (1000, 1001)

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"


class DialError(Exception):
    """The server refused or failed the WebSocket handshake."""


@contextlib.asynccontextmanager
async def open_dialed_call(
    url: str,
    provider: str = "awaaz",
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **provider_options,
) -> AsyncIterator[SimulatedProvider]:
    """Connect to ``url`` and run a :class:`SimulatedProvider` call on it.

    The provider starts the call (start message, then the microphone stream) before the
    block runs. Leaving the block hangs up as the provider would (``stop``) unless the call
    already ended; the context manager returns when the connection is closed.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("ws", "wss"):
        raise DialError(f"not a ws:// or wss:// URL: {_shown(url)!r}")
    secure = parsed.scheme == "wss"
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if secure else 80)
    resource = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    subprotocols = [KNOWLARITY_SUBPROTOCOL] if get_codec(provider).family == "mod_audio_fork" else None
    # We open and own the TCP stream so that it is closed on every path, a refused
    # handshake included.
    try:
        with trio.fail_after(connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise DialError(f"cannot connect to {_shown(url)}: {exc!r}") from exc
    try:
        if secure:
            stream = trio.SSLStream(stream, ssl_context or ssl.create_default_context(), server_hostname=host, https_compatible=True)
        failed: BaseException | None = None
        handshake_done = False
        ws: WebSocketConnection | None = None
        try:
            async with trio.open_nursery() as ws_nursery:  # holds the websocket's reader task
                try:
                    with trio.fail_after(connect_timeout):
                        ws = await wrap_client_stream(
                            ws_nursery,
                            stream,
                            host,
                            resource,
                            subprotocols=subprotocols,
                            extra_headers=extra_headers,
                            message_queue_size=64,
                        )
                except (HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
                    failed = exc  # raised below, outside the nursery, so callers see DialError itself
                    ws_nursery.cancel_scope.cancel()
                if failed is None:
                    assert ws is not None
                    handshake_done = True
                    sim = SimulatedProvider(WebSocketTransport(ws), provider, **provider_options)
                    try:
                        async with trio.open_nursery() as nursery:
                            await nursery.start(sim.run)
                            try:
                                yield sim
                                if not sim.closed.is_set():
                                    await sim.stop()
                            finally:
                                with trio.move_on_after(5, shield=True):
                                    await sim.closed.wait()
                                nursery.cancel_scope.cancel()
                    finally:
                        with trio.move_on_after(2, shield=True):
                            await ws.aclose()
                        ws_nursery.cancel_scope.cancel()
        except* HandshakeError as group:
            # trio-websocket's client reader task raises the rejection into its nursery
            if handshake_done:
                raise
            failed = group.exceptions[0]
        except* LocalProtocolError as group:
            # trio-websocket's reader answers a ping that arrives after our close frame,
            # which wsproto refuses ("cannot be sent in state LOCAL_CLOSING"): the engine's
            # keepalive pings make that race real. The call is over by then; anything else
            # is a real error.
            if not (handshake_done and all("CLOSING" in str(exc) for exc in group.exceptions)):
                raise
        if failed is not None:
            raise DialError(f"handshake with {_shown(url)} failed: {failed!r}") from failed
    finally:
        await aclose_quietly(stream)


def _shown(url: str) -> str:
    """``url`` with a ``token`` query value masked (for error messages and timelines)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.query:
        return url
    target = redact_path(f"{parsed.path}?{parsed.query}")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, "", "", "")) + target


def parse_dtmf(spec: str | None) -> list[tuple[str, float]]:
    """"1@2.5,2@4" -> [("1", 2.5), ("2", 4.0)]. Raises ValueError."""
    out = []
    for item in (spec or "").replace(" ", "").split(","):
        if not item:
            continue
        digit, _, at = item.partition("@")
        if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD" or not at:
            raise ValueError(f"bad --dtmf item {item!r}: use KEY@SECONDS, e.g. 1@2.5")
        try:
            when = float(at)
        except ValueError:
            raise ValueError(f"bad --dtmf item {item!r}: use KEY@SECONDS, e.g. 1@2.5") from None
        out.append((digit.upper(), when))
    return sorted(out, key=lambda x: x[1])


def build_start(provider: str, *, params: Mapping[str, str] | Sequence[str] = (), caller: str | None = None, called: str | None = None) -> CallStarted:
    """The start message of a dialed call: :func:`default_start` with custom parameters
    (a mapping, or ``KEY=VALUE`` strings) and the caller's and called numbers."""
    if not isinstance(params, Mapping):
        pairs = {}
        for item in params:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"bad --param {item!r}: use KEY=VALUE")
            pairs[key.strip()] = value
        params = pairs
    start = default_start(provider)
    changes: dict = {"custom": dict(params)}
    if caller is not None:
        changes["caller"] = caller
    if called is not None:
        changes["called"] = called
    return attrs.evolve(start, **changes)


def close_problem(summary: Mapping) -> str | None:
    """Why a dialed call did not end well (a close code other than 1000/1001, no close
    frame, protocol errors), or None."""
    code = summary.get("close_code")
    if code is None:
        return "the connection was lost without a close frame"
    if code not in GOOD_CLOSE_CODES:
        reason = summary.get("close_reason") or ""
        return f"the call was closed with code {code}" + (f" ({reason})" if reason else "")
    if summary.get("protocol_errors"):
        return f"the engine sent messages the provider could not parse: {summary['protocol_errors'][0]}"
    return None


async def simulate_call(
    url: str,
    provider: str,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 8000,
    speak_at: float = 0.5,
    dtmf: Sequence[tuple[str, float]] = (),
    seconds: float = 10.0,
    record: str | None = None,
    out=sys.stdout,
    extra_headers=None,
    start: CallStarted | None = None,
    quirks: str | Sequence[str] | frozenset[str] = (),
) -> dict:
    """Dial ``url``, speak ``audio`` at ``speak_at`` s, press keys, hang up after ``seconds``
    unless the engine ends the call first; print the timeline; return a summary.
    ``start``: the start message (default :func:`default_start`). ``quirks``: odd messages
    the simulated provider sends (:mod:`callengine.testing.quirks`; ValueError for a name
    the provider has not)."""
    from ..audio.wav import build_wav

    t_start = time.monotonic()
    options = {"quirks": check_quirks(provider, quirks)} if quirks else {}
    async with open_dialed_call(url, provider, extra_headers=extra_headers, start=start, codec_options=options) as sim:
        async with trio.open_nursery() as nursery:

            async def script() -> None:
                t0 = sim.t0
                assert t0 is not None  # set once the call has started, before the block runs
                if audio is not None:
                    await trio.sleep_until(t0 + speak_at)
                    sim.say(audio, audio_rate)
                    sim._note("say", f"{len(audio) / audio_rate:.2f} s of audio")
                for digit, at in dtmf:
                    await trio.sleep_until(t0 + at)
                    await sim.press(digit)
                await trio.sleep_until(t0 + seconds)
                if not sim.closed.is_set():
                    await sim.stop("caller hung up (--seconds reached)")

            nursery.start_soon(script)
            await sim.closed.wait()
            nursery.cancel_scope.cancel()
    closes = [e.detail for e in sim.timeline if e.kind == "closed"]
    summary = {
        "provider": provider,
        "url": _shown(url),
        "call_seconds": round(time.monotonic() - t_start, 3),
        "heard_seconds": round(sim.heard_seconds(), 3),
        "gaps": len(sim.gaps(0.005)),
        "clears": len(sim.clears),
        "marks_echoed": len(sim.marks_echoed),
        "hangups": [w for _, w in sim.hangups],
        "close_code": sim.closed_code,
        "close_reason": closes[-1].partition("reason=")[2] if closes else "",
        "protocol_errors": sim.protocol_errors,
        "quirks": sorted(getattr(sim.codec, "quirks", ())),
        "dtmf_dropped": [key for _, key in sim.dtmf_dropped],
    }
    print(f"--- {provider} call timeline ({_shown(url)})", file=out)
    print(sim.format_timeline(), file=out)
    if record:
        rate = get_codec(provider).capabilities.inbound_rate
        heard = sim.heard_audio(rate, until=max(sim.heard[-1].end if sim.heard else 0.0, 0.0))
        Path(record).write_bytes(build_wav(heard.astype("<i2").tobytes(), rate))
        summary["recording"] = record
    print("--- summary: " + json.dumps(summary), file=out)
    return summary
