"""Bundled agents: small, complete examples to run, test against, and copy from.

=========  ================================================================================
echo       every frame the caller sends is played straight back (barge-in off, one
           streaming playback); for latency and load tests
parrot     repeats each utterance once the caller stops (VAD events, pre-roll ring buffer,
           barge-in)
prompt     a recorded prompt in a loop; talking over it stops it, and it starts again when
           the caller stops (barge-in, marks, package data)
ivr        keypad menu: 1 plays a message, 2 transfers (hangs up on Awaaz), 3 hangs up
           (DTMF events and in-band tones, clear, transfer, hang-up)
realtime-  speech to speech with OpenAI Realtime (``realtime-openai``) or Gemini Live
openai,    (``realtime-gemini``): classes in :mod:`callengine.bridges`, configured from the
-gemini    environment (API key, URL, model, voice, instructions, tools)
cascade-   speech to text and text to speech by Sarvam AI, the words by any OpenAI-compatible
sarvam     chat endpoint (:mod:`callengine.bridges.sarvam`, on :mod:`callengine.bridges.cascade`)
=========  ================================================================================

Each module has an ``agent(call)`` coroutine function; the bridges are classes.
:data:`BUNDLED` maps the names to ``"module:attribute"`` specs (nothing is imported until
asked); :func:`load` resolves a name or any such spec to the agent callable, creating an
instance of a class (which reads its settings from the environment).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

__all__ = ["BUNDLED", "load"]

BUNDLED: dict[str, str] = {
    "echo": "callengine.agents.echo:agent",
    "parrot": "callengine.agents.parrot:agent",
    "prompt": "callengine.agents.prompt:agent",
    "ivr": "callengine.agents.ivr:agent",
    "realtime-openai": "callengine.bridges.openai_realtime:OpenAIRealtimeAgent",
    "realtime-gemini": "callengine.bridges.gemini_live:GeminiLiveAgent",
    "cascade-sarvam": "callengine.bridges.sarvam:SarvamCascadeAgent",
}


def load(name_or_spec: str) -> Callable[..., Any]:
    """The agent called ``name_or_spec`` in :data:`BUNDLED`, or at ``"package.module:attr"``."""
    spec = BUNDLED.get(name_or_spec, name_or_spec)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"not a bundled agent ({', '.join(BUNDLED)}) nor a 'module:attribute' spec: {name_or_spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj
