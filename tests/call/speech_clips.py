"""Short responses and interruptions cut out of the shipped recordings (tests/data).

The recordings are real recorded prompts (see tests/data/README.md for their source and
licence). A *backchannel* here is a short cut from a word onset (0.3-0.7 s, faded out over
10 ms so the cut does not click), as long as a "haan", "hmm" or "ok". An *interruption* is
a whole phrase of a recording (1.2-4.9 s). Both are used by tests/call/test_backchannel.py
and scripts/bench_backchannel.py, said on a line with noise (``LINE_NOISE_DBFS``, the
simulated provider's ``noise_dbfs``): as on a real line, the energy VAD's floor is the
line's noise, and it hears each clip from its first loud 10 ms window to its end. (Said
into digital silence, the same cuts are heard up to 280 ms late, and a recording's own
room tone before a word as speech.)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import attrs
import numpy as np

from callengine.audio.pcm import dbfs
from callengine.audio.wav import read_wav

DATA = Path(__file__).resolve().parent.parent / "data"
RATE = 8000
LINE_NOISE_DBFS = -60.0  # a quiet phone line

#: word onsets (s) in each recording: the start of each stretch of speech after a pause of
#: 100 ms or more, by 10 ms windows above -40 dBFS
WORD_ONSETS = {
    "vm-tmpexists.wav": (0.19, 2.11, 3.41),
    "privacy-prompt.wav": (0.10, 1.98),
    "vm-forward-multiple.wav": (0.16, 1.04, 1.75),
}

#: (recording, start s, end s) of whole phrases, every one over a second long
PHRASES = (
    ("vm-tmpexists.wav", 0.19, 1.94),
    ("vm-tmpexists.wav", 2.11, 3.27),
    ("privacy-prompt.wav", 0.10, 1.63),
    ("privacy-prompt.wav", 1.98, 3.34),
    ("vm-forward-multiple.wav", 0.16, 1.64),
    ("vm-forward-multiple.wav", 1.75, 4.39),
    ("vm-tmpexists.wav", 0.0, 4.854),
    ("privacy-prompt.wav", 0.0, 3.505),
    ("vm-forward-multiple.wav", 0.0, 4.531),
)

BACKCHANNEL_LENGTHS = (0.3, 0.4, 0.5, 0.6, 0.7)


@attrs.frozen
class Clip:
    label: str
    samples: np.ndarray = attrs.field(eq=False, repr=False)
    onset_s: float  # the first 10 ms window above -40 dBFS
    kind: str  # "backchannel" or "interruption"


@lru_cache(maxsize=None)
def recording(name: str) -> np.ndarray:
    return np.frombuffer(read_wav(DATA / name).pcm, dtype="<i2")


def onset_of(x: np.ndarray, rate: int = RATE) -> float:
    win = rate // 100
    for i in range(0, len(x) - win, win):
        if dbfs(x[i : i + win]) > -40:
            return i / rate
    raise ValueError("no speech in the clip")


def cut(name: str, start: float, seconds: float, fade_ms: float = 10.0) -> np.ndarray:
    """``seconds`` of ``name`` from ``start``, the last ``fade_ms`` faded out."""
    x = recording(name)[int(round(start * RATE)) : int(round((start + seconds) * RATE))].astype(np.float64)
    n = int(fade_ms * RATE / 1000)
    x[-n:] *= np.linspace(1.0, 0.0, n)
    return np.rint(x).astype(np.int16)


def backchannel(name: str, start: float, seconds: float) -> Clip:
    x = cut(name, start, seconds)
    return Clip(f"{name.removesuffix('.wav')}@{start:.2f}+{seconds:.1f}", x, onset_of(x), "backchannel")


def interruption(name: str, start: float, end: float) -> Clip:
    x = cut(name, start, end - start)
    return Clip(f"{name.removesuffix('.wav')}@{start:.2f}-{end:.2f}", x, onset_of(x), "interruption")


def backchannels() -> list[Clip]:
    return [backchannel(name, start, n) for name, starts in WORD_ONSETS.items() for start in starts for n in BACKCHANNEL_LENGTHS]


def interruptions() -> list[Clip]:
    return [interruption(*phrase) for phrase in PHRASES]


def prompt(rate: int) -> np.ndarray:
    """The bot's prompt: privacy-prompt.wav (3.5 s) at ``rate`` (resampled for 16 kHz)."""
    x = recording("privacy-prompt.wav")
    if rate == RATE:
        return x
    from callengine.audio.resample import resample

    return resample(x, RATE, rate).astype(np.int16)
