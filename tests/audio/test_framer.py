"""Framer: fixed-size frames out of arbitrary chunks, remainder (and odd byte) carried."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.audio.framer import Framer


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
    rate_ms=st.sampled_from([(8000, 20), (16000, 20), (8000, 10), (24000, 40), (48000, 5), (8000, 0.125)]),
)
def test_frames_plus_flush_reassemble_the_input(data, cuts, rate_ms):
    framer = Framer(*rate_ms)
    frames = []
    pushed = 0
    for piece in split(data, cuts):
        new = framer.push(piece)
        pushed += len(piece)
        assert all(len(f) == framer.frame_bytes for f in new)
        frames += new
        assert framer.pending == pushed - len(frames) * framer.frame_bytes < framer.frame_bytes
    tail = framer.flush()
    whole = len(data) - len(data) % 2
    assert b"".join(frames) + (tail or b"") == data[:whole]
    assert tail is None or 0 < len(tail) < framer.frame_bytes
    assert framer.pending == 0


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=1000), cuts=st.lists(st.integers(0, 10**6), max_size=10))
def test_flush_with_padding_gives_one_full_frame(data, cuts):
    framer = Framer(8000, 10)  # 160-byte frames
    frames = [f for piece in split(data, cuts) for f in framer.push(piece)]
    remainder = data[len(frames) * 160 :]
    padded = framer.flush(pad=True)
    usable = len(remainder) - len(remainder) % 2
    if usable == 0:
        assert padded is None
    else:
        assert len(padded) == 160
        assert padded == remainder[:usable] + bytes(160 - usable)


def test_frame_sizes():
    assert Framer(8000).frame_bytes == 320
    assert Framer(16000).frame_bytes == 640
    assert Framer(24000, frame_ms=20).frame_samples == 480
    assert Framer(48000, frame_ms=10).frame_bytes == 960
    assert Framer(44100, frame_ms=20).frame_bytes == 1764
    with pytest.raises(ValueError):
        Framer(11025, frame_ms=20)  # 220.5 samples
    with pytest.raises(ValueError):
        Framer(8000, frame_ms=0)
    with pytest.raises(ValueError):
        Framer(0)


def test_odd_byte_is_carried_into_the_next_frame():
    framer = Framer(8000, frame_ms=0.5)  # 4 samples, 8 bytes
    assert framer.push(b"\x01\x02\x03") == []
    assert framer.pending == 3
    assert framer.push(b"\x04\x05\x06\x07\x08\x09") == [b"\x01\x02\x03\x04\x05\x06\x07\x08"]
    assert framer.pending == 1
    assert framer.flush() is None  # half a sample is not audio
    assert framer.push(b"\x0a" * 8) == [b"\x0a" * 8]  # flush dropped the stray byte


def test_one_push_can_yield_many_frames():
    framer = Framer(8000)
    data = bytes(range(256)) * 10  # 2560 bytes = 8 frames exactly
    frames = framer.push(data)
    assert len(frames) == 8 and b"".join(frames) == data
    assert framer.pending == 0 and framer.flush() is None


def test_flush_without_padding_and_reset():
    framer = Framer(8000)
    framer.push(b"\x01\x00" * 10 + b"\x07")
    assert framer.flush() == b"\x01\x00" * 10
    assert framer.flush() is None
    framer.push(b"\x01\x00" * 10)
    framer.reset()
    assert framer.pending == 0
    assert framer.push(b"\x02\x00" * 160) == [b"\x02\x00" * 160]


def test_accepts_bytearray_and_memoryview_and_returns_bytes():
    framer = Framer(8000, frame_ms=1)  # 16 bytes
    src = bytearray(b"\x05" * 20)
    frames = framer.push(src) + framer.push(memoryview(b"\x06" * 12))
    src[:] = b"\x00" * 20  # mutating the caller's buffer afterwards changes nothing
    assert frames == [b"\x05" * 16, b"\x05" * 4 + b"\x06" * 12]
    assert all(type(f) is bytes for f in frames)


def test_byte_at_a_time_feeding():
    """The worst case for carrying: every push completes at most one frame."""
    framer = Framer(8000)
    data = bytes(range(256)) * 40
    frames = []
    for i in range(len(data)):
        frames += framer.push(data[i : i + 1])
    assert b"".join(frames) == data[: len(frames) * 320]
    assert framer.pending == len(data) % 320
