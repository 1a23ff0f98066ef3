"""Call recordings (``CallConfig(record_dir=...)``, ``serve --record-dir``): a stereo WAV,
caller left, what the caller heard right, aligned on the call's clock; barge-ins cut;
finalized on every ending; a disk that fails never disturbs the call."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np
import pytest
import trio

from callengine.audio.generate import tone
from callengine.call.config import CallConfig
from callengine.testing import open_simulated_call

from .conftest import speech_8k


@pytest.fixture(autouse=True)
def file_work_inline(monkeypatch):
    """On virtual time the recording's file work runs inline: a worker thread's real time
    would let the MockClock jump past the recording's deadlines (a real-clock test over a
    socket, at the end, runs it in threads)."""
    from callengine.call import recording

    async def inline(fn, *args):
        return fn(*args)

    monkeypatch.setattr(recording, "run_io", inline)
    return inline


def _read(path: str | Path) -> tuple[int, np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), frames[0::2], frames[1::2]


def _active(x: np.ndarray, rate: int, threshold: int = 300) -> tuple[float, float]:
    idx = np.flatnonzero(np.abs(x) > threshold)
    return idx[0] / rate, idx[-1] / rate


def _freq(x: np.ndarray, rate: int) -> float:
    x = x.astype(float)
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x))


async def test_both_sides_aligned_on_the_call_clock(autojump_clock, tmp_path):
    async def agent(call):
        await trio.sleep(0.5)
        await call.play(tone(1000, 1.0, 16000, dbfs=-12))
        await trio.sleep(3.0)

    config = CallConfig(record_dir=str(tmp_path), barge_in=False)
    async with open_simulated_call(agent, "awaaz", config) as sim:
        await trio.sleep(2.0)
        sim.provider.say(tone(400, 0.6, 8000, dbfs=-12))
        await trio.sleep(1.5)
    path = sim.report.recording
    assert path is not None and Path(path).parent == tmp_path and Path(path).name.startswith("awaaz-sim-call-1-")
    rate, left, right = _read(path)
    assert rate == 8000
    bot_start, bot_end = _active(right, rate)
    assert bot_start == pytest.approx(0.5, abs=0.03) and bot_end == pytest.approx(1.5, abs=0.03)
    assert _freq(right[int(0.6 * rate) : int(1.4 * rate)], rate) == pytest.approx(1000, abs=10)
    caller_start, caller_end = _active(left, rate)
    assert caller_start == pytest.approx(2.0, abs=0.05) and caller_end == pytest.approx(2.6, abs=0.05)
    assert _freq(left[int(2.1 * rate) : int(2.5 * rate)], rate) == pytest.approx(400, abs=10)
    assert len(left) / rate == pytest.approx(sim.report.duration_s, abs=0.1)
    assert sim.report.recording_error is None


async def test_a_barge_in_is_cut_where_the_caller_stopped_hearing(autojump_clock, tmp_path):
    samples, onset = speech_8k()

    async def agent(call):
        await call.play(tone(700, 4.0, 16000, dbfs=-12))
        await trio.sleep(2.0)

    async with open_simulated_call(agent, "awaaz", CallConfig(record_dir=str(tmp_path))) as sim:
        await trio.sleep(1.0)
        said = sim.provider.say(samples[: int(1.5 * 8000)], 8000)
        await trio.sleep(3.0)
    assert sim.provider.clears
    clear_at = sim.provider.clears[0]
    rate, left, right = _read(sim.report.recording)
    _, bot_end = _active(right, rate)
    heard = sim.provider.heard_seconds()
    # the right channel stops where the simulated caller stopped hearing the bot
    assert bot_end == pytest.approx(heard, abs=0.03)
    assert bot_end == pytest.approx(clear_at, abs=0.03) and bot_end < 4.0 - 1.0
    caller_start, _ = _active(left, rate)
    assert caller_start == pytest.approx(said + onset, abs=0.1)


async def test_an_agent_that_crashes_leaves_a_finished_file(autojump_clock, tmp_path):
    async def agent(call):
        await (await call.play(tone(500, 0.5, 16000))).wait()
        await trio.sleep(0.2)
        raise RuntimeError("agent bug")

    async with open_simulated_call(agent, "knowlarity", CallConfig(record_dir=str(tmp_path))) as sim:
        await trio.sleep(1.0)
    assert sim.report.end_cause == "agent_error"
    rate, left, right = _read(sim.report.recording)  # a valid header with the real sizes
    assert rate == 16000 and len(right) == len(left) > 0
    _, end = _active(right, rate)
    assert end == pytest.approx(0.5, abs=0.05)


async def test_the_agent_can_stop_its_recording(autojump_clock, tmp_path):
    async def agent(call):
        assert call.recording is not None and call.recording.startswith(str(tmp_path))
        await trio.sleep(2.0)
        call.stop_recording()
        await call.play(tone(600, 1.0, 16000))
        await trio.sleep(1.0)

    async with open_simulated_call(agent, "awaaz", CallConfig(record_dir=str(tmp_path))) as sim:
        await trio.sleep(5.0)
    rate, left, right = _read(sim.report.recording)
    assert len(left) / rate == pytest.approx(2.0, abs=1.1)  # what was written before the switch
    assert not np.any(np.abs(right) > 300)  # the playback after it is not in the file


@pytest.mark.parametrize("kind", ["missing", "a file"])
async def test_an_unwritable_directory_never_disturbs_the_call(autojump_clock, tmp_path, caplog, kind):
    target = tmp_path / "nowhere"
    if kind == "a file":
        target.write_text("not a directory")

    async def agent(call):
        await call.play(tone(500, 1.0, 16000))
        await trio.sleep(0.5)
        await call.hangup()

    caplog.set_level(logging.DEBUG, logger="callengine.call")
    async with open_simulated_call(agent, "awaaz", CallConfig(record_dir=str(target))) as sim:
        pass
    assert sim.report.end_cause == "hangup" and sim.report.close_code == 1000
    assert sim.provider.heard_seconds() == pytest.approx(1.0, abs=0.03)
    assert sim.report.recording is None and sim.report.recording_error is not None
    assert "Error" in sim.report.recording_error


async def test_a_disk_that_fills_up_mid_call_stops_only_the_recording(autojump_clock, tmp_path, monkeypatch):
    from callengine.call import recording as rec

    writes = []

    async def full_after_two(fn, *args):
        if getattr(fn, "__name__", "") == "write":
            writes.append(len(args[0]))
            if len(writes) > 2:
                raise OSError(28, "No space left on device")
        return fn(*args)

    monkeypatch.setattr(rec, "run_io", full_after_two)

    async def agent(call):
        await call.play(tone(500, 4.0, 16000))

    async with open_simulated_call(agent, "awaaz", CallConfig(record_dir=str(tmp_path))) as sim:
        await trio.sleep(6.0)
    assert sim.provider.heard_seconds() == pytest.approx(4.0, abs=0.03)
    assert sim.report.recording_error == "OSError: No space left on device"
    assert sim.report.recording is not None  # what was written before the disk filled


async def test_memory_stays_bounded_on_a_long_call(autojump_clock, tmp_path):
    peaks = []

    async def agent(call):
        for _ in range(30):
            await call.play(tone(500, 1.0, 16000))
            await trio.sleep(1.0)

    async with open_simulated_call(agent, "awaaz", CallConfig(record_dir=str(tmp_path))) as sim:
        recording = sim.session.recording
        assert recording is not None
        for _ in range(60):
            sim.provider.say(tone(300, 0.8, 8000))
            await trio.sleep(1.0)
            peaks.append((len(recording._left) // 2, sum(len(s) for _, s in recording._right)))
    rate = 8000
    assert max(left for left, _ in peaks) <= 2.5 * rate  # about a flush interval of caller audio
    assert max(right for _, right in peaks) <= 2.5 * rate  # what is queued at the provider and the playback being sent
    _, left, _ = _read(sim.report.recording)
    assert len(left) / rate == pytest.approx(sim.report.duration_s, abs=0.1)


async def test_bot_audio_at_another_rate_is_resampled_to_the_files(autojump_clock, tmp_path):
    """A provider whose outbound rate differs from the caller's: the right channel is
    converted to the file's rate, at the same place on the clock."""
    from callengine.call.recording import CallRecording

    rec = CallRecording(tmp_path / "r.wav", 8000, t0=trio.current_time())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        bot = tone(1000, 1.0, 16000, dbfs=-12).astype("<i2").tobytes()
        rec.bot(bot[:16000], 16000, trio.current_time() + 0.5)  # 0.5 s of 16 kHz audio at t=0.5
        rec.bot(bot[16000:], 16000, trio.current_time() + 1.0)
        for _ in range(20):
            rec.caller(bytes(320))
            await trio.sleep(0.02)
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    await rec.finish(trio.current_time())
    rate, left, right = _read(tmp_path / "r.wav")
    start, end = _active(right, rate)
    assert rate == 8000 and start == pytest.approx(0.5, abs=0.02) and end == pytest.approx(1.5, abs=0.02)
    assert _freq(right[int(0.6 * rate) : int(1.4 * rate)], rate) == pytest.approx(1000, abs=10)


