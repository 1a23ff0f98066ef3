"""Parrot: repeats each thing the caller says, once they have finished saying it.

What it shows:

* the engine's voice activity events: ``SpeechStarted`` and ``SpeechEnded`` carry times in
  inbound stream seconds, and both arrive *after* the fact (the start needs a little speech
  to be sure, the end a few hundred ms of silence). So the agent keeps the last second of
  audio in a small ring buffer, starts its recording ``PRE_ROLL_S`` before the reported
  onset, and cuts the tail at the reported end (plus ``TAIL_S``), not at the late event.
* barge-in (on by default): if the caller talks over the playback, the engine clears it
  and sends ``BargeIn``; the parrot is already recording that new utterance and repeats it
  when it ends. A sound too short to barge in (a cough, a key press) is not repeated.
* ``call.play`` returns at once; nothing here waits for the playback.

Stream time is counted from the audio received, which is exact unless the agent falls so
far behind that the engine drops frames (then the cut lands later by what was dropped).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from callengine.events import CallerAudio, SpeechEnded, SpeechStarted

PRE_ROLL_S = 0.3  # audio kept from before the speech's onset
RING_S = 1.0  # recent audio kept while nobody speaks (covers the detection delay)
TAIL_S = 0.1  # audio kept after the speech's reported end
MAX_UTTERANCE_S = 15.0  # longest repeat
MIN_UTTERANCE_S = 0.2  # shorter sounds are ignored


def cut(frames: list[tuple[float, bytes]], start: float, end: float, rate: int) -> np.ndarray:
    """The audio from stream time ``start`` to ``end`` out of consecutive frames given as
    (stream time of their first sample, pcm)."""
    audio = np.frombuffer(b"".join(pcm for _, pcm in frames), dtype="<i2")
    first = frames[0][0]
    return audio[max(0, round((start - first) * rate)) : max(0, round((end - first) * rate))]


async def agent(call) -> None:
    call.barge_in = True
    rate = call.info.sample_rate
    recent: deque[tuple[float, bytes]] = deque()  # the last RING_S of (stream time, pcm)
    utterance: list[tuple[float, bytes]] | None = None  # frames of the speech in progress
    begin = 0.0  # stream time the utterance's recording begins at
    now = 0.0  # stream time up to which audio has been received
    async for event in call:
        if isinstance(event, CallerAudio):
            frame = (now, event.pcm)
            now += len(event.pcm) / (2 * rate)
            recent.append(frame)
            while recent[0][0] < now - RING_S:
                recent.popleft()
            if utterance is not None and now - begin <= MAX_UTTERANCE_S + 1:
                utterance.append(frame)  # (a monologue is not kept past the cap)
        elif isinstance(event, SpeechStarted):
            begin = event.at - PRE_ROLL_S
            utterance = [f for f in recent if f[0] + len(f[1]) / (2 * rate) > begin]
        elif isinstance(event, SpeechEnded) and utterance is not None:
            frames, utterance = utterance, None
            if not frames or event.duration < MIN_UTTERANCE_S or call.bot_audible:
                continue  # a click, or a sound too short to barge in over the playback
            end = min(event.at + TAIL_S, begin + MAX_UTTERANCE_S)
            await call.play(cut(frames, begin, end, rate), sample_rate=rate)
