"""Cut a PCM16LE byte stream of arbitrary chunk sizes into fixed-duration frames."""

from __future__ import annotations

__all__ = ["Framer"]


class Framer:
    """Turn PCM16LE bytes arriving in any chunk sizes into frames of exactly ``frame_ms``.

    Whatever does not fill a frame (including an odd trailing byte, half a sample) is kept
    and completed by the next :meth:`push`. Providers and VADs want fixed frames (often
    20 ms); TTS engines and sockets deliver whatever they have.
    """

    def __init__(self, sample_rate: int, frame_ms: float = 20) -> None:
        if sample_rate <= 0 or frame_ms <= 0:
            raise ValueError(f"sample_rate and frame_ms must be positive, got {sample_rate}, {frame_ms}")
        samples = sample_rate * frame_ms / 1000
        if abs(samples - round(samples)) > 1e-9:
            raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_samples = int(round(samples))
        self.frame_bytes = 2 * self.frame_samples
        self._buf = bytearray()

    def __repr__(self) -> str:
        return f"Framer({self.sample_rate}, frame_ms={self.frame_ms}, pending={self.pending})"

    @property
    def pending(self) -> int:
        """Bytes buffered, waiting for the rest of their frame."""
        return len(self._buf)

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame now complete (possibly none), oldest first."""
        buf = self._buf
        buf += data  # bytearray += accepts any buffer, counting bytes
        size = self.frame_bytes
        usable = len(buf) - len(buf) % size
        if not usable:
            return []
        with memoryview(buf) as view:
            frames = [view[i : i + size].tobytes() for i in range(0, usable, size)]
        del buf[:usable]  # one shift of the remainder per push (front deletes are cheap)
        return frames

    def flush(self, pad: bool = False) -> bytes | None:
        """Return and forget the partial frame, or None if no whole sample is buffered.

        An odd trailing byte is dropped. With ``pad=True`` the result is zero-padded (with
        silence) to a full frame.
        """
        n = len(self._buf) - len(self._buf) % 2
        tail = bytes(self._buf[:n])
        self._buf.clear()
        if not tail:
            return None
        if pad:
            tail += bytes(self.frame_bytes - len(tail))
        return tail

    def reset(self) -> None:
        """Drop whatever is buffered (e.g. after a clear)."""
        self._buf.clear()
