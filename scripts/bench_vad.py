#!/usr/bin/env python3
"""Per-frame CPU cost of the default voice activity path, optionally against another revision.

    python scripts/bench_vad.py [--baseline REV] [--check] [--rates 8000 16000] [--repeats 21] [--dtmf]

Times, per 20 ms frame handed over as PCM16 bytes (what the reader gets from the codec):

  energy/speech   EnergyVad.process on real speech (the loud frames of tests/data)
  energy/noise    EnergyVad.process on white noise at -50 dBFS (a quiet line)
  energy/silence  EnergyVad.process on digital silence
  segmenter       SpeechSegmenter.process on the recordings (phrases and pauses) mixed
                  with white noise at 20 dB SNR
  analyzer        callengine.call.bargein.Analyzer.process, as the reader calls it, on the
                  same stream (the bot is not audible: no barge-in; DTMF detector only with
                  --dtmf)

Each case cycles through a few hundred consecutive frames, so adaptive state moves as on a
call. Figures are medians over ``--repeats`` timings, in microseconds per frame.

With ``--baseline REV`` the same cases run against callengine/audio/vad.py and
callengine/call/bargein.py as of REV (``git show``; loaded as separate modules, the rest of
the package is this tree's), old and new timed alternately in one run; the table gives old,
new and old/new. Without it, only this tree is timed.

``--check`` (with ``--baseline``) first runs both EnergyVads over the corpus of
tests/audio/test_vad.py (the clean corpus, white, pink and babble noise at 20, 10, 5 and 0 dB
SNR, and the noise-only level steps, at each rate), fed one 20 ms frame at a time both as
bytes and as int16 arrays, and counts the frames whose verdict (or start, end) differs and
those whose score is not bit-identical.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import trio  # noqa: E402

import callengine.audio.vad as vad_new  # noqa: E402
import callengine.call.bargein as bargein_new  # noqa: E402
from callengine.audio.dtmf import DtmfDetector  # noqa: E402
from callengine.audio.generate import mix_at_snr, white_noise  # noqa: E402
from callengine.audio.wav import read_wav  # noqa: E402
from callengine.call.bargein import BargeInControl  # noqa: E402
from callengine.call.causes import Counters  # noqa: E402
from callengine.call.inbox import Inbox  # noqa: E402

RECORDINGS = ("vm-tmpexists.wav", "privacy-prompt.wav", "vm-forward-multiple.wav")
FRAME_MS = 20


def load_revision(rev: str, path: str, name: str, package: str, swap: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """Module ``path`` as of git revision ``rev``, under the name ``name``; relative imports
    resolve in ``package`` (this tree), with ``swap`` standing in for some modules."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    module.__file__ = f"{rev}:{path}"
    saved = {k: sys.modules.get(k) for k in swap or {}}
    sys.modules[name] = module
    sys.modules.update(swap or {})
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def frames_of(x: np.ndarray, rate: int) -> list[bytes]:
    n = rate * FRAME_MS // 1000
    return [x[i : i + n].astype("<i2").tobytes() for i in range(0, len(x) - n + 1, n)]


def streams(rate: int) -> dict[str, list[bytes]]:
    speech = np.concatenate([np.frombuffer(read_wav(ROOT / "tests" / "data" / f).pcm, dtype="<i2") for f in RECORDINGS])
    if rate != 8000:
        import soxr

        speech = np.clip(np.rint(soxr.resample(speech.astype(np.float64), 8000, rate)), -32768, 32767).astype(np.int16)
    n = rate * FRAME_MS // 1000
    m = len(speech) // n
    f = speech[: m * n].astype(np.float64).reshape(m, n) / 32768.0
    loud = speech[: m * n].reshape(m, n)[10 * np.log10(np.mean(f * f, axis=1) + 1e-12) > -35.0]
    call = mix_at_snr(speech, white_noise(len(speech) / rate, rate, -40.0, seed=3), 20.0)
    return {
        "speech": frames_of(loud.reshape(-1)[: 300 * n], rate),
        "noise": frames_of(white_noise(6.0, rate, -50.0, seed=5), rate),
        "silence": frames_of(np.zeros(300 * n, dtype=np.int16), rate),
        "call": frames_of(call[: 600 * n], rate),
    }


