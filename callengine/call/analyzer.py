"""Listening to the caller: VAD and in-band DTMF on each inbound frame, in the reader task.

The analysis runs in the reader task, on the frame it just decoded (handing every frame to
a separate task costs a task switch and two queue operations per frame, about as much as
the energy VAD itself). It posts speech and key events to the agent's inbox, and posts the
caller's speech over the bot to the barge-in task (:mod:`.bargein`), which wakes only then.

An in-band key press is a key, not speech: the VAD hears its tone as a speech segment, which
the analyzer neither reports nor lets barge in (the agent has the ``Dtmf``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import trio

from ..audio.dtmf import DtmfDetector
from ..audio.vad import SpeechSegmenter, SpeechStart
from ..events import Dtmf, Event, SpeechEnded, SpeechStarted
from .causes import Counters
from .inbox import Inbox

if TYPE_CHECKING:
    from .bargein import BargeInControl

__all__ = ["Analyzer", "KEY_TONE_SLACK_S", "KEY_SPEECH_AFTER_S"]

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
