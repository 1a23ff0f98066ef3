"""The bench's realistic agent: a TTS-driven bot, for the ``talk`` row of bench_capacity.py.

    PYTHONPATH=. callengine serve scripts.bench_agent:agent --agent-rate 8000      # Awaaz
    PYTHONPATH=. callengine serve scripts.bench_agent:agent --agent-rate 16000     # Knowlarity

(``callengine serve`` imports ``module:attribute``; ``scripts`` is a namespace package,
importable from the checkout's root, which bench_capacity.py puts on PYTHONPATH.)

What it does, per call, as a bot driven by a streaming TTS would:

* **answers each caller utterance** (``SpeechEnded``) with a turn of ``TURN_S`` seconds of
  speech (the bundled prompt recording, callengine/agents/data/prompt.wav, 8 kHz, looped;
  the engine resamples it to the wire rate where that differs). The turn is one streamed
  playback (``call.open_playback``) written ahead of real time in bursts: after a
  ``FIRST_CHUNK_S`` "synthesis latency", a ``CHUNK_S`` piece every ``CHUNK_S / SPEEDUP``
  seconds (a TTS three times faster than real time), then a mark ``turn-K`` at its end.
  A new utterance supersedes the turn being written.
* **barge-in**: the engine's default barge-in (cut) is on; on ``BargeIn`` (the engine has
  already cleared the playback) it stops writing the interrupted turn, and answers the
  interrupting utterance at its ``SpeechEnded``.
* **DTMF** (Awaaz events; tones in the audio on Knowlarity, which the engine detects): a
  key stops the current turn (``call.clear()`` if the bot is audible) and plays a short
  ``KEY_S`` confirmation with a mark ``key-K``.

Barge-ins, DTMF, marks placed, underruns and drops are counted by the engine itself
(``GET /metrics``, which the bench reads at the end of each step). What the agent saw
(turns started, ``BargeIn``, ``Dtmf``, ``MarkReached`` and ``MarkCleared`` events) is
counted per process and, when ``BENCH_AGENT_STATS`` names a file, written there as JSON
each time a call ends (Knowlarity has no mark echo on the wire, so this is where marks
reached show there).
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import trio

from callengine.agents.prompt import load_prompt
from callengine.events import BargeIn, Dtmf, MarkCleared, MarkReached, SpeechEnded

TURN_S = 3.0  # one answer
KEY_S = 1.0  # the answer to a key press
CHUNK_S = 0.3  # one burst of synthesized audio
FIRST_CHUNK_S = 0.15  # the TTS's time to the first audio
SPEEDUP = 3.0  # synthesis speed, in multiples of real time


#: what the agents of this process saw, over every call
STATS = {"calls": 0, "turns": 0, "barge_ins": 0, "keys": 0, "marks_reached": 0, "marks_cleared": 0}


def _write_stats() -> None:
    path = os.environ.get("BENCH_AGENT_STATS")
    if path:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(STATS, f)
        os.replace(tmp, path)


@functools.cache
def _speech() -> tuple[np.ndarray, int]:
    audio, rate = load_prompt()
    return np.ascontiguousarray(audio, dtype=np.int16), rate


class _Bot:
    def __init__(self, call, nursery: trio.Nursery) -> None:
        self.call = call
        self.nursery = nursery
        self.audio, self.rate = _speech()
        self.pos = 0  # where the next turn starts in the looped prompt
        self.turns = 0
        self.scope: trio.CancelScope | None = None

    def stop_turn(self) -> None:
        if self.scope is not None:
            self.scope.cancel()
            self.scope = None

    def start_turn(self, seconds: float, name: str) -> None:
        self.stop_turn()
        self.turns += 1
        STATS["turns"] += 1
        scope = self.scope = trio.CancelScope()
        self.nursery.start_soon(self._speak, scope, seconds, f"{name}-{self.turns}")

    def _take(self, n: int) -> np.ndarray:
        audio = self.audio
        idx = (self.pos + np.arange(n)) % len(audio)
        self.pos = (self.pos + n) % len(audio)
        return audio[idx]

    async def _speak(self, scope: trio.CancelScope, seconds: float, mark: str) -> None:
        with scope:
            await trio.sleep(FIRST_CHUNK_S)
            chunk = int(CHUNK_S * self.rate)
            left = int(seconds * self.rate)
            async with self.call.open_playback(self.rate) as playback:
                while left > 0:
                    n = min(chunk, left)
                    await playback.write(self._take(n))
                    left -= n
                    if left > 0:
                        await trio.sleep(n / self.rate / SPEEDUP)
            await self.call.mark(mark)
        if self.scope is scope:
            self.scope = None


async def agent(call) -> None:
    call.barge_in = True
    STATS["calls"] += 1
    try:
        async with trio.open_nursery() as nursery:
            bot = _Bot(call, nursery)
            async for event in call:
                if isinstance(event, SpeechEnded):
                    bot.start_turn(TURN_S, "turn")
                elif isinstance(event, BargeIn):
                    STATS["barge_ins"] += 1
                    bot.stop_turn()  # the engine has cleared what was playing
                elif isinstance(event, Dtmf):
                    STATS["keys"] += 1
                    bot.stop_turn()
                    if call.bot_audible:
                        await call.clear()
                    bot.start_turn(KEY_S, "key")
                elif isinstance(event, MarkReached):
                    STATS["marks_reached"] += 1
                elif isinstance(event, MarkCleared):
                    STATS["marks_cleared"] += 1
            nursery.cancel_scope.cancel()
    finally:
        _write_stats()
