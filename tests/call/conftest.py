from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trio

from callengine.audio.pcm import dbfs
from callengine.audio.wav import read_wav

DATA = Path(__file__).resolve().parent.parent / "data"


def live_task_names() -> list[str]:
    """Names of every task alive in this trio run (walks the task tree from the root)."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


def call_tasks_alive() -> list[str]:
    markers = ("CallSession", "SimulatedProvider", "run_engine", "agent")
    return [n for n in live_task_names() if any(m in n for m in markers)]


def speech_8k() -> tuple[np.ndarray, float]:
    """A real recorded prompt at 8 kHz and its speech onset (seconds) in the clean file."""
    wav = read_wav(DATA / "vm-tmpexists.wav")
    x = np.frombuffer(wav.pcm, dtype="<i2")
    win = 80  # 10 ms
    for i in range(0, len(x) - win, win):
        if dbfs(x[i : i + win]) > -40:
            return x, i / 8000
    raise AssertionError("no speech found")


@pytest.fixture
def speech():
    return speech_8k()


def padded_s(seconds: float, sim) -> float:
    """How long a playback of ``seconds`` lasts at the provider once the engine has padded its
    tail to the provider's whole frames (Awaaz, Twilio, Smartflo...: ``frame_ms``)."""
    frame = sim.session.caps.frame_ms / 1000
    if not frame:
        return seconds
    return math.ceil(seconds / frame - 1e-9) * frame