async def test_recorded_over_a_real_socket_with_the_file_work_in_threads(nursery, tmp_path, monkeypatch, file_work_inline):
    """The server with ``record_dir``, on the real clock, the file written from worker
    threads: the summary names a finished stereo file with both sides in it."""
    from callengine.call import recording
    from callengine.server import CallServer, ServerConfig
    from callengine.testing.dial import open_dialed_call

    monkeypatch.setattr(recording, "run_io", lambda fn, *args: trio.to_thread.run_sync(fn, *args))

    async def agent(call):
        await (await call.play(tone(900, 0.6, 16000, dbfs=-12))).wait()
        await trio.sleep(1.5)

    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None, call=CallConfig(record_dir=str(tmp_path), barge_in=False)))
    await nursery.start(server.serve)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/awaaz", "awaaz") as sim:
        await trio.sleep(0.8)
        sim.say(tone(300, 0.5, 8000, dbfs=-12))
        with trio.fail_after(10):
            while not sim.closed.is_set() and sim.now() < 2.5:
                await trio.sleep(0.05)
    with trio.fail_after(10):
        while not server.reports:
            await trio.sleep(0.02)
    report = server.reports[0]
    rate, left, right = _read(report.recording)
    assert rate == 8000
    start, end = _active(right, rate)
    assert end - start == pytest.approx(0.6, abs=0.05)
    caller_start, _ = _active(left, rate)
    assert caller_start > end - 0.2  # the caller spoke after the bot, as it did