def make_case(case: str, vad: types.ModuleType, bargein: types.ModuleType, rate: int, dtmf: bool):
    """A callable that processes one frame, for ``case``, built from the given modules."""
    if case.startswith("energy/"):
        return vad.EnergyVad(rate).process
    segmenter = vad.SpeechSegmenter(vad.EnergyVad(rate))
    if case == "segmenter":
        return segmenter.process
    inbox: Inbox = Inbox(10.0)
    counters = Counters()

    async def request(req):  # never called: the bot is not audible
        return req

    control = BargeInControl(request, inbox, counters, "bench")
    analyzer = bargein.Analyzer(
        segmenter,
        DtmfDetector(sample_rate=rate) if dtmf else None,
        wire_rate=rate,
        min_speech_s=0.2,
        inbox=inbox,
        counters=counters,
        bot_audible=lambda: False,
        barge_in_enabled=lambda: True,
        control=control,
    )

    def one(pcm: bytes) -> None:
        analyzer.process(pcm, rate)
        inbox._events.clear()  # nobody reads them here

    return one


def time_per_frame(fn, frames: list[bytes]) -> float:
    t0 = time.perf_counter()
    for pcm in frames:
        fn(pcm)
    return (time.perf_counter() - t0) / len(frames) * 1e6


def check_verdicts(vad_old: types.ModuleType, rates: list[int]) -> None:
    from tests.audio.test_vad import build_corpus, noise_steps, noisy_corpus

    total = differ = inexact = 0
    worst = 0.0
    for rate in rates:
        audios = [build_corpus(rate).clean]
        audios += [noisy_corpus(rate, k, snr)[0] for k in ("white", "pink", "babble") for snr in (20, 10, 5, 0)]
        audios += [noise_steps(k, rate)[0] for k in ("white", "pink", "brown", "babble")]
        n = rate * FRAME_MS // 1000
        for audio in audios:
            for as_bytes in (True, False):
                old, new = vad_old.EnergyVad(rate), vad_new.EnergyVad(rate)
                for i in range(0, len(audio) - n + 1, n):
                    chunk = audio[i : i + n]
                    payload = chunk.astype("<i2").tobytes() if as_bytes else chunk
                    for a, b in zip(old.process(payload), new.process(payload), strict=True):
                        total += 1
                        differ += (a.start, a.end, a.is_speech) != (b.start, b.end, b.is_speech)
                        if a.score != b.score:
                            inexact += 1
                            worst = max(worst, abs(a.score - b.score))
    print(f"verdicts on the test corpus ({', '.join(map(str, rates))} Hz, bytes and arrays): {total} frames, "
          f"{differ} verdicts differ, {inexact} scores not bit-identical (largest difference {worst:.3g})")


async def run(args: argparse.Namespace) -> None:
    impls = {"new": (vad_new, bargein_new)}
    if args.baseline:
        vad_old = load_revision(args.baseline, "callengine/audio/vad.py", "callengine.audio._vad_baseline", "callengine.audio")
        bargein_old = load_revision(
            args.baseline,
            "callengine/call/bargein.py",
            "callengine.call._bargein_baseline",
            "callengine.call",
            swap={"callengine.audio.vad": vad_old},
        )
        impls = {"old": (vad_old, bargein_old), **impls}
        if args.check:
            check_verdicts(vad_old, args.rates)
    cases = ["energy/speech", "energy/noise", "energy/silence", "segmenter", "analyzer"]
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, {args.repeats} repeats, us per {FRAME_MS} ms frame (median)")
    if args.baseline:
        print(f"old = {args.baseline}, new = this tree")
    for rate in args.rates:
        data = streams(rate)
        header = f"{rate} Hz  " + "".join(f"{k:>9}" for k in impls) + ("    ratio" if args.baseline else "")
        print(header)
        for case in cases:
            frames = data[case.split("/")[1] if "/" in case else "call"]
            fns = {k: make_case(case, v, b, rate, args.dtmf) for k, (v, b) in impls.items()}
            print(f"{case:<15}" + table_cells(median_alternately(fns, frames, args.repeats)))


def median_alternately(fns: dict[str, Callable[[bytes], object]], frames: list[bytes], repeats: int) -> dict[str, float]:
    """Median microseconds per frame of each callable over ``repeats`` timings, after a
    warm-up (caches, adaptive state), taking turns so drift in machine load hits all."""
    for fn in fns.values():
        time_per_frame(fn, frames)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for _ in range(repeats):
        for k in order:
            samples[k].append(time_per_frame(fns[k], frames))
        order.reverse()
    return {k: statistics.median(v) for k, v in samples.items()}


def table_cells(med: dict[str, float]) -> str:
    """The medians as table cells, with old/new when there is an "old"."""
    line = "".join(f"{v:9.2f}" for v in med.values())
    return line + (f"{med['old'] / med['new']:8.2f}x" if "old" in med else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with (e.g. HEAD, main)")
    parser.add_argument("--check", action="store_true", help="with --baseline: compare the verdicts on the test corpus first")
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--dtmf", action="store_true", help="run the in-band DTMF detector in the analyzer too")
    args = parser.parse_args()
    if args.check and not args.baseline:
        parser.error("--check compares with the --baseline revision")
    trio.run(run, args)


if __name__ == "__main__":
    main()
