"""What the agent's :class:`~callengine.call.api.Call` can do to a running call.

:class:`AgentPort` holds exactly the parts an agent touches (the playout plan, the writer's
wake-up and clear, the inbox, the call's state) and nothing of the session's lifecycle.
After the call ends the session swaps it for a :class:`ClosedPort`, which answers from a
snapshot and raises :class:`CallEnded` for anything that would act: the agent's ``Call``
then keeps no reference into the finished call's machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import trio

from ..audio.pcm import as_pcm16
from ..audio.resample import StreamResampler, resample
from ..errors import UnsupportedCommand
from ..events import CallerAudio, Event, PlaybackResult, Transfer
from ..protocols.base import Codec
from .causes import CallStatistics, ControlKind, EndCause
from .handles import MarkHandle, Playback
from .inbox import Inbox
from .playout import Control, Playout
from .state import CallState
from .config import BARGE_IN_MODES
from .writer import Writer

if TYPE_CHECKING:
    from .bargein import BargeInControl

__all__ = ["AgentPort", "ClosedPort", "CallEnded", "WORK_BETWEEN_YIELDS"]

#: play, mark and write calls in a row (the agent not having yielded in between) after
#: which one of them yields
WORK_BETWEEN_YIELDS = 16

class CallEnded(Exception):
    """The call is over: raised by ``play``, ``mark`` and friends when used after the end."""


class AgentPort:
    def __init__(
        self,
        *,
        state: CallState,
        playout: Playout,
        writer: Writer,
        inbox: Inbox[Event],
        codec: Codec,
        provider: str,
        inbound_resampler: StreamResampler,
        statistics: Callable[[], CallStatistics],
        cleanup_grace_s: float,
        barge_in: bool,
        barge_in_mode: str = "cut",
        control: "BargeInControl | None" = None,
        remote_transfer: bool = False,
    ) -> None:
        # a transfer the socket cannot carry may go through the provider's API
        self._remote_transfer = remote_transfer
        self._state = state
        self._playout = playout
        self._writer = writer
        self._inbox = inbox
        self._codec = codec
        self._provider = provider
        self._resampler = inbound_resampler
        self._statistics = statistics
        self.cleanup_grace_s = cleanup_grace_s
        self.barge_in = barge_in
        self._barge_in_mode = barge_in_mode
        self._control = control
        #: caller audio is queued for the agent only while it may still read it
        self.listening = True
        self._yields_seen = 0
        self._work = 0

    def should_yield(self) -> bool:
        """Whether the play, mark or write that just did its work should also yield.

        Not if the agent has yielded since the previous one (it waited in the inbox):
        an agent that answers every event with a write then takes one trip through the
        scheduler per event instead of two. One that keeps writing without waiting for
        anything yields every WORK_BETWEEN_YIELDS calls, so it cannot hold the loop. Each
        of these calls is a cancellation point either way."""
        yields = self._inbox.yields
        if yields != self._yields_seen:
            self._yields_seen = yields
            self._work = 1
            return False
        self._work += 1
        if self._work >= WORK_BETWEEN_YIELDS:
            self._work = 0
            return True
        return False

    # --- inbound --------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event; raises trio.EndOfChannel once the call is over and drained."""
        event = await self._inbox.get()
        resampler = self._resampler
        if type(event) is CallerAudio and not resampler.passthrough:
            out = resampler.process(event.pcm)
            event = CallerAudio(out.astype("<i2", copy=False).tobytes(), resampler.out_rate)
        return event

    # --- outbound -------------------------------------------------------------------

    def _check_open(self) -> None:
        state = self._state
        if state.over:
            raise CallEnded(f"the call has ended ({state.end_cause})")
        if state.control is not None:
            raise CallEnded(f"a {state.control.kind} is in progress")

    def enqueue_audio(self, audio: Any, sample_rate: int, *, finish: bool) -> Playback:
        self._check_open()
        out_rate = self._codec.outbound_rate
        playout = self._playout
        pb = Playback(out_rate, playout.bytes_per_chunk(out_rate), playout.frame_bytes(out_rate), playout.min_chunk_bytes)
        now = trio.current_time()
        pcm = as_pcm16(audio)
        if finish:
            if sample_rate != out_rate and pcm:
                pcm = resample(pcm, sample_rate, out_rate).astype("<i2", copy=False).tobytes()
            pb.feed(pcm, now)
            pb.finish()
        else:
            pb.resampler = StreamResampler(sample_rate, out_rate, low_latency=True)
            self._feed(pb, pcm, now)
        self._playout.add(pb)
        self._writer.poke()
        return pb

    @staticmethod
    def _feed(pb: Playback, pcm: bytes, now: float) -> int:
        resampler = pb.resampler
        if resampler is not None and not resampler.passthrough:
            pcm = resampler.process(pcm).astype("<i2", copy=False).tobytes()
        return pb.feed(pcm, now)

    def extend_audio(self, pb: Playback, audio: Any) -> None:
        if pb.done or not pb.open:
            return  # cleared or finished: the rest of a cut playback is dropped
        self._check_open()
        had_partial = pb.has_partial
        if self._feed(pb, as_pcm16(audio), trio.current_time()) or not had_partial:
            # a chunk to send, or a partial one the writer must plan a flush for. More
            # audio for a partial chunk it already knows of only moves that flush later,
            # which the writer finds when it wakes for the earlier one: on Knowlarity's
            # 200 ms clips this saves it nine wake-ups in ten frames.
            self._writer.poke()

    def finish_audio(self, pb: Playback) -> None:
        if pb.open and not pb.done:
            resampler = pb.resampler
            if resampler is not None:
                pb.feed(resampler.flush().astype("<i2", copy=False).tobytes(), trio.current_time())
            pb.finish()
            self._writer.poke()

    def enqueue_mark(self, name: str) -> MarkHandle:
        self._check_open()
        handle = MarkHandle(str(name))
        self._playout.add(handle)
        self._writer.poke()
        return handle

    async def request_clear(self, reason: str) -> list[PlaybackResult]:
        if self._state.over:
            await trio.lowlevel.checkpoint()
            return []
        return await self._writer.request_clear(reason)

    @property
    def barge_in_mode(self) -> str:
        return self._barge_in_mode

    @barge_in_mode.setter
    def barge_in_mode(self, mode: str) -> None:
        if mode not in BARGE_IN_MODES:
            raise ValueError(f"barge_in_mode must be one of {', '.join(BARGE_IN_MODES)}, got {mode!r}")
        self._barge_in_mode = mode

    @property
    def paused(self) -> bool:
        return self._control is not None and self._control.paused and self._playout.paused

    async def resolve_pause(self, kind: str) -> tuple[bool, list[PlaybackResult]]:
        """Resolve the pause in progress: "resume" or "cut". (applied, interrupted results)."""
        if self._control is None or self._state.over:
            await trio.lowlevel.checkpoint()
            return False, []
        item = await self._control.agent_resolve(kind)
        return item.applied, list(item.result)

    async def request_control(self, kind: ControlKind, target: str = "default") -> None:
        if kind is ControlKind.TRANSFER:
            if not self._codec.capabilities.transfer and not self._remote_transfer:
                raise UnsupportedCommand(f"{self._provider} cannot transfer a call from the media socket")
            if self._codec.capabilities.transfer:
                # codecs encode a transfer without touching their state: encoding it here
                # checks the target and gives the agent the error at its call site
                self._codec.send(Transfer(target))
        cause = EndCause.TRANSFER if kind is ControlKind.TRANSFER else EndCause.HANGUP
        self.request_control_nowait(kind, cause, target)
        await self._state.ended.wait()

    def request_control_nowait(self, kind: ControlKind, cause: EndCause, target: str = "default") -> None:
        state = self._state
        if state.over or state.control is not None:
            return
        state.control = Control(kind, cause, target)
        self.listening = False  # the agent is done reading: hang-up waits for the end
        self._playout.add(state.control)
        self._writer.poke()

    # --- state ----------------------------------------------------------------------

    def bot_audible(self) -> bool:
        return self._playout.ledger.audible(trio.current_time())

    @property
    def ended(self) -> bool:
        return self._state.end_cause is not None

    @property
    def end_cause(self) -> EndCause | None:
        return self._state.end_cause

    def statistics(self) -> CallStatistics:
        return self._statistics()


