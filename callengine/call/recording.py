"""A call's recording: one stereo WAV file, the caller on the left, what the caller heard
from the bot on the right, aligned on the call's clock.

Fed without awaiting from the call's tasks (the reader's caller audio, the writer's chunks
with the time the provider starts playing each, the writer's clears), and written by its own
task about once a second in a worker thread, so memory stays bounded (one second of caller
audio, plus the bot audio queued at the provider) and the event loop never waits on the disk.

Bot audio becomes final only once its time has passed: a clear cuts whatever was queued
after it, which the caller never heard, so the right channel shows a barge-in as a cut.
The left channel is the caller's samples in order (providers stream continuously); when
the caller's audio stops coming, silence fills the left channel up to the clock.

A failure of the disk (full, unwritable directory) never ends or stalls the call: the
recording stops, says so once in the log, and the call's summary carries the error.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from pathlib import Path
from typing import IO

import numpy as np
import trio

from ..audio.resample import StreamResampler

__all__ = ["CallRecording", "recording_path"]

log = logging.getLogger("callengine.call")

_FLUSH_S = 1.0
#: failures logged at WARNING once per (directory, kind of error); the rest at DEBUG, so a
#: full disk does not write a line per call (each call's summary still has its error)
_said: set[tuple[str, str]] = set()
#: recordings that failed, since the process started (the server's metrics read it)
FAILURES = [0]


async def run_io(fn, *args):
    """Where the file's work runs: a worker thread, so the event loop never waits on the
    disk. (Tests on virtual time replace it with a direct call: a thread's real time is
    invisible to trio's MockClock.)"""
    return await trio.to_thread.run_sync(fn, *args)
# audio newer than this is not written yet: caller frames may still be arriving for it
_MARGIN_S = 0.2


def recording_path(directory: str | os.PathLike[str], provider: str, call_id: str) -> Path:
    """``DIR/<provider>-<call id>-<UTC time>.wav``, the id reduced to safe characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", call_id)[:80] or "call"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path(directory) / f"{provider}-{safe}-{stamp}.wav"


class CallRecording:
    """See the module docstring. ``rate``: the file's rate (the caller's wire rate);
    ``t0``: the call clock's zero (trio time)."""

    def __init__(self, path: Path, rate: int, t0: float) -> None:
        self.path = path
        self.rate = rate
        self.t0 = t0
        self.error: str | None = None
        self.stopped = False
        self._left = bytearray()  # caller audio not written yet
        self._right: list[tuple[int, np.ndarray]] = []  # (start sample, samples) of unwritten bot audio
        self._written = 0  # samples written per channel
        self._file: IO[bytes] | None = None
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0

    # --- fed by the call's tasks (no await) ----------------------------------------------

    def caller(self, pcm: bytes) -> None:
        if self.error is None and not self.stopped:
            self._left += pcm

    def bot(self, pcm: bytes, rate: int, start_time: float) -> None:
        """``pcm`` at ``rate`` starts playing at ``start_time`` (the ledger's)."""
        if self.error is not None or self.stopped:
            return
        samples = np.frombuffer(pcm, dtype="<i2")
        if rate != self.rate:
            if self._resampler is None or self._resampler_rate != rate:
                self._resampler = StreamResampler(rate, self.rate)
                self._resampler_rate = rate
            samples = self._resampler.process(samples)
        start = max(self._written, round((start_time - self.t0) * self.rate))
        self._right.append((start, samples))

    def cut(self, at_time: float) -> None:
        """The provider dropped everything queued at ``at_time`` (a clear)."""
        at = round((at_time - self.t0) * self.rate)
        kept = []
        for start, samples in self._right:
            if start >= at:
                continue
            kept.append((start, samples[: at - start]))
        self._right = kept
        self._resampler = None

    def stop(self) -> None:
        """The agent's switch: nothing more is recorded; the file keeps what it has."""
        self.stopped = True

    # --- the recording's task ------------------------------------------------------------

    async def run(self) -> None:
        """Write about once a second until cancelled (the call's end); :meth:`finish`
        then writes the rest."""
        await self._open()
        while self.error is None and not self.stopped:
            await trio.sleep(_FLUSH_S)
            now = round((trio.current_time() - self.t0 - _MARGIN_S) * self.rate)
            await self._flush(now)

    async def finish(self, end_time: float) -> None:
        """Write everything up to the call's end and finalize the header (call shielded and
        bounded: it may run in a cancelled scope)."""
        end = round((end_time - self.t0) * self.rate)
        if self._file is None and self.error is None:
            await self._open()
        self.cut(end_time)  # what was queued after the end was never heard
        left_end = self._written + len(self._left) // 2
        await self._flush(max(end, left_end) if not self.stopped else self._written)
        file = self._file
        if file is None:
            return
        self._file = None
        try:
            await run_io(_finalize_wav, file)
        except OSError as exc:
            self._fail(exc)

    async def _open(self) -> None:
        try:
            self._file = await run_io(_open_wav, self.path, self.rate)
        except OSError as exc:
            self._fail(exc)

    async def _flush(self, upto: int) -> None:
        """Write both channels up to sample ``upto``."""
        n = upto - self._written
        if n <= 0 or self._file is None or self.error is not None:
            return
        left = np.zeros(n, dtype="<i2")
        have = min(n, len(self._left) // 2)
        if have:
            left[:have] = np.frombuffer(bytes(self._left[: 2 * have]), dtype="<i2")
            del self._left[: 2 * have]
        right = np.zeros(n, dtype="<i2")
        base = self._written
        kept = []
        for start, samples in self._right:
            end = start + len(samples)
            lo, hi = max(start, base), min(end, upto)
            if hi > lo:
                right[lo - base : hi - base] = samples[lo - start : hi - start]
            if end > upto:
                kept.append((max(start, upto), samples[max(0, upto - start) :]))
        self._right = kept
        frames = np.empty(2 * n, dtype="<i2")
        frames[0::2], frames[1::2] = left, right
        self._written = upto
        file = self._file
        try:
            await run_io(file.write, frames.tobytes())
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = f"{type(exc).__name__}: {exc.strerror or exc}"
            FAILURES[0] += 1
            key = (str(self.path.parent), type(exc).__name__)
            level = logging.DEBUG if key in _said else logging.WARNING
            _said.add(key)
            log.log(level, "recording %s stopped: %s (the call goes on; further failures like it are logged at debug level)", self.path, self.error)
        self._left.clear()
        self._right.clear()
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


def _open_wav(path: Path, rate: int) -> IO[bytes]:
    file = open(path, "wb")
    try:
        file.write(_header(rate, 0))
    except OSError:
        file.close()
        raise
    return file


def _header(rate: int, data_bytes: int) -> bytes:
    channels, width = 2, 2
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width, channels * width, 8 * width)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def _finalize_wav(file: IO[bytes]) -> None:
    """Write the real sizes into the header, then close."""
    try:
        size = file.tell() - 44
        file.seek(4)
        file.write(struct.pack("<I", 36 + size))
        file.seek(40)
        file.write(struct.pack("<I", size))
    finally:
        file.close()
