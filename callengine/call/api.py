"""The agent's view of a call: :class:`Call` and :class:`CallInfo`.

An agent is any async callable taking a :class:`Call`::

    async def handler(call: callengine.Call) -> None:
        playback = await call.play(greeting, sample_rate=16000)
        async for event in call:
            ...

Everything here is a thin, documented front for :class:`~callengine.call.session.CallSession`,
which owns the tasks.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import attrs
import numpy as np
import trio

from ..events import Event
from .ledger import MarkHandle, Playback

if TYPE_CHECKING:
    from .session import CallSession

__all__ = ["Call", "CallInfo", "CallEnded", "PlaybackWriter"]


async def _yield_after_work() -> None:
    """The schedule point of play, mark and write, taken after their (synchronous) work, as
    trio's own channel send does: the writer task is woken before the agent yields, so the
    audio goes out one scheduler batch sooner than with a checkpoint before the work. A cancelled
    agent still learns of it at the ``checkpoint_if_cancelled`` these calls start with."""
    await trio.lowlevel.cancel_shielded_checkpoint()


class CallEnded(Exception):
    """The call is over: raised by ``play``, ``mark`` and friends when used after the end."""


@attrs.frozen
class CallInfo:
    """Who is calling whom, as the provider told us.

    ``call_id``: the provider's call id. ``provider``: "awaaz", "knowlarity", ...
    ``caller`` / ``called``: phone numbers where the provider gives them.
    ``custom``: the provider's per-call parameters. ``sample_rate``: the agent's audio rate.
    ``wire_rate``: the caller audio's rate on the wire.
    """

    call_id: str
    provider: str
    caller: str = ""
    called: str = ""
    custom: Mapping[str, Any] = attrs.field(factory=dict)
    stream_id: str = ""
    direction: str = ""
    sample_rate: int = 16000
    wire_rate: int = 8000


class Call:
    """A live phone call, handed to the agent."""

    def __init__(self, session: "CallSession", info: CallInfo) -> None:
        self._session = session
        self.info = info

    # --- inbound ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._session.next_agent_event()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """Wait for the next event: CallerAudio (at ``info.sample_rate``), Dtmf, SpeechStarted,
        SpeechEnded, BargeIn, MarkReached, MarkCleared. Raises CallEnded after the end."""
        try:
            return await self._session.next_agent_event()
        except trio.EndOfChannel:
            raise CallEnded("the call has ended") from None

    # --- outbound ---------------------------------------------------------------------

    async def play(self, audio: bytes | np.ndarray, sample_rate: int | None = None) -> Playback:
        """Queue audio for the caller and return at once with a :class:`Playback` handle.

        ``audio`` is PCM16LE bytes, int16 samples or float samples in [-1, 1], mono, at
        ``sample_rate`` (default: ``info.sample_rate``). It is resampled to the provider's
        rate and played after anything queued before it. ``await playback.wait()`` tells
        whether it played fully or how much was heard before an interruption.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self._session.enqueue_audio(audio, sample_rate or self.info.sample_rate, finish=True)
        finally:
            await _yield_after_work()

    @contextlib.asynccontextmanager
    async def open_playback(self, sample_rate: int | None = None) -> AsyncIterator["PlaybackWriter"]:
        """Stream one playback in pieces (e.g. from TTS) as they are produced::

            async with call.open_playback(sample_rate=24000) as playback:
                async for piece in tts(text):
                    await playback.write(piece)
            result = await playback.wait()
        """
        await trio.lowlevel.checkpoint()
        writer = PlaybackWriter(self._session, sample_rate or self.info.sample_rate)
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
            return self._session.enqueue_mark(name)
        finally:
            await _yield_after_work()

    async def clear(self) -> list:
        """Stop playback now: drop queued audio (here and at the provider), settle marks.

        Returns the results of the playbacks that were cut short. Waits until the writer
        has applied the clear.
        """
        return await self._session.request_clear(reason="agent")

    async def hangup(self) -> None:
        """End the call after the queued audio has played. Waits until the call has ended
        (the agent is then cancelled like every other task of the call)."""
        await self._session.request_control("hangup")

    async def transfer(self, target: str = "default") -> None:
        """Transfer the call to ``target`` after the queued audio has played.

        Raises :class:`~callengine.errors.UnsupportedCommand` at once on providers that
        cannot transfer from the socket (Awaaz)."""
        await self._session.request_control("transfer", target)

    # --- state ------------------------------------------------------------------------

    @property
    def barge_in(self) -> bool:
        """Whether the caller's speech clears the bot's playback (settable per call)."""
        return self._session.barge_in

    @barge_in.setter
    def barge_in(self, value: bool) -> None:
        self._session.barge_in = bool(value)

    @property
    def bot_audible(self) -> bool:
        """True while the provider is playing the bot's audio, by the playout ledger."""
        return self._session.ledger.audible(trio.current_time())

    @property
    def ended(self) -> bool:
        return self._session.end_cause is not None

    @property
    def end_cause(self) -> str | None:
        return self._session.end_cause

    def statistics(self) -> dict:
        """Counters of this call so far (frames in and out, drops, underruns, barge-ins...)."""
        return self._session.statistics()

    def cleanup_scope(self) -> trio.CancelScope:
        """A shielded, bounded scope for cleanup awaits in the agent's ``finally``::

            finally:
                with call.cleanup_scope():
                    await save_transcript()
        """
        return trio.move_on_after(self._session.config.cleanup_grace_s, shield=True)

    def __repr__(self) -> str:
        return f"<Call {self.info.provider}:{self.info.call_id}>"


class PlaybackWriter:
    """A streaming playback opened by ``call.open_playback``; also usable as its handle."""

    def __init__(self, session: "CallSession", sample_rate: int) -> None:
        self._session = session
        self.sample_rate = sample_rate
        self.playback: Playback | None = None

    async def write(self, audio: bytes | np.ndarray) -> None:
        """Append audio; it starts playing as soon as the writer reaches this playback."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            if self.playback is None:
                self.playback = self._session.enqueue_audio(audio, self.sample_rate, finish=False)
            else:
                self._session.extend_audio(self.playback, audio)
        finally:
            await _yield_after_work()

    def close(self) -> None:
        if self.playback is None:
            self.playback = self._session.enqueue_audio(b"", self.sample_rate, finish=True)
        else:
            self._session.finish_audio(self.playback)

    async def wait(self):
        if self.playback is None:
            raise RuntimeError("nothing was written to this playback")
        return await self.playback.wait()
