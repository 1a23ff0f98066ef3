"""Audio: PCM16 <-> numpy, G.711, WAV, streaming resampling, framing, VAD and DTMF.

numpy only (soxr for resampling; optional VAD extras); never imports trio.
"""

from .dtmf import DtmfDetector, DtmfKey, dtmf_sequence, dtmf_tone
from .framer import Framer
from .g711 import alaw2lin, alaw_decode, alaw_encode, lin2alaw, lin2ulaw, ulaw2lin, ulaw_decode, ulaw_encode
from .pcm import as_pcm16, dbfs, float32_to_pcm16, int16_to_pcm16, pcm16_to_float32, pcm16_to_int16, to_mono
from .resample import PolyphaseResampler, StreamResampler, resample
from .vad import (
    EnergyVad,
    ResampledVad,
    SileroVad,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    VoiceActivityDetector,
    WebRtcVad,
    make_vad,
)
from .wav import Wav, WavError, build_wav, parse_wav, read_wav, wav_header

__all__ = [
    "pcm16_to_int16",
    "int16_to_pcm16",
    "pcm16_to_float32",
    "float32_to_pcm16",
    "as_pcm16",
    "to_mono",
    "dbfs",
    "ulaw_encode",
    "ulaw_decode",
    "alaw_encode",
    "alaw_decode",
    "lin2ulaw",
    "ulaw2lin",
    "lin2alaw",
    "alaw2lin",
    "Wav",
    "WavError",
    "wav_header",
    "build_wav",
    "parse_wav",
    "read_wav",
    "StreamResampler",
    "PolyphaseResampler",
    "resample",
    "Framer",
    "VoiceActivityDetector",
    "EnergyVad",
    "WebRtcVad",
    "SileroVad",
    "ResampledVad",
    "make_vad",
    "SpeechSegmenter",
    "SpeechStart",
    "SpeechEnd",
    "DtmfDetector",
    "DtmfKey",
    "dtmf_tone",
    "dtmf_sequence",
]
