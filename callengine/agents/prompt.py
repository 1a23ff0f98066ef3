"""Prompt: plays a long recorded prompt in a loop; the caller can talk over it.

What it shows:

* barge-in: when the caller talks over the prompt, the engine clears the playback itself
  and then tells the agent with ``BargeIn`` (and ``MarkCleared`` for the mark queued after
  it). The agent only decides what to do next: wait for ``SpeechEnded``, then start again.
* marks as a timer that stays in step with what the caller hears: the prompt, a pause and
  a mark are queued together, and ``MarkReached("loop")`` says the caller has heard all of
  it, so the next round is queued then (not on a wall-clock guess).
* package data: the prompt is a real recording shipped in ``callengine/agents/data`` and
  read with :mod:`importlib.resources`; :func:`tonal_prompt` stands in if it is missing.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources

import numpy as np

from callengine.audio.generate import silence, tone
from callengine.audio.wav import WavError, parse_wav
from callengine.events import BargeIn, MarkReached, SpeechEnded

log = logging.getLogger("callengine.agents.prompt")

PAUSE_S = 1.0  # silence between two rounds of the prompt


def spoken_prompt() -> tuple[np.ndarray, int]:
    """The bundled recording (Allison Smith, CC BY-SA 3.0; see data/README.md), 8 kHz."""
    wav = parse_wav(resources.files("callengine.agents").joinpath("data", "prompt.wav").read_bytes())
    return np.frombuffer(wav.pcm, dtype="<i2"), wav.sample_rate


def tonal_prompt(sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """A 4 s phrase of eight notes, for when there is no recording."""
    notes = []
    for f in (523, 587, 659, 698, 784, 698, 659, 587):  # none of them a DTMF frequency
        notes += [tone(f, 0.3, sample_rate, dbfs=-16), silence(0.2, sample_rate)]
    return np.concatenate(notes), sample_rate


@functools.cache
def load_prompt() -> tuple[np.ndarray, int]:
    """The spoken prompt, or the tonal one if the package data is not installed (read once)."""
    try:
        return spoken_prompt()
    except (OSError, WavError) as exc:
        log.warning("no bundled prompt (%s); using tones", exc)
        return tonal_prompt()


async def agent(call) -> None:
    call.barge_in = True
    audio, rate = load_prompt()

    async def play_round() -> None:
        await call.play(audio, sample_rate=rate)
        await call.play(silence(PAUSE_S, rate), sample_rate=rate)
        await call.mark("loop")

    await play_round()
    interrupted = False
    async for event in call:
        if isinstance(event, MarkReached) and event.name == "loop":
            await play_round()  # the caller heard it all: again
        elif isinstance(event, BargeIn):
            interrupted = True  # the engine has cleared the prompt already
        elif isinstance(event, SpeechEnded) and interrupted:
            interrupted = False
            await play_round()  # the caller has finished: start over
