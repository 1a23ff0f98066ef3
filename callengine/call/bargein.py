"""The barge-in task: what happens when the caller talks over the bot.

The caller's audio is judged in the reader task (:mod:`.analyzer`, re-exported here); the
barge-in task wakes only when the caller talks over the bot.

Two modes (``CallConfig.barge_in_mode``, ``call.barge_in_mode``):

* "cut": once the speech has lasted ``min_speech_ms`` the task asks the writer to clear,
  waits until it has, then tells the agent what was cut (:class:`~callengine.events.BargeIn`).
* "pause": at the same moment the writer *pauses* instead: the provider's queue is cleared
  but the audio is kept, from the exact position the caller heard. The episode is then
  resolved by the caller's speech: quiet for ``backchannel_resume_ms`` before it has lasted
  ``backchannel_max_ms`` is a backchannel ("haan", "hmm"): the writer resumes from that
  position and the agent gets :class:`~callengine.events.Backchannel`; speech that reaches
  ``backchannel_max_ms`` is an interruption: the kept audio is dropped and the agent gets
  ``BargeIn`` as in "cut", with the playbacks settled at the position heard at the pause.
  The agent may resolve it first (``call.resume()``, ``call.confirm_barge_in()``), e.g. on
  its ASR's words. A pause that nothing resolves (the caller's audio stopped coming) is cut
  after ``backchannel_max_ms + backchannel_resume_ms + 1 s``: no wait without a deadline.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Awaitable, Callable

import attrs
import trio

from ..events import Backchannel, BargeIn, Event, PlaybackResult
from .analyzer import Analyzer
from .causes import Counters
from .config import BARGE_IN_MODES
from .inbox import Inbox
from .writer import PlayoutRequest

__all__ = ["Analyzer", "BargeInControl", "BARGE_IN_MODES"]

log = logging.getLogger("callengine.call")

_EPS = 1e-9


@attrs.define
class _Episode:
    id: int
    mode: str
    onset_s: float  # stream time of the speech onset
    onset_at: float  # the same on the clock
    paused_at: float | None = None


@attrs.define
class _Item:
    kind: str  # "onset", "resume", "cut"
    episode: int
    speech_s: float = 0.0
    by: str = "caller"
    done: trio.Event | None = None  # the agent waits for its own request
    applied: bool = False
    result: list[PlaybackResult] = attrs.field(factory=list)


class BargeInControl:
    """The barge-in task and what the reader (:class:`Analyzer`) and the agent tell it.

    The reader and the agent post without waiting (the reader never waits); the task
    applies each post in order through the writer (:meth:`Writer.request`) and tells the
    agent: ``BargeIn`` for a cut, ``Backchannel`` for a resumed pause. ``active`` is the
    episode being handled (posted and not yet resolved), for the analyzer to follow.
    """

    def __init__(
        self,
        request: Callable[[PlayoutRequest], Awaitable[PlayoutRequest]],
        inbox: Inbox[Event],
        counters: Counters,
        label: str,
        on_latency: Callable[[float], None] = lambda seconds: None,
        *,
        pause_max_s: float = 2.1,
    ) -> None:
        self._request = request
        self._inbox = inbox
        self._counters = counters
        self._label = label
        self._on_latency = on_latency
        self.pause_max_s = pause_max_s
        self._items: deque[_Item] = deque()
        self._wake = trio.Event()
        self._ids = 0
        self._episode: _Episode | None = None
        self.active: int | None = None
        self.speech_s = 0.0  # speech so far in the active episode (set by the analyzer)
        self._closed = False

    # --- posts (no await) ---------------------------------------------------------------

    def onset(self, mode: str, onset_s: float, onset_at: float) -> int | None:
        """Speech over the bot: cut or pause. Returns the episode's id; None when one is
        being handled already (the same interruption)."""
        if self._closed or self.active is not None:
            return None
        self._ids += 1
        self.active = self._ids
        self.speech_s = 0.0
        self._episode = _Episode(self._ids, mode, onset_s, onset_at)
        self._post(_Item("onset", self._ids))
        return self._ids

    def resolve_by_caller(self, episode: int, kind: str, speech_s: float) -> None:
        """The caller's speech decided the pause: "resume" (a backchannel) or "cut"."""
        self._post(_Item(kind, episode, speech_s))

    def _post(self, item: _Item) -> None:
        if self._closed:
            if item.done is not None:
                item.done.set()
            return
        self._items.append(item)
        self._wake.set()

    @property
    def paused(self) -> bool:
        """A pause is in effect, waiting to be resolved."""
        ep = self._episode
        return ep is not None and ep.paused_at is not None

    # --- the agent ------------------------------------------------------------------

    async def agent_resolve(self, kind: str) -> _Item:
        """The agent resolves the pause in progress ("resume" or "cut"); waits until it is
        applied. Nothing to resolve (no pause in progress): ``applied`` is False."""
        ep = self._episode
        if ep is None or ep.mode != "pause" or self._closed:
            await trio.lowlevel.checkpoint()
            return _Item(kind, 0)
        item = _Item(kind, ep.id, self.speech_s, by="agent", done=trio.Event())
        self._post(item)
        assert item.done is not None
        await item.done.wait()
        return item

    def close(self) -> None:
        """The call is over: release every agent waiting for a resolution."""
        self._closed = True
        self.active = None
        for item in self._items:
            if item.done is not None:
                item.done.set()
        self._items.clear()

    # --- the task -------------------------------------------------------------------

    async def run(self) -> None:
        items = self._items
        while True:
            while not items:
                self._wake = trio.Event()
                ep = self._episode
                if ep is not None and ep.paused_at is not None:
                    deadline = ep.paused_at + self.pause_max_s
                    with trio.move_on_at(deadline):
                        await self._wake.wait()
                    if not items and self._episode is ep and trio.current_time() >= deadline - _EPS:
                        log.warning("call %s: a pause was not resolved within %.1f s (no caller audio?); cutting", self._label, self.pause_max_s)
                        items.append(_Item("cut", ep.id, self.speech_s, by="deadline"))
                else:
                    await self._wake.wait()
            item = items.popleft()
            try:
                await self._handle(item)
            finally:
                if item.done is not None:
                    item.done.set()

    async def _handle(self, item: _Item) -> None:
        ep = self._episode
        if ep is None or ep.id != item.episode:
            return  # resolved already (the caller's and the agent's posts may cross)
        if item.kind == "onset":
            if ep.mode != "pause":
                req = await self._request(PlayoutRequest("barge-in", "clear"))
                self._finish()  # speech while the clear was applied was the same interruption
                self._cut(ep, req, item)
                return
            await self._request(PlayoutRequest("barge-in", "pause"))
            ep.paused_at = now = trio.current_time()
            self._on_latency(now - ep.onset_at)
            log.debug("call %s: speech at %.3f s over the bot: paused", self._label, ep.onset_s)
            return
        if item.kind == "resume":
            req = await self._request(PlayoutRequest(f"backchannel ({item.by})", "resume"))
            self._finish()
            item.applied = req.applied
            if req.applied:
                paused = trio.current_time() - (ep.paused_at if ep.paused_at is not None else trio.current_time())
                self._counters.backchannels += 1
                log.info("call %s: backchannel at %.3f s (%.0f ms of speech, %s), resumed after %.0f ms", self._label, ep.onset_s, 1000 * item.speech_s, item.by, 1000 * paused)
                self._inbox.put_event_nowait(Backchannel(ep.onset_s, round(item.speech_s, 6), round(paused, 6)))
            return
        req = await self._request(PlayoutRequest(f"barge-in ({item.by})", "cut"))
        self._finish()
        if req.applied:
            self._cut(ep, req, item)

    def _cut(self, ep: _Episode, req: PlayoutRequest, item: _Item) -> None:
        if ep.mode != "pause":
            self._on_latency(trio.current_time() - ep.onset_at)
        item.applied = True
        item.result = req.result
        self._counters.barge_ins += 1
        log.info("call %s: barge-in at %.3f s, %d playback(s) cut", self._label, ep.onset_s, len(req.result))
        self._inbox.put_event_nowait(BargeIn(ep.onset_s, tuple(req.result)))

    def _finish(self) -> None:
        self._episode = None
        self.active = None
