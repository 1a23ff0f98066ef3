"""The handles the agent holds: :class:`Playback` (one ``call.play``) and :class:`MarkHandle`
(one ``call.mark``). They add waiting to the pure records of :mod:`.playout`."""

from __future__ import annotations

import trio

from ..audio.resample import StreamResampler
from ..events import PlaybackResult
from .ledger import MarkPoint, MarkState, PlaybackAudio

__all__ = ["Playback", "MarkHandle", "MarkState"]


class Playback(PlaybackAudio):
    """A handle to one ``call.play``: audio queued for the caller, and what became of it.

    ``await playback.wait()`` returns a :class:`~callengine.events.PlaybackResult` once the
    audio has played to the end (``interrupted=False``) or was cut short by a clear, a
    barge-in or the end of the call (``interrupted=True``, ``played_ms`` what was heard).
    """

    def __init__(self, rate: int, bytes_per_chunk: int, frame_bytes: int = 0, min_bytes: int = 0) -> None:
        super().__init__(rate, bytes_per_chunk, frame_bytes, min_bytes)
        self._done = trio.Event()
        self.resampler: StreamResampler | None = None  # a streaming playback's, kept across writes

    def _on_settled(self) -> None:
        self._done.set()

    async def wait(self) -> PlaybackResult:
        """Wait until the playback has finished or was interrupted; return what happened."""
        await self._done.wait()
        assert self._result is not None
        return self._result


class MarkHandle(MarkPoint):
    """A handle to one ``call.mark``; ``await mark.wait()`` returns its final state."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._done = trio.Event()

    def _on_settled(self) -> None:
        self._done.set()

    async def wait(self) -> MarkState:
        """Wait until the mark is reached or cleared; return which."""
        await self._done.wait()
        return self.state
