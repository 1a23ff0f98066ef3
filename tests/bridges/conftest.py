"""Helpers for the bridge tests: agents that keep what they saw, and the caller's speech."""

from __future__ import annotations

import numpy as np
import trio

from callengine.bridges import GeminiLiveAgent, Heard, OpenAIRealtimeAgent

from ..call.conftest import speech_8k

PROVIDERS = ["awaaz", "knowlarity"]


def utterance(seconds: float = 1.5) -> np.ndarray:
    """The first ``seconds`` of a real recorded prompt (8 kHz): speech for both VADs."""
    samples, _ = speech_8k()
    return samples[: int(seconds * 8000)]


class Keeping:
    """Mixin: keeps each call's session and what the caller heard of each cut item."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list = []
        self.interruptions: list[Heard] = []

    def new_session(self, call, model):
        session = super().new_session(call, model)  # type: ignore[misc]
        self.sessions.append(session)
        return session

    async def on_interrupted(self, call, heard: Heard) -> None:
        self.interruptions.append(heard)


class KeepingOpenAI(Keeping, OpenAIRealtimeAgent):
    pass


class KeepingGemini(Keeping, GeminiLiveAgent):
    pass


async def wait_for(predicate, timeout: float = 30.0, step: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))
