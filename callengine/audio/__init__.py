"""Audio: PCM16 <-> numpy, G.711, WAV, streaming resampling, framing, VAD and DTMF.

numpy only (soxr for resampling; optional VAD extras); never imports trio.
"""
