"""WAV files: build the canonical 44-byte RIFF/WAVE header, and parse WAV bytes."""

from __future__ import annotations

import struct

import attrs

__all__ = ["WAV_HEADER_SIZE", "WavError", "Wav", "wav_header", "build_wav", "parse_wav", "read_wav"]

WAV_HEADER_SIZE = 44


class WavError(ValueError):
    """The bytes are not a WAV file this engine can read (PCM16 / PCM8 / float, any channels)."""


@attrs.frozen
class Wav:
    """Decoded WAV: PCM16LE mono ``pcm`` at ``sample_rate`` (multi-channel files are downmixed)."""

    pcm: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int
    channels: int = 1  # channels in the file before downmixing

    @property
    def duration(self) -> float:
        return len(self.pcm) / (2 * self.sample_rate)


def wav_header(num_pcm_bytes: int, sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """The canonical 44-byte header of a PCM WAV file whose data chunk is ``num_pcm_bytes``."""
    if num_pcm_bytes < 0 or num_pcm_bytes > 0xFFFFFFFF - 36:
        raise ValueError(f"data size out of range: {num_pcm_bytes}")
    if bits not in (8, 16, 24, 32) or not 1 <= channels <= 0xFFFF:
        raise ValueError(f"unsupported format: channels={channels} bits={bits}")
    block_align = channels * bits // 8
    # The header stores the rate and byte rate in 32 bits: refuse what it cannot hold.
    if sample_rate < 1 or sample_rate * block_align > 0xFFFFFFFF:
        raise ValueError(f"sample rate out of range: {sample_rate}")
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + num_pcm_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        bits,
        b"data",
        num_pcm_bytes,
    )


def build_wav(pcm: bytes, sample_rate: int) -> bytes:
    """A complete WAV file (44-byte header + data) holding PCM16LE mono ``pcm``."""
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return wav_header(len(pcm), sample_rate) + bytes(pcm)


def parse_wav(data: bytes | bytearray | memoryview) -> Wav:
    """Parse a RIFF/WAVE file into PCM16LE mono.

    Accepts PCM 8/16/24/32-bit and IEEE float 32-bit, any channel count (averaged to mono),
    WAVE_FORMAT_EXTENSIBLE, extra chunks (LIST, fact...) and the streaming convention of a
    data size of 0 or 0xFFFFFFFF meaning "to the end". Raises :class:`WavError` otherwise.
    """
    import numpy as np  # local: keeps header building importable without numpy costs

    b = bytes(data)
    if len(b) < 12 or b[:4] != b"RIFF" or b[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos = 12
    fmt = None
    while pos + 8 <= len(b):
        cid, size = struct.unpack_from("<4sI", b, pos)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(b):
                raise WavError("fmt chunk too short")
            fmt = b[body : min(len(b), body + size)]
        elif cid == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            end = len(b) if size in (0, 0xFFFFFFFF) else min(len(b), body + size)
            return _decode(b[body:end], fmt, np)
        pos = body + size + (size & 1)
    raise WavError("no data chunk" if fmt is not None else "no fmt chunk")


def _decode(raw: bytes, fmt: bytes, np) -> Wav:
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real tag is the SubFormat GUID's first two bytes
        if len(fmt) < 40:
            raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if channels < 1 or rate < 1 or bits not in (8, 16, 24, 32):
        raise WavError(f"unsupported WAV format: tag={tag} channels={channels} rate={rate} bits={bits}")
    width = bits // 8
    frame = width * channels
    raw = raw[: len(raw) - len(raw) % frame]
    if tag == 1 and bits == 16 and channels == 1:
        return Wav(pcm=raw, sample_rate=rate, channels=1)  # already PCM16LE mono: every stream frame
    if tag == 3 and bits == 32:
        x = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        # Float files may hold NaN or infinities: never let them reach the int16 cast.
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    elif tag == 1 and bits == 16:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif tag == 1 and bits == 8:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif tag == 1 and bits == 24:
        u = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / float(1 << 23)
    elif tag == 1 and bits == 32:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise WavError(f"unsupported WAV encoding: tag={tag} bits={bits}")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    pcm = np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return Wav(pcm=pcm, sample_rate=rate, channels=channels)


def read_wav(path) -> Wav:
    """Read a WAV file from disk (see :func:`parse_wav`)."""
    with open(path, "rb") as f:
        return parse_wav(f.read())
