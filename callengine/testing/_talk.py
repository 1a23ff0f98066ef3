"""The caller's side of the load generator's talk traffic (``callengine load --traffic talk``).

One 16 s script, looped, for a conversational agent that answers each utterance with a few
seconds of speech (scripts/bench_agent.py answers with 3 s)::

     0.0 -  1.2 s  utterance (speech)           -> the bot answers, ~1.5 - 4.5 s
     6.0 s         key "5" (a DTMF event where the provider has them, else a 100 ms tone)
     8.0 -  9.2 s  utterance                    -> the bot answers, ~9.5 - 12.5 s
    10.4 - 11.2 s  utterance over that answer   -> a barge-in, then the bot answers it
    elsewhere      line noise at -65 dBFS

The speech is excerpts of the bundled prompt recording (callengine/agents/data/prompt.wav,
8 kHz; linearly resampled to the wire rate where that differs), so the VAD hears speech,
not a steady tone it would soon take for noise. Each call starts at its own point of the
loop (:meth:`TalkScript.offset`), so the calls' turns are spread over it as independent
calls' are. The audio is made once per generator; a frame is a slice of it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TalkScript", "LOOP_S"]

LOOP_S = 16.0
#: (start s, prompt excerpt start s, length s, over the bot's answer)
UTTERANCES = ((0.0, 0.2, 1.2, False), (8.0, 2.1, 1.2, False), (10.4, 3.4, 0.8, True))
#: (at s, key)
KEYS = ((6.0, "5"),)
KEY_TONE_S = 0.1
NOISE_DBFS = -65.0


class TalkScript:
    """The looped caller audio at ``rate``, in frames of ``frame_samples``, and what happens
    at which frame: ``events[k]`` is ("utterance", over_bot) or ("key", digit) for frame k
    of the loop. ``message_keys``: keys are DTMF messages (else tones in the audio)."""

    def __init__(self, rate: int, frame_samples: int, message_keys: bool) -> None:
        from ..agents.prompt import load_prompt
        from ..audio.dtmf import dtmf_tone
        from ..audio.generate import white_noise

        self.rate = rate
        self.frame_samples = frame_samples
        self.frames = int(round(LOOP_S * rate / frame_samples))
        total = self.frames * frame_samples
        audio = white_noise(total / rate, rate, dbfs=NOISE_DBFS, seed=1)[:total].astype(np.int16)
        speech, speech_rate = load_prompt()
        self.events: dict[int, tuple[str, object]] = {}
        for at, src, length, over_bot in UTTERANCES:
            piece = np.asarray(speech[int(src * speech_rate) : int((src + length) * speech_rate)], dtype=np.float64)
            if speech_rate != rate:
                n = int(len(piece) * rate / speech_rate)
                piece = np.interp(np.arange(n) * speech_rate / rate, np.arange(len(piece)), piece)
            start = self._frame_at(at) * frame_samples
            audio[start : start + len(piece)] = np.clip(piece, -32768, 32767).astype(np.int16)
            self.events[self._frame_at(at)] = ("utterance", over_bot)
        for at, digit in KEYS:
            self.events[self._frame_at(at)] = ("key", digit)
            if not message_keys:
                tone = dtmf_tone(digit, duration=KEY_TONE_S, sample_rate=rate, dbfs=-10.0)
                start = self._frame_at(at) * frame_samples
                audio[start : start + len(tone)] = tone
        self.message_keys = message_keys
        self.pcm = audio.astype("<i2").tobytes()
        self.frame_bytes = 2 * frame_samples

    def _frame_at(self, seconds: float) -> int:
        return int(round(seconds * self.rate / self.frame_samples))

    def offset(self, call_index: int) -> int:
        """The loop frame call ``call_index`` starts at: 2.26 s further for each call
        (113 frames of 20 ms; prime, so the starts cover the loop)."""
        return (call_index * 113) % self.frames

    def frame(self, k: int) -> bytes:
        """Frame ``k`` of the loop (any k >= 0)."""
        i = (k % self.frames) * self.frame_bytes
        return self.pcm[i : i + self.frame_bytes]
