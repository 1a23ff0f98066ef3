"""Listening to the caller: VAD and in-band DTMF on each inbound frame, and the barge-in task.

The analysis runs in the reader task, on the frame it just decoded (handing every frame to
a separate task costs a task switch and two queue operations per frame, about as much as
the energy VAD itself). The barge-in task wakes only when the caller talks over the bot.

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

from ..audio.dtmf import DtmfDetector
from ..audio.vad import SpeechSegmenter, SpeechStart
from ..events import Backchannel, BargeIn, Dtmf, Event, PlaybackResult, SpeechEnded, SpeechStarted
from .causes import Counters
from .config import BARGE_IN_MODES
from .inbox import Inbox
from .writer import PlayoutRequest

__all__ = ["Analyzer", "BargeInControl", "BARGE_IN_MODES"]

log = logging.getLogger("callengine.call")

_EPS = 1e-9

#: how far a speech segment may start before or after a key press's tone and still be that
#: tone (the detector dates a press to within a few ms; the VAD's frames are 10-30 ms)
KEY_TONE_SLACK_S = 0.06
#: speech this long after a key's tone (within the same VAD segment) is the caller talking;
#: longer than it takes to confirm a next key (~40 ms) plus the slack, so a quick run of
#: keys stays keys
KEY_SPEECH_AFTER_S = 0.12


class Analyzer:
    """VAD and in-band DTMF over the caller's wire-rate audio (no await: reader task).

    ``bot_audible()`` says whether the caller can hear the bot now; ``barge_in_enabled()``
    whether this call reacts to speech over the bot, ``barge_in_mode()`` how ("cut" or
    "pause"). Speech over the bot is posted to ``control`` once per speech segment, when it
    has lasted ``min_speech_s``; in "pause" mode the analyzer then follows the episode and
    posts its resolution: ``backchannel_max_s`` of speech (an interruption), or
    ``resume_s`` of quiet before that (a backchannel)."""

    def __init__(
        self,
        segmenter: SpeechSegmenter,
        dtmf: DtmfDetector | None,
        *,
        wire_rate: int,
        min_speech_s: float,
        inbox: Inbox[Event],
        counters: Counters,
        bot_audible: Callable[[], bool],
        barge_in_enabled: Callable[[], bool],
        control: "BargeInControl",
        barge_in_mode: Callable[[], str] = lambda: "cut",
        backchannel_max_s: float = 0.8,
        resume_s: float = 0.3,
    ) -> None:
        self.segmenter = segmenter
        self.dtmf = dtmf
        self.wire_rate = wire_rate
        self.min_speech_s = min_speech_s
        self.backchannel_max_s = backchannel_max_s
        self.resume_s = resume_s
        self._inbox = inbox
        self._counters = counters
        self._bot_audible = bot_audible
        self._barge_in_enabled = barge_in_enabled
        self._mode = barge_in_mode
        self._control = control
        self._segment_done = False  # this segment has had its barge-in (or its pause resolved by the agent)
        self._run_start: int | None = None  # sample the speech counts from (None: wait for more speech)
        self._rearm_at = 0  # after a backchannel within a segment: speech counts again from here
        self._episode: int | None = None  # the pause being followed
        self._last_speech = 0  # end of the episode's latest speech frame (samples)
        # In-band keys: the VAD hears a key's tone as speech. The detector confirms a press
        # (~40 ms) before the segmenter starts a segment (its 60 ms onset debounce), so a
        # segment that starts within the press is the key's tone: no SpeechStarted or
        # SpeechEnded, no barge-in (the agent has the Dtmf and decides what a key does),
        # unless speech goes on after the tone has stopped.
        self._key_from: int | None = None  # first sample of the latest press's tone
        self._key_to = 0  # the tone lasted at least to here (samples)
        self._key_segment = False  # the segment in progress is a key's tone
        self._speech_from = 0  # where the segment's speech began, when that was after a key
        self._key_slack = int(round(KEY_TONE_SLACK_S * wire_rate))
        self._key_after = int(round(KEY_SPEECH_AFTER_S * wire_rate))

    def process(self, pcm: bytes, sample_rate: int) -> None:
        if sample_rate != self.wire_rate:
            return  # a rate change mid-call is not a thing providers do
        inbox = self._inbox
        counters = self._counters
        segmenter = self.segmenter
        dtmf = self.dtmf
        if dtmf is not None:
            for key in dtmf.process(pcm):
                counters.dtmf += 1
                inbox.put_event_nowait(Dtmf(key.digit))
                self._key_from = int(round(key.start * self.wire_rate))
                self._key_to = dtmf.position
                current = segmenter.current
                if current is not None and not self._key_segment and self._is_key_tone(current.at_sample):
                    # a segment already reported (a VAD quicker than the detector): its
                    # tone does not barge in
                    self._segment_done = True
            if dtmf.holding:
                self._key_to = dtmf.position
        frames = segmenter.detector.process(pcm)
        for seg in segmenter.push(frames):
            if isinstance(seg, SpeechStart):
                if self._is_key_tone(seg.at_sample):
                    self._key_segment = True
                    continue
                self._key_segment = False
                counters.speech_segments += 1
                self._segment_done = False
                if self._episode is None:
                    self._run_start = seg.at_sample
                inbox.put_event_nowait(SpeechStarted(seg.at_seconds))
            elif self._key_segment:
                self._key_segment = False  # the tone's segment ended as a tone
            else:
                start = max(seg.start_sample, self._speech_from)  # after a key: its speech only
                inbox.put_event_nowait(SpeechEnded(seg.at_seconds, (seg.at_sample - start) / seg.sample_rate))
                self._speech_from = 0
        key_tone = self._key_segment and not self._speech_after_key()
        if self._episode is not None:
            self._follow(key_tone)  # a key's tone is not speech: it neither cuts nor keeps the pause
            return
        if key_tone:
            return
        if segmenter.current is None or self._segment_done:
            return
        if self._run_start is None:
            # a backchannel ended within this segment: count from its next speech frame
            for f in frames:
                if f.is_speech and f.start >= self._rearm_at:
                    self._run_start = f.start
                    break
            else:
                return
        run_start = self._run_start
        last = segmenter.last_speech_sample
        rate = self.wire_rate
        if (
            last is not None
            and (last - run_start) / rate >= self.min_speech_s - _EPS  # hang-over is not speech
            and self._barge_in_enabled()
            and self._bot_audible()
        ):
            self._segment_done = True
            onset_s = run_start / rate
            # when the onset was on the clock: this audio ends now, the onset is that far back
            onset_at = trio.current_time() - (segmenter.position / rate - onset_s)
            mode = self._mode()
            episode = self._control.onset(mode, onset_s, onset_at)
            if mode == "pause" and episode is not None:
                self._episode = episode
                self._last_speech = last
                self._segment_done = False

    def _is_key_tone(self, start_sample: int) -> bool:
        """A segment starting at ``start_sample`` began within the latest key press."""
        key_from = self._key_from
        return key_from is not None and key_from - self._key_slack <= start_sample <= self._key_to + self._key_slack

    def _speech_after_key(self) -> bool:
        """The key's segment goes on as speech after the tone stopped: from then on it is
        the caller's speech (SpeechStarted dated to the tone's end; the barge-in counts
        from the first speech frame after it)."""
        last = self.segmenter.last_speech_sample
        if last is None or self.dtmf is None or self.dtmf.holding or last <= self._key_to + self._key_after:
            return False
        self._key_segment = False
        self._counters.speech_segments += 1
        self._segment_done = False
        self._speech_from = self._key_to
        if self._episode is None:  # (a pause being followed keeps counting from its onset)
            self._run_start = None
            self._rearm_at = self._key_to
        self._inbox.put_event_nowait(SpeechStarted(self._key_to / self.wire_rate))
        return True

    def _follow(self, key_tone: bool = False) -> None:
        """The episode's resolution by the caller's speech, posted once."""
        control = self._control
        episode = self._episode
        if episode is None or control.active != episode:
            # resolved by the agent (or the call is over): the rest of this segment is judged
            self._episode = None
            self._segment_done = True
            return
        segmenter = self.segmenter
        last = None if key_tone else segmenter.last_speech_sample
        if last is not None and last > self._last_speech:
            self._last_speech = last
        rate = self.wire_rate
        assert self._run_start is not None
        speech = (self._last_speech - self._run_start) / rate
        control.speech_s = speech
        if speech >= self.backchannel_max_s - _EPS:
            control.resolve_by_caller(episode, "cut", speech)
            self._episode = None
            self._segment_done = True
        elif (segmenter.position - self._last_speech) / rate >= self.resume_s - _EPS:
            control.resolve_by_caller(episode, "resume", speech)
            self._episode = None
            self._run_start = None  # more speech in this segment counts afresh
            self._rearm_at = self._last_speech

    def close(self) -> None:
        close = getattr(self.segmenter.detector, "close", None)
        if close is not None:
            close()


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