class ClosedPort:
    """The port of a call that is over: state from a snapshot; acting raises CallEnded."""

    listening = False

    paused = False

    def __init__(self, end_cause: EndCause | None, statistics: CallStatistics, cleanup_grace_s: float, barge_in: bool, barge_in_mode: str = "cut") -> None:
        self.end_cause = end_cause
        self._statistics = statistics
        self.cleanup_grace_s = cleanup_grace_s
        self.barge_in = barge_in
        self.barge_in_mode = barge_in_mode
        self.ended = True

    def _refuse(self) -> CallEnded:
        return CallEnded(f"the call has ended ({self.end_cause})")

    def should_yield(self) -> bool:
        return True

    async def next_event(self) -> Event:
        await trio.lowlevel.checkpoint()
        raise trio.EndOfChannel

    def enqueue_audio(self, audio: Any, sample_rate: int, *, finish: bool) -> Playback:
        raise self._refuse()

    def extend_audio(self, pb: Playback, audio: Any) -> None:
        return  # the rest of a playback cut by the end is dropped

    def finish_audio(self, pb: Playback) -> None:
        return

    def enqueue_mark(self, name: str) -> MarkHandle:
        raise self._refuse()

    async def request_clear(self, reason: str) -> list[PlaybackResult]:
        await trio.lowlevel.checkpoint()
        return []

    async def request_control(self, kind: ControlKind, target: str = "default") -> None:
        await trio.lowlevel.checkpoint()
        raise self._refuse()

    async def resolve_pause(self, kind: str) -> tuple[bool, list[PlaybackResult]]:
        await trio.lowlevel.checkpoint()
        return False, []

    def request_control_nowait(self, kind: ControlKind, cause: EndCause, target: str = "default") -> None:
        return

    def bot_audible(self) -> bool:
        return False

    def statistics(self) -> CallStatistics:
        return self._statistics
