"""A load generator: N concurrent simulated provider calls against a callengine URL.

::

    callengine load ws://127.0.0.1:8080/awaaz --provider awaaz --calls 100 --seconds 10 --ramp 2
    callengine load ws://127.0.0.1:8080/awaaz --provider awaaz --calls 40 --seconds 20 --ramp 2 --traffic talk

Each call is the PROVIDER role of the project's codec driven directly over trio-websocket
(not the full :class:`~callengine.testing.provider.SimulatedProvider`, which keeps a
timeline and a recording per call and costs too much CPU per frame for a load test). A call
connects at its slot in the ramp, sends the start message, then streams 20 ms frames of
caller audio at real time on absolute deadlines until the run's end; then it waits briefly
for the last echoes and hangs up (stop). The deadlines come from one ticker task
(``trio.sleep_until(t0 + j * tick)``, ticks of 1 ms) that wakes the calls due at each tick:
a timer and a cancel scope per call and frame would make the generator, not the server,
the bottleneck. Call i's frames fall on phase i % 20 of the 20 ms frame period, from the
first such tick after its start message: the calls' frames are spread evenly over the
period, as independent phone calls' are, rather than arriving at the server in bursts.

What it measures assumes an echo agent on the other side (``callengine.agents.echo``), run
with the agent rate equal to the wire rate (``--agent-rate 8000`` on Awaaz, the default
16000 on Knowlarity) so the echo path has no resampler and returns the caller's samples bit
for bit. Every frame carries a marker in its first four samples (two magic values, the
frame's sequence number and a check value); the generator finds the markers in the audio
the engine plays back, and so knows, per frame:

* **round trip**: provider send -> the engine's media message carrying that frame back.
  It is the inbound delivery latency (provider -> agent) plus the agent's write and the
  writer's pacing; with the echo agent the last two are near zero on Awaaz (20 ms chunks,
  the lead is never full). On Knowlarity the engine sends 200 ms clips, so the round trip
  includes waiting for a clip to fill.
* **dropped**: frames sent and never echoed while a later frame was (the run waits
  ``drain`` seconds for the last). Frames after the last echoed one are counted apart as
  the **unechoed tail**: the engine holds audio back until it fills an outbound chunk (200
  ms clips on Knowlarity), so up to one chunk's worth per call is expected there and is not
  a drop; a longer tail is.
* **outbound pacing jitter**: |inter-arrival of the engine's media messages - the duration
  of the audio in the earlier one|.
* **underruns**: gaps in what the caller would hear. The provider's playout buffer is
  modelled as a jitter buffer of ``jitter_buffer_ms``: the first chunk (and the first after
  a gap) starts playing that long after it arrives; each next chunk starts at
  ``max(arrival, end of the previous)``; an arrival after the previous chunk ended is an
  underrun. Arrival times are taken relative to each frame's *nominal* send time (the
  generator's own lateness is subtracted), so a busy generator does not count against the
  server; the generator's lateness is reported separately (``send_late_ms``).

Statistics (latency, jitter, underruns) cover frames sent after ``warmup`` seconds (by
default the ramp) and before each call's last chunk's worth of audio (the longest media
message the server sent, 20 ms on Awaaz, 200 ms on Knowlarity), i.e. the steady state with
every call up: a caller that stops mid-chunk leaves a partial chunk that the server flushes
only after a pause, which a real caller streaming until it hangs up never sees. Counts
cover the whole run.

**Talk traffic** (``traffic="talk"``, ``--traffic talk``) is for a conversational agent
instead (scripts/bench_agent.py): each caller follows the script of :mod:`._talk`, a
16 s loop of speech (the bundled prompt recording) with pauses, speech over the bot's
answer (a barge-in) and a key press (a DTMF event on Awaaz, an in-band tone on
Knowlarity), starting at a different point of the loop for each call. Frames carry no
marker and nothing is matched: round trip, drops, tails and underruns stay empty (the
engine counts its own underruns and drops), and the result's ``talk`` holds what the caller
side saw: utterances and keys sent, bot audio received, clears, marks echoed.

Bounded: at most :data:`MAX_CALLS` calls and :data:`MAX_SECONDS` seconds, loopback hosts
only, and every wait has a deadline; the run ends by itself after about ``seconds`` +
``drain`` + a close timeout.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import struct
import sys
import time
from typing import Any

import numpy as np
import trio

from ..call.transport import aclose_quietly
from ..errors import ProtocolError
from ..events import CallerAudio, CallStarted, CallStopped, Clear, Dtmf, Hangup, Mark, MarkEchoed, PlayAudio, Transfer
from ..protocols.base import Role
from ..protocols.registry import CODECS, create_codec
from .load_config import MAX_CALLS, MAX_SECONDS, TRAFFIC, LoadConfig, LoadError, check_loopback_url
from .load_result import LoadResult, Stats
from .load_summary import summarize

# the run's configuration and its results live in .load_config and .load_result; every
# name stays importable from here
__all__ = ["LoadConfig", "LoadResult", "Stats", "run_load", "add_load_parser", "MAX_CALLS", "MAX_SECONDS", "LoadError"]

KNOWLARITY_SUBPROTOCOL = "audio.drachtio.org"

# The per-frame marker: four int16 samples at the start of every frame. The tone under it
# peaks well below either magic value, so a match is never the audio itself.
_MAGIC = struct.pack("<hh", 31322, -31066)
_CHECK = 0x2AAA
_MARKER_BYTES = 8


class _Marker:
    """Writes and reads the per-frame marker. Over PCM16 the samples come back bit for bit:
    magic, sequence number, check. Over G.711 (Twilio, Smartflo, Telnyx: mu-law or A-law on
    the wire) only the codec's 256 levels survive, so the marker is written in them: two
    extreme levels as the magic, then the sequence number and its check, four bits per
    sample. The tone peaks far below the extremes, so it never looks like a marker."""

    def __init__(self, encoding: str) -> None:
        self.lossy = encoding in ("mulaw", "alaw")
        if not self.lossy:
            self.magic, self.size = _MAGIC, _MARKER_BYTES
            return
        from ..audio.g711 import alaw2lin, lin2alaw, lin2ulaw, ulaw2lin

        decode, encode = (ulaw2lin, lin2ulaw) if encoding == "mulaw" else (alaw2lin, lin2alaw)
        levels = np.frombuffer(decode(bytes(range(256))), dtype="<i2")
        exact = [int(v) for c, v in enumerate(levels) if encode(struct.pack("<h", int(v)))[0] == c]
        exact = sorted(set(exact))
        self.magic = struct.pack("<hh", exact[-1], exact[0])
        # sixteen levels well inside the range for the nibbles
        middle = [v for v in exact if abs(v) > 64 and abs(v) < 8000]
        self.nibbles = middle[:: max(1, len(middle) // 16)][:16]
        self.nibble_of = {v: i for i, v in enumerate(self.nibbles)}
        self.size = 4 + 16  # magic, four nibbles of seq, four of its check

    def make(self, seq: int) -> bytes:
        if not self.lossy:
            return _MAGIC + struct.pack("<hh", seq, seq ^ _CHECK)
        check = (seq ^ _CHECK) & 0xFFFF
        digits = [(seq >> s) & 15 for s in (12, 8, 4, 0)] + [(check >> s) & 15 for s in (12, 8, 4, 0)]
        return self.magic + struct.pack("<8h", *(self.nibbles[d] for d in digits))

    def read(self, data: bytes, i: int) -> int | None:
        """The sequence number of the marker at byte ``i`` (its magic), if it checks."""
        if not self.lossy:
            seq, check = struct.unpack_from("<hh", data, i + 4)
            return seq if check == seq ^ _CHECK else None
        try:
            digits = [self.nibble_of[v] for v in struct.unpack_from("<8h", data, i + 4)]
        except KeyError:
            return None
        seq = (digits[0] << 12) | (digits[1] << 8) | (digits[2] << 4) | digits[3]
        check = (digits[4] << 12) | (digits[5] << 8) | (digits[6] << 4) | digits[7]
        return seq if check == (seq ^ _CHECK) & 0xFFFF else None






# --- one call -----------------------------------------------------------------------------


class _Call:
    """State of one simulated call, kept small: arrays indexed by frame sequence number."""

    __slots__ = (
        "index", "codec", "ws", "sent_at", "nominal", "echo_at", "duplicates", "tail",
        "last_media_at", "last_media_dur", "max_media_dur", "jitter", "media", "other", "handshake_ok",
        "cut", "error", "protocol_errors", "done_sending", "expect_until",
        "talk",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.codec: Any = None
        self.ws: Any = None
        self.sent_at: list[float] = []
        self.nominal: list[float] = []
        self.echo_at: dict[int, float] = {}
        self.duplicates = 0
        self.tail = b""
        self.last_media_at: float | None = None
        self.last_media_dur = 0.0
        self.max_media_dur = 0.0
        self.jitter: list[tuple[float, float]] = []  # (arrival, |deviation|)
        self.media = 0
        self.other: dict[str, int] = {}
        self.handshake_ok = False
        self.cut = False
        self.error: str | None = None
        self.protocol_errors = 0
        self.done_sending = False
        self.expect_until = trio.Event()  # set when every sent frame has come back
        self.talk: dict[str, float] | None = None  # talk traffic: what the caller side saw


class LoadGenerator:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.host, self.port, self.resource = check_loopback_url(config.url)
        self.rate = config.rate
        self.frame_samples = config.rate * config.frame_ms // 1000
        self.frame_s = self.frame_samples / self.rate
        t = np.arange(self.frame_samples) / self.rate
        # 440 Hz for 20 ms is not a whole number of periods: fine, the level is what the
        # VAD sees; the phase restarts every frame.
        amp = 32767 * 10 ** (config.tone_dbfs / 20)
        self._tone = (amp * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
        probe = create_codec(config.provider, Role.PROVIDER)
        self.marker = _Marker(getattr(probe, "encoding", "pcm16"))
        self.calls = [_Call(i) for i in range(config.calls)]
        self.talk = None
        if config.traffic == "talk":
            from ._talk import TalkScript

            self.talk = TalkScript(self.rate, self.frame_samples, message_keys=probe.capabilities.dtmf_events)
        self.handshake_errors: dict[str, int] = {}
        # One ticker task releases the senders, instead of a timer per call and frame: a
        # frame is split into ``phases`` ticks of ~1 ms; call i sends on phase i % phases,
        # so the calls' frames are spread evenly over the frame period, as independent
        # phone calls are (calls sending in step would make the server's load a burst
        # every 20 ms, and its latency a measure of the burst).
        self.phases = max(1, round(self.frame_s / 0.001))
        self.tick_s = self.frame_s / self.phases
        self._tick = -1
        self._lots = [trio.lowlevel.ParkingLot() for _ in range(self.phases)]
        self._t0 = 0.0

    def frame(self, seq: int) -> bytes:
        marker = self.marker.make(seq)
        return marker + self._tone[len(marker):]

    async def run(self) -> LoadResult:
        cfg = self.config
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.monotonic()
        t0 = trio.current_time() + 0.05
        self._unix_offset = time.time() - trio.current_time()
        stop_at = t0 + cfg.seconds
        self._t0 = t0
        with trio.move_on_at(stop_at + cfg.drain + cfg.close_timeout + cfg.connect_timeout + 2.0):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker, t0, stop_at)
                for call in self.calls:
                    start_at = t0 + (cfg.ramp * call.index / cfg.calls if cfg.calls > 1 else 0.0)
                    nursery.start_soon(self._run_call, call, start_at, t0, stop_at)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        return self._result(t0, time.monotonic() - wall0, cpu)

    # --- per call ---------------------------------------------------------------------

    async def _run_call(self, call: _Call, start_at: float, t0: float, stop_at: float) -> None:
        from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, wrap_client_stream

        cfg = self.config
        await trio.sleep_until(start_at)
        subprotocols = [KNOWLARITY_SUBPROTOCOL] if cfg.mod_audio_fork else None
        # We own the TCP stream and close it on every path: trio-websocket leaves the client's
        # socket open when the server closes first.
        try:
            with trio.fail_after(cfg.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except (OSError, trio.TooSlowError) as exc:
            self._handshake_failed(call, type(exc).__name__)
            return
        try:
            async with trio.open_nursery() as ws_nursery:  # the websocket's reader task
                try:
                    with trio.fail_after(cfg.connect_timeout):
                        ws = await wrap_client_stream(
                            ws_nursery, stream, self.host, self.resource, subprotocols=subprotocols, message_queue_size=64
                        )
                except (HandshakeError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    self._handshake_failed(call, type(exc).__name__)
                    ws_nursery.cancel_scope.cancel()
                    return
                call.handshake_ok = True
                call.ws = ws
                call.codec = create_codec(cfg.provider, Role.PROVIDER)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._receiver, call, nursery, t0)
                    try:
                        await self._sender(call, start_at, stop_at)
                        # wait for the last echoes (bounded), then hang up like a caller
                        with trio.move_on_after(cfg.drain):
                            await call.expect_until.wait()
                        if not call.cut:
                            for msg in call.codec.send(CallStopped(reason="load generator done")):
                                await ws.send_message(msg)
                            if cfg.mod_audio_fork:
                                # mod_audio_fork hangs up by closing after its flush frame
                                with trio.move_on_after(cfg.close_timeout):
                                    await ws.aclose()
                    except ConnectionClosed:
                        if not call.done_sending:
                            call.cut = True
                    # the server closes after a stop; wait for that (bounded), else close
                    with trio.move_on_after(cfg.close_timeout):
                        while ws.closed is None:
                            await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
                with trio.move_on_after(cfg.close_timeout, shield=True):
                    await ws.aclose()
                ws_nursery.cancel_scope.cancel()
        except* ConnectionRejected as group:
            # the client's reader task raises a refusal into its nursery
            rejected = group.exceptions[0]
            self._handshake_failed(call, f"HTTP {getattr(rejected, 'status_code', '?')}")
        except* HandshakeError as group:
            self._handshake_failed(call, type(group.exceptions[0]).__name__)
        except* (OSError, trio.BrokenResourceError):
            if call.handshake_ok:
                call.cut = call.cut or not call.done_sending
            else:
                self._handshake_failed(call, "connection error")
        finally:
            await aclose_quietly(stream)

    def _handshake_failed(self, call: _Call, why: str) -> None:
        call.error = why
        self.handshake_errors[why] = self.handshake_errors.get(why, 0) + 1

    async def _ticker(self, t0: float, stop_at: float) -> None:
        """Tick every ``tick_s`` on absolute deadlines; wake the senders of that phase."""
        j = 0
        try:
            while t0 + j * self.tick_s < stop_at + self.tick_s:
                await trio.sleep_until(t0 + j * self.tick_s)
                self._tick = j
                self._lots[j % self.phases].unpark_all()
                j += 1
        finally:
            self._tick = 1 << 62  # nobody waits for a tick that will not come
            for lot in self._lots:
                lot.unpark_all()

    async def _sender(self, call: _Call, start_at: float, stop_at: float) -> None:
        ws, codec, rate = call.ws, call.codec, self.rate
        from ..testing.provider import default_start

        start: CallStarted = default_start(self.config.provider, call_id=f"load-{call.index}", sample_rate=rate)
        for msg in codec.send(start):
            await ws.send_message(msg)
        t0, tick_s, phases = self._t0, self.tick_s, self.phases
        first_tick = math.ceil((trio.current_time() - t0) / tick_s - 1e-9)
        first_tick += (call.index - first_tick) % phases  # this call's phase
        lot = self._lots[first_tick % phases]
        seq = 0
        talk = self.talk
        talk_offset = talk.offset(call.index) if talk is not None else 0
        if talk is not None:
            call.talk = {"utterances": 0, "barge_in_attempts": 0, "keys": 0, "bot_media": 0, "bot_audio_s": 0.0, "marks_echoed": 0}
        while True:
            tick = first_tick + seq * phases
            due = t0 + tick * tick_s
            if due >= stop_at or seq > 32767:
                break
            while self._tick < tick:  # the frame's absolute deadline, from the ticker
                await lot.park()
            if call.cut:
                break
            if talk is not None:
                k = talk_offset + seq
                msgs = codec.send(CallerAudio(talk.frame(k), rate))
                event = talk.events.get(k % talk.frames)
                if event is not None:
                    msgs += self._talk_event(call, event)
            else:
                msgs = codec.send(CallerAudio(self.frame(seq), rate))
            call.nominal.append(due)
            call.sent_at.append(trio.current_time())
            for msg in msgs:
                await ws.send_message(msg)
            seq += 1
        call.done_sending = True
        if talk is not None or len(call.echo_at) >= len(call.sent_at):
            call.expect_until.set()

    def _talk_event(self, call: _Call, event: tuple) -> list:
        """Count a scripted utterance or key press; the messages a key sends (Awaaz)."""
        assert self.talk is not None and call.talk is not None
        kind, value = event
        if kind == "utterance":
            call.talk["utterances"] += 1
            call.talk["barge_in_attempts"] += bool(value)
            return []
        call.talk["keys"] += 1
        return list(call.codec.send(Dtmf(str(value)))) if self.talk.message_keys else []

    async def _receiver(self, call: _Call, nursery: trio.Nursery, t0: float) -> None:
        from trio_websocket import ConnectionClosed

        ws, codec = call.ws, call.codec
        play_end = -math.inf
        try:
            while True:
                msg = await ws.get_message()
                now = trio.current_time()
                try:
                    events = codec.receive(msg)
                except ProtocolError as exc:
                    call.protocol_errors += 1
                    call.error = call.error or str(exc)[:200]
                    continue
                for ev in events:
                    if isinstance(ev, PlayAudio):
                        if call.talk is not None:
                            call.talk["bot_media"] += 1
                            call.talk["bot_audio_s"] += ev.duration
                        else:
                            self._on_audio(call, ev, now)
                        play_end = max(now, play_end) + ev.duration
                    elif isinstance(ev, Mark):
                        # echo it when the audio before it has played, as Awaaz does
                        nursery.start_soon(self._echo_mark, call, ev.name, play_end)
                    elif isinstance(ev, Clear):
                        play_end = now
                        call.other["clear"] = call.other.get("clear", 0) + 1
                    else:
                        kind = type(ev).__name__ if not isinstance(ev, (Hangup, Transfer)) else "hangup"
                        call.other[kind] = call.other.get(kind, 0) + 1
        except ConnectionClosed:
            if not call.done_sending:
                call.cut = True
            call.expect_until.set()  # nothing more will come

    async def _echo_mark(self, call: _Call, name: str, due: float) -> None:
        from trio_websocket import ConnectionClosed

        await trio.sleep_until(due)
        try:
            for msg in call.codec.send(MarkEchoed(name)):
                await call.ws.send_message(msg)
            if call.talk is not None:
                call.talk["marks_echoed"] += 1
        except (ConnectionClosed, ProtocolError):
            pass

    def _on_audio(self, call: _Call, ev: PlayAudio, now: float) -> None:
        call.media += 1
        dur = ev.duration
        if call.last_media_at is not None:
            call.jitter.append((now, abs((now - call.last_media_at) - call.last_media_dur)))
        call.last_media_at, call.last_media_dur = now, dur
        if dur > call.max_media_dur:
            call.max_media_dur = dur
        pcm = ev.pcm
        data = call.tail + pcm if call.tail else pcm
        n_sent = len(call.sent_at)
        marker = self.marker
        i = data.find(marker.magic)
        while i != -1:
            if i % 2 == 0 and i + marker.size <= len(data):
                seq = marker.read(data, i)
                if seq is not None and 0 <= seq < n_sent:
                    if seq in call.echo_at:
                        call.duplicates += 1
                    else:
                        call.echo_at[seq] = now
            i = data.find(marker.magic, i + 2)
        # keep a partial marker cut by the end of this message for the next one
        # (whole samples only, so the parity check above stays aligned with the stream)
        call.tail = data[-(marker.size - 2):]
        if call.done_sending and len(call.echo_at) >= n_sent:
            call.expect_until.set()

    # --- summary ----------------------------------------------------------------------

    def _result(self, t0: float, wall: float, cpu: float) -> LoadResult:
        return summarize(
            self.config, self.calls, frame_s=self.frame_s, handshake_errors=self.handshake_errors,
            unix_offset=self._unix_offset, t0=t0, wall=wall, cpu=cpu,
        )


async def run_load(config: LoadConfig | None = None, **options) -> LoadResult:
    """Run one bounded load (a :class:`LoadConfig`, or its fields as keywords) and return
    what it measured. Returns after about ``seconds + drain`` (at most ``seconds + drain +
    close_timeout + connect_timeout + 2``)."""
    if config is None:
        config = LoadConfig(**options)
    _raise_fd_limit(2 * config.calls + 64)
    if not config.quiet_gc:
        return await LoadGenerator(config).run()
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        return await LoadGenerator(config).run()
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


# --- command line -------------------------------------------------------------------------


def add_load_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``callengine load`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "load",
        help="run N concurrent simulated provider calls against a server (loopback only)",
        description=(
            "N concurrent simulated provider calls, each streaming caller audio at real time, "
            "against an echo agent (serve it with --agent-rate equal to the wire rate, e.g. "
            "`callengine serve echo --agent-rate 8000` for Awaaz). Reports round trip, "
            "pacing jitter, underruns, drops and handshake failures. Loopback hosts only."
        ),
    )
    p.add_argument("url", help="ws://127.0.0.1:PORT/awaaz or ws://127.0.0.1:PORT/knowlarity")
    p.add_argument("--provider", choices=list(CODECS), required=True)
    p.add_argument("--calls", type=int, default=10, help=f"concurrent calls (1..{MAX_CALLS}, default 10)")
    p.add_argument("--seconds", type=float, default=10.0, help=f"length of the run, ramp included (max {MAX_SECONDS:g}, default 10)")
    p.add_argument("--ramp", type=float, default=0.0, help="spread call starts over this many seconds (default 0)")
    p.add_argument("--warmup", type=float, help="statistics cover frames sent after this many seconds (default: the ramp)")
    p.add_argument("--jitter-buffer-ms", type=float, default=40.0, help="modelled provider playout buffer (default 40)")
    p.add_argument(
        "--traffic", choices=TRAFFIC, default="echo",
        help="echo: marked tone frames for an echo agent (default); talk: a caller's looped script of speech, "
        "pauses, speech over the bot and key presses, for a conversational agent (e.g. scripts/bench_agent.py)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_load)
    return p


def cmd_load(args: argparse.Namespace) -> int:
    try:
        config = LoadConfig(
            url=args.url,
            provider=args.provider,
            calls=args.calls,
            seconds=args.seconds,
            ramp=args.ramp,
            warmup=args.warmup,
            jitter_buffer_ms=args.jitter_buffer_ms,
            traffic=args.traffic,
        )
    except LoadError as exc:
        print(f"callengine: error: {exc}", file=sys.stderr)
        return 2
    result = trio.run(run_load, config)
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print(result.format_table())
    return 0 if result.handshakes_ok else 1
