"""What one load run is asked to do (:class:`LoadConfig`) and its bounds; see :mod:`.load`."""

from __future__ import annotations

import ipaddress
import urllib.parse

import attrs

from ..protocols.registry import CODECS, get_codec

__all__ = ["LoadConfig", "LoadError", "check_loopback_url", "MAX_CALLS", "MAX_SECONDS", "TRAFFIC"]

MAX_CALLS = 2000
MAX_SECONDS = 600.0
TRAFFIC = ("echo", "talk")


class LoadError(Exception):
    """The load cannot be run as asked (bad URL, non-loopback host, over a cap)."""


@attrs.frozen
class LoadConfig:
    """One load run. ``url``: ws://127.0.0.1:PORT/awaaz (or another provider's path); loopback only.
    ``provider``: any provider in the codec registry.

    ``calls``: concurrent calls. ``seconds``: the run's length, ramp included (calls stop
    streaming then). ``ramp``: spread call starts evenly over this many seconds.
    ``warmup``: statistics cover frames sent after this many seconds (None: the ramp).
    ``drain``: after the run, wait at most this long for the last echoes.
    ``jitter_buffer_ms``: the modelled provider playout buffer (see the module docs).
    ``frame_ms``: caller audio frame. ``tone_dbfs``: level of the caller's 440 Hz tone.
    ``traffic``: "echo" (marked frames of a tone, for an echo agent) or "talk" (a
    caller's script of speech, pauses, barge-ins and keys, for a conversational agent).
    ``quiet_gc``: during the run, freeze the objects that exist at its start and raise the
    cyclic collector's thresholds (restored afterwards): with default settings a busy
    generator spends several per cent of its CPU in the collector and its full collections
    stall every call for tens of milliseconds, which would be charged to the server.
    """

    url: str
    provider: str = "awaaz"
    calls: int = 10
    seconds: float = 10.0
    ramp: float = 0.0
    warmup: float | None = None
    drain: float = 1.0
    jitter_buffer_ms: float = 40.0
    frame_ms: int = 20
    sample_rate: int | None = None
    tone_dbfs: float = -20.0
    connect_timeout: float = 10.0
    close_timeout: float = 3.0
    quiet_gc: bool = True
    traffic: str = "echo"

    def __attrs_post_init__(self) -> None:
        if self.traffic not in TRAFFIC:
            raise LoadError(f"traffic must be one of {', '.join(TRAFFIC)}, got {self.traffic!r}")
        if self.provider not in CODECS:
            raise LoadError(f"unknown provider {self.provider!r}: use one of {', '.join(CODECS)}")
        if not 1 <= self.calls <= MAX_CALLS:
            raise LoadError(f"--calls must be in [1, {MAX_CALLS}], got {self.calls}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise LoadError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")
        if not 0 <= self.ramp < self.seconds:
            raise LoadError(f"--ramp must be in [0, --seconds), got {self.ramp}")
        if self.warmup is not None and not 0 <= self.warmup < self.seconds:
            raise LoadError(f"--warmup must be in [0, --seconds), got {self.warmup}")
        if not 0 <= self.drain <= 10:
            raise LoadError(f"drain must be in [0, 10] s, got {self.drain}")
        if not 1 <= self.frame_ms <= 100:
            raise LoadError(f"frame_ms must be in [1, 100], got {self.frame_ms}")
        check_loopback_url(self.url)

    @property
    def rate(self) -> int:
        return self.sample_rate or get_codec(self.provider).capabilities.inbound_rate

    @property
    def mod_audio_fork(self) -> bool:
        """Knowlarity's family (legacy Awaaz too): the sub-protocol, and hang-up by closing."""
        return get_codec(self.provider).family == "mod_audio_fork"

    @property
    def warmup_s(self) -> float:
        return self.ramp if self.warmup is None else self.warmup


def check_loopback_url(url: str) -> tuple[str, int, str]:
    """(host, port, resource) of a ws:// URL on a loopback address; else LoadError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "ws":
        raise LoadError(f"not a ws:// URL: {url!r} (the load generator speaks plain ws:// on loopback only)")
    host = parsed.hostname or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise LoadError(
                f"refusing to load {host or url!r}: the load generator only targets loopback hosts "
                "(127.0.0.0/8, ::1, localhost)"
            )
    try:
        port = parsed.port or 80
    except ValueError as exc:
        raise LoadError(f"bad port in {url!r}: {exc}") from None
    resource_ = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    return host, port, resource_
