"""WAV: the canonical 44-byte header, parsing real and unusual files, rejecting garbage."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.audio.pcm import dbfs, pcm16_to_int16
from callengine.audio.wav import WAV_HEADER_SIZE, Wav, WavError, build_wav, parse_wav, read_wav, wav_header

DATA = Path(__file__).parent.parent / "data"
RECORDINGS = sorted(DATA.glob("*.wav"))

even_bytes = st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2])
FLOAT_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_* after the tag


def chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def extensible_fmt(subtag: int, channels: int, rate: int, bits: int) -> bytes:
    return fmt_body(0xFFFE, channels, rate, bits) + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", subtag) + FLOAT_GUID_TAIL


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def samples(wav: Wav) -> list[int]:
    return pcm16_to_int16(wav.pcm).tolist()


# --- build / header


@settings(max_examples=200, deadline=None)
@given(pcm=even_bytes, rate=st.integers(1, 0xFFFFFFFF // 2))
def test_build_parse_round_trip(pcm, rate):
    data = build_wav(pcm, rate)
    assert len(data) == WAV_HEADER_SIZE + len(pcm)
    wav = parse_wav(data)
    assert wav == Wav(pcm=pcm, sample_rate=rate, channels=1)
    assert wav.duration == pytest.approx(len(pcm) / (2 * rate))


def test_header_fields():
    header = wav_header(1000, 8000)
    assert len(header) == WAV_HEADER_SIZE == 44
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", header)
    assert fields == (b"RIFF", 1036, b"WAVE", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16, b"data", 1000)
    stereo8 = struct.unpack("<4sI4s4sIHHIIHH4sI", wav_header(10, 44100, channels=2, bits=8))
    assert stereo8[6:11] == (2, 44100, 88200, 2, 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_pcm_bytes": -1, "sample_rate": 8000},
        {"num_pcm_bytes": 0xFFFFFFFF, "sample_rate": 8000},
        {"num_pcm_bytes": 0, "sample_rate": 0},
        {"num_pcm_bytes": 0, "sample_rate": 2**31},  # byte rate would not fit in 32 bits
        {"num_pcm_bytes": 0, "sample_rate": 8000, "channels": 0},
        {"num_pcm_bytes": 0, "sample_rate": 8000, "bits": 12},
    ],
)
def test_header_rejects_what_it_cannot_represent(kwargs):
    """Regression: out-of-range rates raised struct.error instead of ValueError."""
    with pytest.raises(ValueError):
        wav_header(**kwargs)


def test_build_rejects_odd_pcm():
    with pytest.raises(ValueError):
        build_wav(b"\x00\x00\x00", 8000)


# --- real recordings


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_real_recordings(path):
    raw = path.read_bytes()
    wav = read_wav(path)
    assert wav.sample_rate == 8000 and wav.channels == 1
    (data_size,) = struct.unpack_from("<I", raw, 40)
    assert wav.pcm == raw[44 : 44 + data_size]  # 16-bit mono comes back untouched
    assert wav.duration > 1.0
    assert dbfs(pcm16_to_int16(wav.pcm)) > -40  # speech, not silence
    assert parse_wav(memoryview(raw)) == wav and parse_wav(bytearray(raw)) == wav


def test_there_are_recordings():
    assert len(RECORDINGS) == 3


# --- unusual but valid files


def test_extra_chunks_are_skipped():
    pcm = struct.pack("<3h", 1, -2, 3)
    data = riff(
        chunk(b"JUNK", b"\x00" * 7),  # odd size: followed by a pad byte
        chunk(b"fmt ", fmt_body(1, 1, 16000, 16) + b"\x00\x00"),  # 18-byte fmt with cbSize
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00abcd\x00"),
        chunk(b"fact", struct.pack("<I", 3)),
        chunk(b"data", pcm),
        chunk(b"LIST", b"trailing"),
    )
    wav = parse_wav(data)
    assert wav.sample_rate == 16000 and samples(wav) == [1, -2, 3]


def test_stereo_is_downmixed():
    frames = struct.pack("<6h", 1000, 3000, -32768, -32768, 32767, -32767)
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(1, 2, 8000, 16)), chunk(b"data", frames)))
    assert wav.channels == 2 and wav.sample_rate == 8000
    assert samples(wav) == [2000, -32768, 0]


def test_eight_bit_unsigned():
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 8)), chunk(b"data", bytes([128, 255, 0, 192]))))
    assert samples(wav) == [0, 32512, -32768, 16384]


def test_24_and_32_bit_integer():
    pcm24 = b"".join(v.to_bytes(3, "little", signed=True) for v in (0x400000, -0x800000, 0x7FFFFF))
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 48000, 24)), chunk(b"data", pcm24)))
    assert samples(wav) == [16384, -32768, 32767]
    pcm32 = struct.pack("<3i", 2**30, -(2**31), 2**31 - 1)
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 48000, 32)), chunk(b"data", pcm32)))
    assert samples(wav) == [16384, -32768, 32767]


def test_float32_with_clipping():
    data = np.array([0.5, -0.25, 1.5, -3.0, 0.0], dtype="<f4").tobytes()
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(3, 1, 24000, 32)), chunk(b"data", data)))
    assert samples(wav) == [16384, -8192, 32767, -32768, 0]


def test_float32_nan_and_infinity():
    """Regression: NaN reached the int16 cast (RuntimeWarning, garbage samples)."""
    data = np.array([np.nan, np.inf, -np.inf, 0.5, np.inf, -np.inf], dtype="<f4").tobytes()
    wav = parse_wav(riff(chunk(b"fmt ", fmt_body(3, 1, 8000, 32)), chunk(b"data", data)))
    assert samples(wav) == [0, 32767, -32768, 16384, 32767, -32768]
    stereo = parse_wav(riff(chunk(b"fmt ", fmt_body(3, 2, 8000, 32)), chunk(b"data", data)))
    assert samples(stereo) == [16384, -8192, 0]  # inf + -inf averages to silence, not NaN


def test_extensible_pcm_and_float():
    pcm = struct.pack("<2h", 100, -100)
    wav = parse_wav(riff(chunk(b"fmt ", extensible_fmt(1, 1, 8000, 16)), chunk(b"data", pcm)))
    assert samples(wav) == [100, -100]
    floats = np.array([0.5, -0.25], dtype="<f4").tobytes()
    wav = parse_wav(riff(chunk(b"fmt ", extensible_fmt(3, 1, 8000, 32)), chunk(b"data", floats)))
    assert samples(wav) == [16384, -8192]  # regression: was read as 32-bit integers


def test_streaming_data_sizes_and_truncation():
    fmt = chunk(b"fmt ", fmt_body(1, 1, 8000, 16))
    pcm = struct.pack("<4h", 1, 2, 3, 4)
    for size in (0, 0xFFFFFFFF, 1000):  # "to the end", and a size longer than the file
        data = riff(fmt) + b"data" + struct.pack("<I", size) + pcm + b"\x05"  # odd stray byte
        assert samples(parse_wav(data)) == [1, 2, 3, 4]
    short = riff(fmt) + b"data" + struct.pack("<I", 4) + pcm
    assert samples(parse_wav(short)) == [1, 2]


# --- garbage


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF",
        b"RIFF\x00\x00\x00\x00WAVX",
        b"RIFX\x24\x00\x00\x00WAVE",
        b"\x00" * 100,
        b"ID3\x03\x00" + b"\x00" * 60,
        riff(),
        riff(chunk(b"data", b"\x00\x00")),  # data before fmt
        riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 16))),  # no data
        riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", b"\x00\x00")),  # fmt too short
        riff(chunk(b"fmt ", fmt_body(1, 0, 8000, 16)), chunk(b"data", b"\x00\x00")),  # no channels
        riff(chunk(b"fmt ", fmt_body(1, 1, 0, 16)), chunk(b"data", b"\x00\x00")),  # rate 0
        riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 12)), chunk(b"data", b"\x00\x00")),
        riff(chunk(b"fmt ", fmt_body(3, 1, 8000, 16)), chunk(b"data", b"\x00\x00")),  # 16-bit float
        riff(chunk(b"fmt ", fmt_body(7, 1, 8000, 8)), chunk(b"data", b"\xff")),  # mu-law WAV
        riff(chunk(b"fmt ", extensible_fmt(7, 1, 8000, 8)), chunk(b"data", b"\xff")),
        riff(chunk(b"fmt ", fmt_body(0xFFFE, 1, 8000, 16)), chunk(b"data", b"\x00\x00")),  # no GUID
    ],
)
def test_garbage_is_rejected_with_wav_error(data):
    with pytest.raises(WavError):
        parse_wav(data)


def test_wav_error_is_a_value_error():
    assert issubclass(WavError, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_wav_error(data):
    for candidate in (data, b"RIFF\x00\x00\x00\x00WAVE" + data):
        try:
            wav = parse_wav(candidate)
        except WavError:
            continue
        assert len(wav.pcm) % 2 == 0 and wav.sample_rate >= 1


@settings(max_examples=300, deadline=None)
@given(
    tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([0, 1, 2, 6, 0xFFFF]),
    rate=st.sampled_from([0, 1, 8000, 0xFFFFFFFF]),
    bits=st.sampled_from([0, 8, 16, 24, 32, 64, 0xFFFF]),
    extra=st.binary(max_size=30),
    size=st.sampled_from([0, 2, 3, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF),
    body=st.binary(max_size=100),
)
def test_structured_fuzz_never_raises_anything_but_wav_error(tag, channels, rate, bits, extra, size, body):
    fmt = struct.pack("<HHIIHH", tag, channels, rate, 0, 0, bits) + extra
    data = riff(chunk(b"fmt ", fmt)) + b"data" + struct.pack("<I", size) + body
    try:
        wav = parse_wav(data)
    except WavError:
        return
    assert len(wav.pcm) % 2 == 0
    assert wav.channels == channels and wav.sample_rate == rate
