"""The playout plan on its own, synchronously: whole provider frames (Awaaz) and one clip in
flight (Knowlarity ``clips="utterance"``). Time is a plain number; nothing runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from callengine.call.playout import MarkPoint, MarkState, Playout, PlaybackAudio, SendChunk, Wait

RATE = 8000


def plan(chunk_s: float, lead_s: float, *, frame_s: float = 0.0, one_clip: bool = False, start_delay_s: float = 0.0) -> Playout:
    return Playout(
        chunk_s,
        lead_s,
        mark_echo=False,
        clear_flushes=True,
        mark_grace_s=1.0,
        hangup_timeout_s=5.0,
        frame_s=frame_s,
        one_clip_in_flight=one_clip,
        start_delay_s=start_delay_s,
    )


def playback(p: Playout, pcm: bytes = b"", now: float = 0.0, *, finish: bool = True) -> PlaybackAudio:
    pb = PlaybackAudio(RATE, p.bytes_per_chunk(RATE), p.frame_bytes(RATE))
    if pcm:
        pb.feed(pcm, now)
    if finish:
        pb.finish()
    p.add(pb)
    return pb


def ramp(seconds: float) -> bytes:
    """Distinct non-zero samples, so any lost or moved sample shows."""
    n = int(round(seconds * RATE))
    return (np.arange(n, dtype=np.int16) % 1000 + 1).astype("<i2").tobytes()


def run(p: Playout, now: float, until: float) -> list[tuple[float, SendChunk]]:
    """Follow the plan from ``now`` to ``until``, as the writer would: every chunk it sends
    with the time it is sent."""
    sent = []
    while True:
        action = p.next_action(now)
        if isinstance(action, SendChunk):
            sent.append((now, action))
            continue
        assert isinstance(action, Wait)
        if action.until > until:
            return sent
        now = action.until


# --- whole frames -------------------------------------------------------------------------


def test_a_short_tail_is_padded_to_a_whole_frame_and_played_ms_stays_the_agent_audio():
    p = plan(0.02, 0.1, frame_s=0.02)
    pcm = ramp(1.013)  # 8104 samples: 50 frames and 104 samples
    pb = playback(p, pcm)
    sent = run(p, 0.0, 10.0)
    sizes = {len(s.pcm) for _, s in sent}
    assert sizes == {320} and len(sent) == 51
    wire = b"".join(s.pcm for _, s in sent)
    assert wire[: len(pcm)] == pcm and wire[len(pcm) :] == bytes(56 * 2)  # the padding is silence
    assert pb.padding_seconds == pytest.approx(0.007)
    # the provider plays the padding too: the playback ends, and settles, at 1.02 s
    assert p.ledger.play_end == pytest.approx(1.02)
    assert pb.end_time == pytest.approx(1.02)
    assert pb.result is not None
    assert (pb.result.interrupted, pb.result.played_ms, pb.result.duration_ms) == (False, pytest.approx(1013), pytest.approx(1013))


def test_without_frames_the_tail_goes_short():
    p = plan(0.02, 0.1)
    pb = playback(p, ramp(1.013))
    sent = run(p, 0.0, 10.0)
    assert len(sent[-1][1].pcm) == 208 and b"".join(s.pcm for _, s in sent) == ramp(1.013)
    assert p.ledger.play_end == pytest.approx(1.013) and pb.padding_seconds == 0.0


def test_marks_and_the_next_playback_move_by_the_padding():
    p = plan(0.02, 0.1, frame_s=0.02)
    playback(p, ramp(1.013))
    mark = MarkPoint("after")
    p.add(mark)
    second = playback(p, ramp(0.5))
    sent = run(p, 0.0, 10.0)
    assert mark.due == pytest.approx(1.02) and mark.state is MarkState.REACHED
    first_of_second = next(t for t, s in sent if s.playback is second)
    assert second.segments[0][0] == pytest.approx(1.02) and first_of_second <= 1.02
    assert second.result is not None and second.result.played_ms == pytest.approx(500)


def test_a_flushed_streaming_tail_is_padded_and_its_padding_is_not_counted_as_played():
    p = plan(0.02, 0.1, frame_s=0.02)
    pb = playback(p, ramp(0.31), finish=False)  # 15.5 frames, then the producer pauses
    sent = run(p, 0.0, 0.9)
    # the half frame went out once the provider was about to run dry, padded to a frame
    assert [len(s.pcm) for _, s in sent] == [320] * 16
    assert p.ledger.play_end == pytest.approx(0.32)
    pb.feed(ramp(0.2), 1.0)
    run(p, 1.0, 1.1)
    interrupted, _ = p.clear(1.1)
    # played: 0.32 s of stream position before the pause, 0.1 s after it, less 10 ms of padding
    assert [r.played_ms for r in interrupted] == [pytest.approx(410)]


def test_cleared_in_the_padding_the_agent_audio_played_in_full_and_no_more():
    p = plan(0.02, 0.1, frame_s=0.02)
    playback(p, ramp(0.31), finish=False)
    run(p, 0.0, 0.315)
    interrupted, _ = p.clear(0.315)  # 5 ms into the 10 ms of padding
    assert [r.played_ms for r in interrupted] == [pytest.approx(310)]


# --- one clip in flight ----------------------------------------------------------------


def test_one_clip_in_flight_sends_the_next_clip_when_the_previous_has_played():
    p = plan(5.0, 5.0, one_clip=True)
    first, second = playback(p, ramp(1.0)), playback(p, ramp(0.5))
    sent = run(p, 0.0, 10.0)
    # each playback is one clip, the second sent only when the first has played
    assert [(t, s.playback, len(s.pcm)) for t, s in sent] == [(0.0, first, 16000), (pytest.approx(1.0), second, 8000)]
    assert first.result is not None and second.result is not None
    assert (first.result.played_ms, second.result.played_ms) == (pytest.approx(1000), pytest.approx(500))


def test_without_one_clip_in_flight_both_clips_go_at_once_under_the_lead():
    p = plan(5.0, 5.0)
    playback(p, ramp(1.0))
    playback(p, ramp(0.5))
    assert [t for t, _ in run(p, 0.0, 10.0)] == [0.0, 0.0]


def test_a_streaming_playback_goes_out_when_closed_or_at_the_clip_cap():
    p = plan(1.0, 1.0, one_clip=True)
    pb = playback(p, ramp(0.3), finish=False)
    assert p.next_action(0.0) == Wait(math.inf)  # not flushed early: it waits for the agent
    pb.feed(ramp(0.9), 0.5)  # now 1.2 s: one capped clip and 0.2 s
    sent = run(p, 0.5, 0.7)
    assert [(t, len(s.pcm)) for t, s in sent] == [(0.5, 16000)]
    pb.finish()  # the agent closes it at 0.7
    sent = run(p, 0.7, 5.0)
    assert [(t, len(s.pcm)) for t, s in sent] == [(pytest.approx(1.5), 3200)]
    assert pb.result is not None and pb.result.played_ms == pytest.approx(1200)


def test_a_paused_streaming_playback_is_flushed_early_in_stream_mode():
    # the contrast: without one clip in flight a paused tail goes out by itself
    p = plan(1.0, 2.0)
    playback(p, ramp(0.3), finish=False)
    assert [(t, len(s.pcm)) for t, s in run(p, 0.0, 5.0)] == [(pytest.approx(1.0), 4800)]


def test_a_clear_during_a_long_clip_reports_what_played_until_the_clear():
    p = plan(5.0, 5.0, one_clip=True)
    long = playback(p, ramp(4.0))
    mark = MarkPoint("end")
    p.add(mark)
    after = playback(p, ramp(0.5))
    run(p, 0.0, 1.5)
    assert after.segments == []  # waiting behind the long clip
    interrupted, tell = p.clear(1.5)
    assert tell and [r.played_ms for r in interrupted] == [pytest.approx(1500), 0]  # the long clip, the one behind it
    assert long.result is not None and long.result.interrupted
    assert mark.state is MarkState.CLEARED
    # the provider's clip is gone: a new playback goes out at once
    new = playback(p, ramp(0.2), 1.5)
    assert [(t, s.playback) for t, s in run(p, 1.5, 5.0)] == [(1.5, new)]


def test_a_mark_after_a_clip_is_reached_when_the_clip_has_played():
    p = plan(5.0, 5.0, one_clip=True)
    playback(p, ramp(2.0))
    mark = MarkPoint("m")
    p.add(mark)
    run(p, 0.0, 1.99)
    assert mark.state is MarkState.PENDING
    run(p, 1.99, 2.0)
    assert mark.state is MarkState.REACHED and mark.due == pytest.approx(2.0)


def test_the_gap_between_clips_is_not_counted_as_an_underrun_with_one_clip_in_flight():
    # on a real clock the writer wakes a little after the previous clip's end
    for one_clip, underruns in ((True, 0), (False, 1)):
        p = plan(5.0, 5.0, one_clip=one_clip)
        first, second = playback(p, ramp(1.0)), playback(p, ramp(0.5))
        p.ledger.record(first, 0.0, 1.0, ready_at=0.0)
        p.ledger.record(second, 1.003, 0.5, ready_at=0.0)
        assert p.ledger.underruns == underruns


# --- the provider's start delay -----------------------------------------------------------


def test_with_one_clip_in_flight_the_next_clip_waits_for_the_start_delay():
    p = plan(5.0, 5.0, one_clip=True, start_delay_s=0.1)
    a, b = playback(p, ramp(1.2)), playback(p, ramp(0.7))
    mark = MarkPoint("end")
    p.add(mark)
    sent = run(p, 0.0, 10.0)
    # a starts 0.1 s after it went out and ends at 1.3: b goes out then, and plays from 1.4
    assert [(round(t, 9), s.playback) for t, s in sent] == [(0.0, a), (1.3, b)]
    assert a.segments == [(pytest.approx(0.1), pytest.approx(1.2))]
    assert b.segments == [(pytest.approx(1.4), pytest.approx(0.7))]
    assert mark.due == pytest.approx(2.1)  # when b's last sample has played
    assert p.ledger.underruns == 0


def test_a_queueing_provider_plays_back_to_back_and_only_the_first_chunk_waits():
    p = plan(0.2, 0.4, start_delay_s=0.05)
    pb = playback(p, ramp(1.0))
    run(p, 0.0, 10.0)
    assert pb.segments == [(pytest.approx(0.05), pytest.approx(1.0))]  # one run: no gaps
    assert p.ledger.underruns == 0
    assert pb.played_seconds(0.55) == pytest.approx(0.5)
