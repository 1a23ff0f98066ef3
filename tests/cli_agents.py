"""Agents for the subprocess tests (``callengine serve tests.cli_agents:NAME``)."""

import trio


async def stuck(call):
    """Refuses to exit: its cleanup shields a wait far longer than any test."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(60)


async def tidy(call):
    """Cleans up for a moment, well within the cleanup grace, then exits."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(0.2)


async def hold(call):
    await trio.sleep_forever()


async def echo(call):
    """Plays back what the caller says, in one streaming playback (barge-in off)."""
    call.barge_in = False
    async with call.open_playback() as playback:
        async for event in call:
            if hasattr(event, "pcm"):
                await playback.write(event.pcm)
