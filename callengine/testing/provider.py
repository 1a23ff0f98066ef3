"""A simulated telephony provider: the PROVIDER role of a codec on a transport.

It behaves like Awaaz or Knowlarity on a live call, so agents and the engine can be tested
without a phone:

* a microphone task streams the caller's audio in real time (20 ms frames on absolute
  deadlines): what was queued with :meth:`say` and, between utterances, silence;
* a playout buffer plays what the engine sends at real time, honours clear / killAudio,
  echoes marks when the audio before them has played (where the provider does), and
  records what the caller heard with timestamps;
* key presses: DTMF events where the provider has them (Awaaz), in-band tones otherwise
  (Knowlarity);
* provider-side hang-up (stop), abrupt drop, and a timeline of everything that happened.

Run it with :meth:`SimulatedProvider.run` in a nursery (or ``nursery.start``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import attrs
import numpy as np
import trio

from ..audio.dtmf import dtmf_tone
from ..audio.resample import resample
from ..events import (
    DTMF_DIGITS,
    CallerAudio,
    CallStarted,
    CallStopped,
    Clear,
    ClearAcknowledged,
    Dtmf,
    Hangup,
    Mark,
    MarkEchoed,
    PlayAudio,
    Transfer,
    UnknownMessage,
)
from ..errors import ProtocolError
from ..protocols.base import Codec, Role
from ..protocols.registry import create_codec, get_codec
from ..call.transport import Transport, TransportClosed
from .quirks import with_quirks

__all__ = ["SimulatedProvider", "TimelineEntry", "HeardSegment", "default_start"]


@attrs.frozen
class TimelineEntry:
    t: float  # seconds since the call started
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.t:8.3f}s  {self.kind:<14} {self.detail}"


@attrs.define
class HeardSegment:
    """Audio the caller heard: ``pcm`` at ``sample_rate`` starting at ``start`` (call time)."""

    start: float
    pcm: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / (2 * self.sample_rate)

    @property
    def end(self) -> float:
        return self.start + self.duration


def default_start(provider: str, call_id: str = "sim-call-1", sample_rate: int | None = None, **custom: Any) -> CallStarted:
    rate = sample_rate or get_codec(provider).capabilities.inbound_rate
    return CallStarted(
        call_id=call_id,
        stream_id=f"MZ{call_id}",
        caller="+919800000001",
        called="+918000000002",
        sample_rate=rate,
        direction="inbound",
        custom=custom,
    )


class SimulatedProvider:
    """One simulated call, provider side.

    ``provider``: codec name (any in the codec registry), or a PROVIDER-role codec instance.
    ``echo_marks``: echo marks when reached (Awaaz); ``echo_marks_on_clear``: also echo the
    marks a clear dropped (as Twilio does; unknown for Awaaz). ``honour_clear``: whether clear
    / killAudio stop playback. ``new_audio_cuts``: each new audio message cuts what is
    playing instead of queueing behind it (a Knowlarity application that plays every
    ``playAudio`` as a file and interrupts the previous one). ``codec_options`` go to the
    PROVIDER-role codec, e.g. ``{"wav_wrap": False}`` for an Awaaz account that plays raw PCM,
    except ``quirks``: odd messages real providers send, played on request (names in
    :mod:`callengine.testing.quirks`), e.g. ``{"quirks": {"bom", "binary-json"}}``. ``close_after_hangup``: close the socket on a hang-up or
    transfer message (Knowlarity), after ``close_delay`` seconds. ``start_delay_ms``: audio
    that arrives while nothing plays starts this long after it arrives (an application that
    writes each clip to a file and then plays it); with ``new_audio_cuts`` the playing clip
    stops when the next one arrives, which starts that much later.
    """

    def __init__(
        self,
        transport: Transport,
        provider: str | Codec = "awaaz",
        *,
        start: CallStarted | None = None,
        frame_ms: float = 20.0,
        echo_marks: bool | None = None,
        echo_marks_on_clear: bool = False,
        honour_clear: bool = True,
        close_after_hangup: bool = True,
        close_delay: float = 0.0,
        noise_dbfs: float | None = None,
        codec_options: dict | None = None,
        new_audio_cuts: bool = False,
        start_delay_ms: float = 0.0,
    ) -> None:
        options = dict(codec_options or {})
        # "quirks" is the simulator's (odd messages it sends, see .quirks); the rest is the codec's
        quirks = options.pop("quirks", None)
        codec = create_codec(provider, Role.PROVIDER, **options) if isinstance(provider, str) else provider
        self.codec = with_quirks(codec, quirks)
        self.name = self.codec.name
        self.transport = transport
        self.start_event = start or default_start(self.name)
        self.rate = self.start_event.sample_rate
        self.frame_samples = int(round(frame_ms * self.rate / 1000))
        self.frame_s = self.frame_samples / self.rate
        caps = self.codec.capabilities
        self.echo_marks = caps.mark_echo if echo_marks is None else echo_marks
        self.echo_marks_on_clear = echo_marks_on_clear
        self.honour_clear = honour_clear
        self.close_after_hangup = close_after_hangup
        self.close_delay = close_delay
        self.noise_dbfs = noise_dbfs
        self.new_audio_cuts = new_audio_cuts
        self.start_delay = start_delay_ms / 1000
        self._rng = np.random.default_rng(1)
        # microphone
        self._mic: deque[np.ndarray] = deque()
        self._mic_pos = 0
        self.frames_sent = 0
        # playout
        self.heard: list[HeardSegment] = []
        self.play_end = -math.inf
        self._pending_marks: list[tuple[float, str]] = []  # (due, name)
        self._mark_wake = trio.Event()
        self.marks_echoed: list[tuple[float, str]] = []
        self.marks_received: list[tuple[float, str]] = []
        self.clears: list[float] = []
        self.hangups: list[tuple[float, str]] = []  # (time, "hangup" | "transfer:<target>")
        self.received: list[tuple[float, Any]] = []  # every decoded command with its time
        self.control_messages: list[tuple[float, Any]] = []  # raw messages that carried no audio
        self.timeline: list[TimelineEntry] = []
        self.protocol_errors: list[str] = []
        self.dtmf_dropped: list[tuple[float, str]] = []  # keys pressed that the provider cannot carry
        self.t0: float | None = None
        self.closed_code: int | None = None
        self.closed = trio.Event()
        self.started = trio.Event()
        self._stopping = False

    # --- time ---------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the call started."""
        return trio.current_time() - (self.t0 if self.t0 is not None else trio.current_time())

    def _note(self, kind: str, detail: str = "") -> None:
        self.timeline.append(TimelineEntry(round(self.now(), 4), kind, detail))

    # --- the caller's side ----------------------------------------------------------------

    def say(self, audio: np.ndarray | bytes, sample_rate: int | None = None) -> float:
        """Queue audio for the caller's microphone; returns the stream time it starts at
        (the start of the microphone frame now being filled, or after audio already queued)."""
        x = np.frombuffer(audio, dtype="<i2") if isinstance(audio, (bytes, bytearray)) else np.asarray(audio)
        if sample_rate and sample_rate != self.rate:
            x = resample(x, sample_rate, self.rate)
        starts_at = self._mic_queue_end()
        self._mic.append(x.astype(np.int16))
        return starts_at

    def _mic_queue_end(self) -> float:
        """Stream time at which audio queued now starts: the frame being filled (which
        began up to one frame ago) takes queued audio from its first sample."""
        queued = sum(len(x) for x in self._mic) - self._mic_pos
        return self.frames_sent * self.frame_s + queued / self.rate

    async def press(self, digit: str, duration: float = 0.08) -> None:
        """Press a key: a DTMF event where the provider has them, else an in-band tone.

        A key the provider's events cannot carry (A-D on Awaaz: its serializer has only 0-9,
        * and #) is dropped as the provider drops it: nothing is sent, the timeline notes
        "dtmf dropped" and :attr:`dtmf_dropped` keeps it. Not an error: a caller can press
        the key, and a test of the agent wants to see what that caller gets (nothing), the
        same code running against every provider. A key no keypad has is a ValueError."""
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF key: {digit!r} (one of {DTMF_DIGITS})")
        digit = digit.upper()
        caps = self.codec.capabilities
        if caps.dtmf_events:
            if digit not in caps.dtmf_keys:
                self.dtmf_dropped.append((self.now(), digit))
                self._note("dtmf dropped", f"{digit}: {self.name} carries only {''.join(sorted(caps.dtmf_keys))}")
                return
            await self._send(Dtmf(digit))
            self._note("dtmf", digit)
        else:
            self.say(dtmf_tone(digit, duration=duration, sample_rate=self.rate, dbfs=-10.0))
            self.say(np.zeros(int(0.06 * self.rate), dtype=np.int16))
            self._note("dtmf-tone", digit)

    def _next_mic_frame(self) -> np.ndarray:
        n = self.frame_samples
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._mic:
            head = self._mic[0]
            take = min(n - filled, len(head) - self._mic_pos)
            out[filled : filled + take] = head[self._mic_pos : self._mic_pos + take]
            filled += take
            self._mic_pos += take
            if self._mic_pos >= len(head):
                self._mic.popleft()
                self._mic_pos = 0
        if self.noise_dbfs is not None:
            noise = self._rng.standard_normal(n) * 32768 * 10 ** (self.noise_dbfs / 20)
            out = np.clip(out + np.rint(noise), -32768, 32767).astype(np.int16)
        return out

    @property
    def mic_idle(self) -> bool:
        return not self._mic

    # --- running --------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the call, then stream the microphone and play what arrives until the
        connection closes. Returns when the call is over."""
        self.t0 = trio.current_time()
        try:
            await self._send(self.start_event)
        except TransportClosed:
            self.closed.set()
            task_status.started(self)
            return
        self._note("start", f"{self.name} call {self.start_event.call_id} at {self.rate} Hz")
        self.started.set()
        task_status.started(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._mic_task)
                nursery.start_soon(self._mark_task)
                await self._receive_loop()
                nursery.cancel_scope.cancel()
        finally:
            self.closed.set()

    async def _send(self, event) -> None:
        for msg in self.codec.send(event):
            await self.transport.send_message(msg)

    async def _mic_task(self) -> None:
        assert self.t0 is not None
        while True:
            # absolute deadlines: frame k leaves at t0 + (k + 1) * frame (when it is complete)
            await trio.sleep_until(self.t0 + (self.frames_sent + 1) * self.frame_s)
            frame = self._next_mic_frame()
            try:
                await self._send(CallerAudio(frame.tobytes(), self.rate))
            except TransportClosed:
                return
            self.frames_sent += 1

    async def _mark_task(self) -> None:
        while True:
            self._mark_wake = trio.Event()
            now = trio.current_time()
            due = [m for m in self._pending_marks if m[0] <= now + 1e-9]
            for m in due:
                self._pending_marks.remove(m)
                await self._echo_mark(m[1])
            if due:
                continue
            nxt = min((m[0] for m in self._pending_marks), default=math.inf)
            with trio.move_on_at(nxt):
                await self._mark_wake.wait()

    async def _echo_mark(self, name: str) -> None:
        self.marks_echoed.append((self.now(), name))
        self._note("mark-echo", name)
        try:
            await self._send(MarkEchoed(name))
        except TransportClosed:
            pass

    async def _receive_loop(self) -> None:
        while True:
            try:
                msg = await self.transport.get_message()
            except TransportClosed as exc:
                self.closed_code = exc.code
                self._note("closed", f"code={exc.code} reason={exc.reason or ''}")
                return
            try:
                commands = self.codec.receive(msg)
            except ProtocolError as exc:
                self.protocol_errors.append(str(exc))
                self._note("protocol-error", str(exc)[:80])
                continue
            if not any(isinstance(c, PlayAudio) for c in commands):
                self.control_messages.append((self.now(), msg))  # raw wire form, for exact checks
            for cmd in commands:
                await self._handle(cmd)

    async def _handle(self, cmd: Any) -> None:
        now = trio.current_time()
        assert self.t0 is not None  # set by run() before anything is received
        self.received.append((self.now(), cmd))
        if isinstance(cmd, PlayAudio):
            begin = now + self.start_delay  # the soonest this audio can start
            if self.new_audio_cuts and self.play_end > now + 1e-9:
                # an application that plays each clip as a file and stops the one playing
                # when the next arrives (jambonz's unless queuePlay; maybe Knowlarity's)
                self._note("cut", f"{(self.play_end - now) * 1000:.0f} ms of the playing clip lost")
                self._truncate(now)
            start = max(begin, self.play_end)
            # contiguous within 1 us: on the real clock (trio offsets it by up to 2e5 s)
            # summed chunk durations drift by ~1e-9 s over a few seconds
            if self.heard and abs(self.heard[-1].end - (start - self.t0)) < 1e-6 and self.heard[-1].sample_rate == cmd.sample_rate:
                self.heard[-1].pcm += cmd.pcm
            else:
                gap = begin - self.play_end
                if self.play_end == -math.inf or gap > 0.25:
                    self._note("play", "bot audio starts")
                elif gap > 1e-6:
                    self._note("gap", f"{1000 * gap:.1f} ms of silence before this audio (an underrun)")
                self.heard.append(HeardSegment(start - self.t0, bytes(cmd.pcm), cmd.sample_rate))
            self.play_end = start + cmd.duration
        elif isinstance(cmd, Mark):
            self.marks_received.append((self.now(), cmd.name))
            if self.echo_marks:
                self._pending_marks.append((max(now, self.play_end), cmd.name))
                self._mark_wake.set()
        elif isinstance(cmd, Clear):
            self.clears.append(self.now())
            self._note("clear", f"{max(0.0, self.play_end - now) * 1000:.0f} ms dropped" if self.honour_clear else "ignored")
            if self.honour_clear:
                self._truncate(now)
                dropped, self._pending_marks = self._pending_marks, []
                if self.echo_marks_on_clear:
                    for _, name in dropped:
                        await self._echo_mark(name)
                if self.codec.capabilities.clear_ack:
                    # Plivo's clearedAudio, Vonage's websocket:cleared
                    self._note("clear-ack", "")
                    try:
                        await self._send(ClearAcknowledged())
                    except TransportClosed:
                        pass
        elif isinstance(cmd, (Hangup, Transfer)):
            what = "hangup" if isinstance(cmd, Hangup) else f"transfer:{cmd.target}"
            self.hangups.append((self.now(), what))
            self._note(what.split(":")[0], what)
            if self.close_after_hangup:
                if self.close_delay:
                    await trio.sleep(self.close_delay)
                await self.transport.aclose(1000, what)
        elif isinstance(cmd, UnknownMessage):
            self._note("unknown", cmd.kind)

    def _truncate(self, now: float) -> None:
        assert self.t0 is not None
        t = now - self.t0
        kept = []
        for seg in self.heard:
            if seg.start >= t:
                continue
            if seg.end > t:
                n = int(round((t - seg.start) * seg.sample_rate))
                seg = HeardSegment(seg.start, seg.pcm[: 2 * n], seg.sample_rate)
            kept.append(seg)
        self.heard = kept
        self.play_end = min(self.play_end, now)

    # --- the provider ending the call -------------------------------------------------------

    async def stop(self, reason: str = "caller hung up") -> None:
        """The caller hangs up the provider's way. Awaaz: its stop message, then a normal
        close. Knowlarity (mod_audio_fork's graceful shutdown): one empty binary frame, then
        it waits for the engine to close, as the module does; it closes itself only if the
        engine has not within ``close_delay`` + 5 s (a test then sees the wait)."""
        self._note("stop", reason)
        try:
            await self._send(CallStopped(reason))
        except TransportClosed:
            return
        if self.codec.family == "mod_audio_fork":
            with trio.move_on_after(self.close_delay + 5.0):
                await self.closed.wait()
            if self.closed.is_set():
                return
            self._note("stop", "the engine did not close after the empty frame; closing")
        await self.transport.aclose(1000, reason)

    async def drop(self) -> None:
        """The connection drops without a close handshake (like a TCP reset)."""
        self._note("drop")
        abort = getattr(self.transport, "abort", None)
        if abort is None:
            raise TypeError("this transport cannot be aborted")
        result = abort()
        if hasattr(result, "__await__"):
            await result
        else:
            await trio.lowlevel.checkpoint()

    # --- what the caller heard -------------------------------------------------------------

    def heard_audio(self, sample_rate: int | None = None, until: float | None = None) -> np.ndarray:
        """Everything the caller heard as one int16 signal from call time 0, silence in gaps."""
        rate = sample_rate or (self.heard[0].sample_rate if self.heard else self.rate)
        end = until if until is not None else max((s.end for s in self.heard), default=0.0)
        out = np.zeros(int(round(end * rate)), dtype=np.int16)
        for seg in self.heard:
            x = np.frombuffer(seg.pcm, dtype="<i2")
            if seg.sample_rate != rate:
                x = resample(x, seg.sample_rate, rate)
            i = int(round(seg.start * rate))
            x = x[: max(0, len(out) - i)]
            out[i : i + len(x)] = x
        return out

    def heard_seconds(self) -> float:
        return sum(s.duration for s in self.heard)

    def gaps(self, min_gap: float = 1e-6) -> list[tuple[float, float]]:
        """Silences between consecutive heard segments: (start, length)."""
        out = []
        for a, b in zip(self.heard, self.heard[1:]):
            if b.start - a.end > min_gap:
                out.append((a.end, b.start - a.end))
        return out

    def format_timeline(self) -> str:
        return "\n".join(str(e) for e in self.timeline)
