"""Print how each voice activity detector does on real speech in noise.

    python scripts/vad_report.py [--rates 8000 16000] [--detectors energy webrtc silero]

Uses the corpus and scoring of tests/audio/test_vad.py (its docstring describes the ground
truth): 20 utterance onsets from the recordings in tests/data, each after a 0.5-1.0 s
pause, mixed with white, pink and babble noise at 20, 10, 5 and 0 dB SNR, fed to a
SpeechSegmenter (min_speech 60 ms, hang-over 300 ms) in 20 ms chunks.

Columns, speech in noise:
  found      onsets with a SpeechStart within 100 ms of the truth onset
  onset ms   median of (SpeechStart.at_sample - truth): how late the detector sees speech
  decide ms  median of (decided_at_sample - truth): includes the 60 ms onset debounce
  FA fr/min  speech frames during pauses, per minute of pause
  FA st/min  SpeechStarts during pauses, per minute of pause
Noise only (levels -50, -20, -65, -35 dBFS, 5 s each, counted outside 0.3 s after the
start and each step up):
  FA fr/min, FA st/min as above; in speech: share of that time inside a speech segment;
  adapt ms: latest speech frame after the start or a step up (">300": still speech then).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callengine.audio.vad import VAD_NAMES, make_vad  # noqa: E402
from tests.audio.test_vad import (  # noqa: E402
    ADAPT_S,
    build_corpus,
    noise_steps,
    noisy_corpus,
    run_segmenter,
    score_noise_only,
    score_onsets,
)

SNRS = (20, 10, 5, 0)
NOISES = ("white", "pink", "babble")
NOISE_ONLY = ("white", "pink", "brown", "babble")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000])
    parser.add_argument("--detectors", nargs="+", default=list(VAD_NAMES), choices=VAD_NAMES)
    args = parser.parse_args()

    detectors = []
    for name in args.detectors:
        try:
            make_vad(name, 8000)
        except ImportError as exc:
            print(f"skipping {name}: {exc}")
            continue
        detectors.append(name)

    t0 = time.perf_counter()
    corpus = build_corpus(8000)
    print(f"corpus: {len(corpus.onsets)} onsets, {len(corpus.clean) / 8000:.0f} s per condition\n")
    print("speech in noise")
    print(f"{'detector':8} {'rate':>5} {'noise':6} {'SNR':>4}  {'found':>7} {'onset ms':>8} {'decide ms':>9} {'FA fr/min':>9} {'FA st/min':>9}")
    for name in detectors:
        for rate in args.rates:
            for kind in NOISES:
                for snr in SNRS:
                    audio, corpus = noisy_corpus(rate, kind, snr)
                    frames, events = run_segmenter(make_vad(name, rate), audio)
                    s = score_onsets(frames, events, corpus)
                    print(
                        f"{name:8} {rate:5} {kind:6} {snr:4}  {s.found:3}/{s.total:<3} {_median(s.onset_errors_ms):>8}"
                        f" {_median(s.decision_ms):>9} {s.false_frames_per_min:9.1f} {s.false_starts_per_min:9.1f}"
                    )
    print("\nnoise only (level steps)")
    print(f"{'detector':8} {'rate':>5} {'noise':6}  {'FA fr/min':>9} {'FA st/min':>9} {'in speech':>9} {'adapt ms':>8}")
    for name in detectors:
        for rate in args.rates:
            for kind in NOISE_ONLY:
                audio, ups = noise_steps(kind, rate)
                s = score_noise_only(make_vad(name, rate), audio, ups)
                adapt = f"{s.adapt_ms:.0f}" if s.adapt_ms < 1000 * ADAPT_S else f">{1000 * ADAPT_S:.0f}"
                print(
                    f"{name:8} {rate:5} {kind:6}  {s.false_frames_per_min:9.1f} {s.false_starts_per_min:9.1f}"
                    f" {s.in_speech_fraction:9.0%} {adapt:>8}"
                )
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
