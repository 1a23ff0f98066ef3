"""The agent's view of a call: :class:`Call` and :class:`CallInfo`.

An agent is any async callable taking a :class:`Call`::

    async def handler(call: callengine.Call) -> None:
        playback = await call.play(greeting, sample_rate=16000)
        async for event in call:
            ...

``Call`` talks to the running call through a narrow port (:mod:`.port`), never to the
session that owns the tasks.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Protocol, Union

import attrs
import numpy as np
import trio

from ..events import Event, FrozenDict, PlaybackResult
from .causes import CallStatistics, ControlKind, EndCause
from .handles import MarkHandle, Playback
from .port import CallEnded

if TYPE_CHECKING:
    from .recording import CallRecording
    from numpy.typing import NDArray

__all__ = ["Call", "CallInfo", "CallEnded", "PlaybackWriter", "AudioInput"]

#: What ``play`` and ``write`` take: PCM16LE bytes, or int16 / int32 / float samples (mono).
AudioInput = Union[bytes, bytearray, memoryview, "NDArray[Any]"]


class _Port(Protocol):
    cleanup_grace_s: float
    barge_in: bool
    listening: bool

    @property
    def barge_in_mode(self) -> str: ...
    @barge_in_mode.setter
    def barge_in_mode(self, mode: str) -> None: ...

    @property
    def ended(self) -> bool: ...
    @property
    def end_cause(self) -> EndCause | None: ...
    async def next_event(self) -> Event: ...
    def enqueue_audio(self, audio: Any, sample_rate: int, *, finish: bool) -> Playback: ...
    def extend_audio(self, pb: Playback, audio: Any) -> None: ...
    def finish_audio(self, pb: Playback) -> None: ...
    def enqueue_mark(self, name: str) -> MarkHandle: ...
    async def request_clear(self, reason: str) -> list[PlaybackResult]: ...
    async def request_control(self, kind: ControlKind, target: str = "default") -> None: ...
    async def resolve_pause(self, kind: str) -> tuple[bool, list[PlaybackResult]]: ...
    @property
    def paused(self) -> bool: ...
    def bot_audible(self) -> bool: ...
    def statistics(self) -> CallStatistics: ...


async def _yield_after_work(port: Any) -> None:
    """The schedule point of play, mark and write, taken after their (synchronous) work, as
    trio's own channel send does: the writer task is woken before the agent yields, so the
    audio goes out one scheduler batch sooner than with a checkpoint before the work. It is
    skipped when the agent has just yielded anyway (``AgentPort.should_yield``). A cancelled
    agent still learns of it at the ``checkpoint_if_cancelled`` these calls start with."""
    if port.should_yield():
        await trio.lowlevel.cancel_shielded_checkpoint()


def _freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return FrozenDict(value or {})


@attrs.frozen
class CallInfo:
    """Who is calling whom, as the provider told us.

    ``call_id``: the provider's call id. ``provider``: "awaaz", "knowlarity", ...
    ``caller`` / ``called``: phone numbers where the provider gives them.
    ``custom``: the provider's per-call parameters (read-only). ``sample_rate``: the agent's
    audio rate. ``wire_rate``: the caller audio's rate on the wire.
    """

    call_id: str
    provider: str
    caller: str = ""
    called: str = ""
    custom: Mapping[str, Any] = attrs.field(factory=FrozenDict, converter=_freeze)
    stream_id: str = ""
    direction: str = ""
    sample_rate: int = 16000
    wire_rate: int = 8000


class Call:
    """A live phone call, handed to the agent."""

    def __init__(self, port: _Port, info: CallInfo, recording: "CallRecording | None" = None) -> None:
        self._port = port
        self.info = info
        self._recording = recording

    def _detach(self, port: _Port) -> None:
        """The call is over: answer from ``port`` (a snapshot) from now on."""
        self._port = port

    # --- inbound ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._port.next_event()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """Wait for the next event: CallerAudio (at ``info.sample_rate``), Dtmf, SpeechStarted,
        SpeechEnded, BargeIn, Backchannel, MarkReached, MarkCleared. Raises CallEnded after
        the end."""
        try:
            return await self._port.next_event()
        except trio.EndOfChannel:
            raise CallEnded("the call has ended") from None

    # --- outbound ---------------------------------------------------------------------

    async def play(self, audio: AudioInput, sample_rate: int | None = None) -> Playback:
        """Queue audio for the caller and return at once with a :class:`Playback` handle.

        ``audio`` is PCM16LE bytes, int16 or int32 samples, or float samples in [-1, 1],
        mono, at ``sample_rate`` (default: ``info.sample_rate``). It is resampled to the
        provider's rate and played after anything queued before it. ``await
        playback.wait()`` tells whether it played fully or how much was heard before an
        interruption. Raises ValueError or TypeError for audio it cannot play as given
        (stereo, floats far outside [-1, 1]: the message says what to do), and CallEnded
        after the end.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self._port.enqueue_audio(audio, sample_rate or self.info.sample_rate, finish=True)
        finally:
            await _yield_after_work(self._port)

    @contextlib.asynccontextmanager
    async def open_playback(self, sample_rate: int | None = None) -> AsyncIterator["PlaybackWriter"]:
        """Stream one playback in pieces (e.g. from TTS) as they are produced::

            async with call.open_playback(sample_rate=24000) as playback:
                async for piece in tts(text):
                    await playback.write(piece)
            result = await playback.wait()
        """
        await trio.lowlevel.checkpoint()
        writer = PlaybackWriter(self._port, sample_rate or self.info.sample_rate)
        try:
            yield writer
        finally:
            writer.close()

    async def mark(self, name: str) -> MarkHandle:
        """Ask to be told when everything queued so far has been heard. A MarkReached (or,
        if the audio before it is cleared, MarkCleared) event follows; the returned handle's
        ``wait()`` gives the same answer."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self._port.enqueue_mark(name)
        finally:
            await _yield_after_work(self._port)

    async def clear(self) -> list[PlaybackResult]:
        """Stop playback now: drop queued audio (here and at the provider), settle marks.

        Returns the results of the playbacks that were cut short. Waits until the writer
        has applied the clear.
        """
        return await self._port.request_clear("agent")

    async def hangup(self) -> None:
        """End the call after the queued audio has played. Waits until the call has ended
        (the agent is then cancelled like every other task of the call)."""
        await self._port.request_control(ControlKind.HANGUP)

    async def transfer(self, target: str = "default") -> None:
        """Transfer the call to ``target`` after the queued audio has played.

        Raises :class:`~callengine.errors.UnsupportedCommand` at once on providers that
        cannot transfer from the socket (Awaaz)."""
        await self._port.request_control(ControlKind.TRANSFER, target)

    # --- state ------------------------------------------------------------------------

    @property
    def barge_in(self) -> bool:
        """Whether the caller's speech clears the bot's playback (settable per call)."""
        return self._port.barge_in

    @barge_in.setter
    def barge_in(self, value: bool) -> None:
        self._port.barge_in = bool(value)

    @property
    def barge_in_mode(self) -> str:
        """How the caller's speech over the bot is handled (settable per call): "cut" clears
        playback at once (a ``BargeIn``); "pause" holds it, then resumes from the position
        heard if the speech was a backchannel (a ``Backchannel``, shorter than
        ``CallConfig.backchannel_max_ms``) or cuts it as an interruption (a ``BargeIn``).
        Raises ValueError for another value."""
        return self._port.barge_in_mode

    @barge_in_mode.setter
    def barge_in_mode(self, value: str) -> None:
        self._port.barge_in_mode = value

    @property
    def paused(self) -> bool:
        """True while playback is paused for speech over the bot ("pause" mode), until the
        engine or :meth:`resume` / :meth:`confirm_barge_in` resolves it."""
        return self._port.paused

    async def resume(self) -> bool:
        """Resolve the pause in progress as a backchannel now (e.g. your ASR heard "haan"):
        playback resumes from the position heard and a ``Backchannel`` event follows.
        Returns False when there is no pause to resolve."""
        applied, _ = await self._port.resolve_pause("resume")
        return applied

    async def confirm_barge_in(self) -> list[PlaybackResult]:
        """Resolve the pause in progress as an interruption now (e.g. your ASR heard words
        that are not a backchannel), without waiting for ``backchannel_max_ms``: the audio
        held back is dropped and a ``BargeIn`` follows. Returns the interrupted playbacks'
        results (played_ms: what was heard before the pause); [] when there is no pause."""
        _, results = await self._port.resolve_pause("cut")
        return results

    @property
    def bot_audible(self) -> bool:
        """True while the provider is playing the bot's audio, by the playout ledger."""
        return self._port.bot_audible()

    @property
    def ended(self) -> bool:
        return self._port.ended

    @property
    def end_cause(self) -> EndCause | None:
        return self._port.end_cause

    def statistics(self) -> CallStatistics:
        """Counters of this call so far (frames in and out, drops, underruns, barge-ins...)."""
        return self._port.statistics()

    @property
    def recording(self) -> str | None:
        """The file this call is recorded to (``--record-dir``), or None."""
        return str(self._recording.path) if self._recording is not None else None

    def stop_recording(self) -> None:
        """Record nothing more of this call (e.g. the caller declined); the file keeps what
        was recorded until now and is finalized when the call ends."""
        if self._recording is not None:
            self._recording.stop()

    def cleanup_scope(self) -> trio.CancelScope:
        """A shielded, bounded scope for cleanup awaits in the agent's ``finally``::

            finally:
                with call.cleanup_scope():
                    await save_transcript()
        """
        return trio.move_on_after(self._port.cleanup_grace_s, shield=True)

    def __repr__(self) -> str:
        return f"<Call {self.info.provider}:{self.info.call_id}>"


class PlaybackWriter:
    """A streaming playback opened by ``call.open_playback``; also usable as its handle."""

    def __init__(self, port: _Port, sample_rate: int) -> None:
        self._port = port
        self.sample_rate = sample_rate
        self.playback: Playback | None = None

    async def write(self, audio: AudioInput) -> None:
        """Append audio; it starts playing as soon as the writer reaches this playback."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            if self.playback is None:
                self.playback = self._port.enqueue_audio(audio, self.sample_rate, finish=False)
            else:
                self._port.extend_audio(self.playback, audio)
        finally:
            await _yield_after_work(self._port)

    def close(self) -> None:
        if self.playback is None:
            try:
                self.playback = self._port.enqueue_audio(b"", self.sample_rate, finish=True)
            except CallEnded:
                pass
        else:
            self._port.finish_audio(self.playback)

    async def wait(self) -> PlaybackResult:
        if self.playback is None:
            raise RuntimeError("nothing was written to this playback")
        return await self.playback.wait()
