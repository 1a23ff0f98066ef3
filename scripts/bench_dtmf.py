#!/usr/bin/env python3
"""Per-frame CPU cost of the in-band DTMF detector, optionally against another revision.

    python scripts/bench_dtmf.py [--baseline REV] [--check] [--rates 8000 16000] [--repeats 21]

The engine runs :class:`callengine.audio.dtmf.DtmfDetector` on every caller frame of a
provider without key events (Knowlarity). Times, per 20 ms frame handed over as PCM16
bytes, median over ``--repeats`` timings, in microseconds:

  silence   digital silence
  noise     white noise at -50 dBFS (a quiet line: the caller listening)
  speech    the loud frames of the recordings in tests/data
  tone      a 440 Hz tone at -20 dBFS (what ``callengine load`` sends on echo traffic)
  keys      key presses of 40-100 ms with gaps, in white noise 15 dB below the tones

With ``--baseline REV`` the detector of callengine/audio/dtmf.py as of REV (``git show``)
is timed alternately with this tree's in one run; the table gives old, new and old/new.
``--check`` (with ``--baseline``) first feeds both detectors a corpus (every key at three
levels and four press lengths in noise, fed in 20 ms frames and in odd byte sizes; the
speech recordings; noise; single tones; twisted pairs) and counts the presses whose digit
or start differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import callengine.audio.dtmf as dtmf_new  # noqa: E402
from bench_vad import frames_of, load_revision, median_alternately, streams, table_cells  # noqa: E402
from callengine.audio.generate import white_noise  # noqa: E402

FRAME_MS = 20


def cases(rate: int) -> dict[str, list[bytes]]:
    from tests.audio.test_dtmf import press_train

    vad_streams = streams(rate)
    t = np.arange(6 * rate) / rate
    tone = (32767 * 10 ** (-20 / 20) * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    keys, _ = press_train("0123456789*#ABCD" * 2, rate, 0.06, -15.0, seed=7)
    return {
        "silence": vad_streams["silence"],
        "noise": frames_of(white_noise(6.0, rate, -50.0, seed=5), rate),
        "speech": vad_streams["speech"],
        "tone": frames_of(tone, rate),
        "keys": frames_of(keys, rate),
    }


def corpus(rate: int) -> list[np.ndarray]:
    from tests.audio.test_dtmf import SPEECH, press_train, speech

    audios = []
    for level in (-25.0, -15.0, -5.0):
        for ms in (30, 40, 50, 100):
            audios.append(press_train("0123456789*#ABCD", rate, ms / 1000, level, seed=int(ms - level))[0])
    audios += [speech(name, rate) for name in SPEECH]
    audios.append(white_noise(5.0, rate, -20.0, seed=11))
    t = np.arange(rate) / rate
    for f in dtmf_new.ROW_FREQS + dtmf_new.COL_FREQS:
        audios.append((3000 * np.sin(2 * np.pi * f * t)).astype(np.int16))
    for twist in (-12.0, -6.0, 6.0, 10.0):
        audios.append(np.concatenate([dtmf_new.dtmf_tone(d, 0.08, rate, -12.0, twist) for d in "159D"]))
    return audios


def feeds(x: np.ndarray, rate: int) -> list[list[bytes]]:
    """The same audio as 20 ms frames and as odd byte sizes (samples split in two)."""
    b = x.astype("<i2").tobytes()
    n = 2 * rate * FRAME_MS // 1000
    odd, i, j, sizes = [], 0, 0, (321, 1, 45, 639, 3)
    while i < len(b):
        odd.append(b[i : i + sizes[j % len(sizes)]])
        i += sizes[j % len(sizes)]
        j += 1
    return [[b[k : k + n] for k in range(0, len(b), n)], odd]


def check(dtmf_old, rates: list[int]) -> None:
    presses = differ = 0
    for rate in rates:
        for audio in corpus(rate):
            for chunks in feeds(audio, rate):
                old, new = dtmf_old.DtmfDetector(rate), dtmf_new.DtmfDetector(rate)
                a = [(k.digit, k.start) for c in chunks for k in old.process(c)]
                b = [(k.digit, k.start) for c in chunks for k in new.process(c)]
                presses += len(a)
                differ += a != b
    print(f"presses found by the old detector on the corpus ({', '.join(map(str, rates))} Hz, two chunkings): "
          f"{presses}; feeds whose presses differ: {differ}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with (e.g. HEAD, main)")
    parser.add_argument("--check", action="store_true", help="with --baseline: compare the presses on a corpus first")
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    if args.check and not args.baseline:
        parser.error("--check compares with the --baseline revision")
    impls = {"new": dtmf_new}
    if args.baseline:
        old = load_revision(args.baseline, "callengine/audio/dtmf.py", "callengine.audio._dtmf_baseline", "callengine.audio")
        impls = {"old": old, **impls}
        if args.check:
            check(old, args.rates)
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, {args.repeats} repeats, us per {FRAME_MS} ms frame (median)")
    if args.baseline:
        print(f"old = {args.baseline}, new = this tree")
    for rate in args.rates:
        print(f"{rate} Hz  " + "".join(f"{k:>9}" for k in impls) + ("    ratio" if args.baseline else ""))
        for case, frames in cases(rate).items():
            fns = {k: m.DtmfDetector(rate).process for k, m in impls.items()}
            print(f"{case:<9}" + table_cells(median_alternately(fns, frames, args.repeats)))

if __name__ == "__main__":
    main()
