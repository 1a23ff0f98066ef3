"""The summary of one load run: from each call's record of what it sent and got back, the
figures of :class:`~.load_result.LoadResult` over the steady window (round trips, pacing,
the modelled caller's underruns, drops, the talk traffic's counts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from .load_config import LoadConfig
from .load_result import LoadResult, Stats

if TYPE_CHECKING:
    from .load import _Call

__all__ = ["summarize"]


def summarize(
    cfg: LoadConfig,
    calls: "Sequence[_Call]",
    *,
    frame_s: float,
    handshake_errors: Mapping[str, int],
    unix_offset: float,
    t0: float,
    wall: float,
    cpu: float,
) -> LoadResult:
    since = t0 + cfg.warmup_s
    jb = cfg.jitter_buffer_ms / 1000
    rtts: list[float] = []
    jitter: list[float] = []
    late: list[float] = []
    sent = echoed = dropped = tail = long_tails = dups = media = underruns = calls_with_underruns = protocol_errors = cut = 0
    underrun_s = 0.0
    other: dict[str, int] = {}
    first_error = None
    frame_s = frame_s
    for call in calls:
        n = len(call.sent_at)
        sent += n
        echoed += len(call.echo_at)
        if call.talk is None:  # talk traffic: nothing is echoed, so nothing is dropped
            last_echoed = max(call.echo_at, default=-1)
            call_tail = n - 1 - last_echoed
            tail += call_tail
            dropped += n - len(call.echo_at) - call_tail
            if call_tail * frame_s > call.max_media_dur + 1e-6:
                long_tails += 1
        dups += call.duplicates
        media += call.media
        protocol_errors += call.protocol_errors
        cut += call.cut
        if call.error and call.handshake_ok and first_error is None:
            first_error = call.error
        for k, v in call.other.items():
            other[k] = other.get(k, 0) + v
        # The steady window ends where the caller's stream does, less the longest chunk
        # the server sent: the frames after the last whole chunk are held until the
        # server flushes a partial one (a pause rule, 200 ms on Knowlarity), which only
        # happens because this caller stops mid-chunk; a real caller streams until it
        # hangs up. They still count as sent, echoed, dropped or tail.
        stream_end = call.nominal[-1] + frame_s if n else since
        until = stream_end - max(call.max_media_dur, frame_s) - 1e-6
        last_send = call.sent_at[-1] if n else since
        jitter.extend(j for at, j in call.jitter if since <= at < last_send)
        # per frame, in order of sequence number
        play_end = None
        gaps = 0
        for seq in range(n):
            nominal = call.nominal[seq]
            lateness = call.sent_at[seq] - nominal
            at = call.echo_at.get(seq)
            counted = since <= nominal < until
            if counted:
                late.append(lateness)
            if at is None:
                continue
            rtt = at - call.sent_at[seq]
            if counted:
                rtts.append(rtt)
            arrival = nominal + rtt  # the generator's lateness taken out
            if play_end is None or arrival > play_end + 1e-6:
                if play_end is not None and counted:
                    gaps += 1
                    underrun_s += arrival - play_end
                play_end = arrival + jb + frame_s
            else:
                play_end += frame_s
        underruns += gaps
        calls_with_underruns += gaps > 0
    ok = sum(c.handshake_ok for c in calls)
    talk: dict[str, float] = {}
    for call in calls:
        for k, v in (call.talk or {}).items():
            talk[k] = talk.get(k, 0) + v
        if call.talk is not None:
            talk["clears"] = talk.get("clears", 0) + call.other.get("clear", 0)
    if "bot_audio_s" in talk:
        talk["bot_audio_s"] = round(talk["bot_audio_s"], 3)
    return LoadResult(
        url=cfg.url,
        provider=cfg.provider,
        calls=cfg.calls,
        seconds=cfg.seconds,
        ramp=cfg.ramp,
        warmup=cfg.warmup_s,
        jitter_buffer_ms=cfg.jitter_buffer_ms,
        wall_s=round(wall, 3),
        handshakes_ok=ok,
        handshakes_failed=cfg.calls - ok,
        handshake_errors=dict(handshake_errors),
        calls_cut=cut,
        protocol_errors=protocol_errors,
        frames_sent=sent,
        frames_echoed=echoed,
        frames_dropped=dropped,
        frames_unechoed_tail=tail,
        calls_with_long_tail=long_tails,
        frames_duplicated=dups,
        media_messages=media,
        other_messages=other,
        round_trip=Stats.of(rtts),
        pacing_jitter=Stats.of(jitter),
        send_late=Stats.of(late),
        underruns=underruns,
        underrun_ms=round(underrun_s * 1000, 3),
        calls_with_underruns=calls_with_underruns,
        loadgen_cpu_s=round(cpu, 3),
        first_error=first_error,
        window_start_unix=round(since + unix_offset, 4),
        window_end_unix=round(t0 + cfg.seconds + unix_offset, 4),
        traffic=cfg.traffic,
        talk=talk,
    )
