"""Echo: the caller hears themselves, a round trip through the engine.

What it shows:

* reading the caller's audio with ``async for event in call`` (``CallerAudio`` frames at
  ``call.info.sample_rate``);
* streaming one long playback with ``call.open_playback``: every frame is written to the
  same playback, so the engine's resampler runs over one continuous signal. (A separate
  ``call.play`` per 20 ms frame would be resampled frame by frame and click at every seam.)
* turning barge-in off: the caller's own voice must not clear the echo of itself.

The agent runs at the agent rate (``CallConfig.agent_rate``, 16 kHz by default), so the
caller's audio is resampled on the way in and on the way out. For latency and load tests
run the engine with the agent rate equal to the wire rate (``call.info.wire_rate``:
8 kHz on Awaaz, usually 16 kHz on Knowlarity), e.g. ``CallConfig(agent_rate=8000)``: the
echo then passes through untouched and the round trip is framing and pacing only.

It never returns: the call ends when the caller hangs up, and the engine cancels it.
"""

from __future__ import annotations

import logging

from callengine.events import CallerAudio

log = logging.getLogger("callengine.agents.echo")


async def agent(call) -> None:
    call.barge_in = False
    rate = call.info.sample_rate  # the rate CallerAudio arrives at
    log.info(
        "echo at %d Hz (wire %d Hz%s)",
        rate,
        call.info.wire_rate,
        "" if rate == call.info.wire_rate else ", resampled both ways",
    )
    async with call.open_playback(rate) as playback:
        async for event in call:
            if isinstance(event, CallerAudio):
                await playback.write(event.pcm)
