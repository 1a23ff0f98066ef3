"""IVR: a keypad menu. 1 plays a message, 2 transfers the call, 3 hangs up.

What it shows:

* ``Dtmf`` events. On Awaaz key presses arrive as events; on Knowlarity they are tones in
  the caller's audio, which the engine detects and turns into the same ``Dtmf`` events,
  so the agent does not care which provider it is on.
* interrupting yourself: a key pressed during the menu ends the menu at once
  (``call.clear()``, if anything is still audible). The engine's barge-in would not do it:
  a press is about 80 ms, shorter than the 200 ms of speech a barge-in needs, and the
  energy VAD soon takes a steady tone for noise. (In simulated Knowlarity calls no press of
  80 ms to 1 s barged in, with the energy, WebRTC or Silero VAD.)
* barge-in on speech: talking over the menu clears it (the engine does that); once the
  caller stops (``SpeechEnded``) the menu plays again, since only keys choose here. The
  same recovers the case of a press long enough to barge in: the ``Dtmf`` event comes
  20-40 ms into the tone, so such a barge-in would cut the answer to that very key.
* provider differences as errors: ``call.transfer`` raises ``UnsupportedCommand`` at once
  on Awaaz, which cannot transfer from the media socket; the agent says so in the log and
  hangs up instead.
* ``call.hangup()`` and ``call.transfer()`` let queued audio finish, end the call, and do
  not return: the engine cancels the agent when the call is over.
"""

from __future__ import annotations

import logging

import numpy as np

from callengine.agents.prompt import load_prompt
from callengine.audio.generate import silence, tone
from callengine.errors import UnsupportedCommand
from callengine.events import BargeIn, Dtmf, SpeechEnded

log = logging.getLogger("callengine.agents.ivr")


def menu_prompt(sample_rate: int = 16000) -> np.ndarray:
    """One low beep, two higher, three higher still: "press 1, 2 or 3" (2.1 s, no DTMF
    frequencies in it)."""
    parts = []
    for i, f in enumerate((440, 554, 659)):
        parts += [tone(f, 0.12, sample_rate, dbfs=-16), silence(0.08, sample_rate)] * (i + 1)
        parts.append(silence(0.3, sample_rate))
    return np.concatenate(parts)


async def agent(call) -> None:
    call.barge_in = True
    rate = call.info.sample_rate
    menu = menu_prompt(rate)
    await call.play(menu, sample_rate=rate)
    interrupted = False
    async for event in call:
        if isinstance(event, BargeIn):
            interrupted = True  # the caller talked over us; the engine has cleared
        elif isinstance(event, SpeechEnded) and interrupted:
            interrupted = False
            await call.play(menu, sample_rate=rate)  # only keys choose: the menu again
        elif isinstance(event, Dtmf):
            interrupted = False
            await on_key(call, event.digit, menu, rate)


async def on_key(call, digit: str, menu: np.ndarray, rate: int) -> None:
    log.info("call %s: key %s", call.info.call_id, digit)
    if call.bot_audible:
        await call.clear()  # a key ends what is playing
    if digit == "1":
        message, message_rate = load_prompt()
        await call.play(message, sample_rate=message_rate)
        await call.play(menu, sample_rate=rate)
    elif digit == "2":
        try:
            await call.transfer("default")
        except UnsupportedCommand:
            log.info("%s cannot transfer from the media stream; hanging up instead", call.info.provider)
            await call.hangup()
    elif digit == "3":
        await call.hangup()
    else:
        await call.play(menu, sample_rate=rate)  # not a menu key: the menu again
