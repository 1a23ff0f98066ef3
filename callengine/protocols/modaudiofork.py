"""mod_audio_fork's side of the stream (Knowlarity, legacy Awaaz): the engine's
``playAudio`` clips and instructions, and the limits they must fit. Sans-IO, no trio.

Each ``playAudio`` carries a whole WAV file, base64, in one JSON text message; hang-up
and transfer are ``playAudio`` messages with ``audioContent`` "None" and a
``textContent`` instruction (``asr_disconnect=true[,parameter1=TARGET]``).
"""

from __future__ import annotations

from ..audio.wav import WavError, parse_wav
from ..errors import CloseCode, LocalProtocolError, RemoteProtocolError
from ..events import Event, PlayAudio
from ._common import b64decode, dumps, parse_sample_rate
from .knowlarity_metadata import DEFAULT_RATE

__all__ = [
    "MOD_AUDIO_FORK_MAX_MESSAGE",
    "MAX_CLIP_PCM_BYTES",
    "play_message",
    "parse_text_content",
    "decode_clip",
    "check_transfer_target",
]

#: mod_audio_fork's ``MAX_RECV_BUF_SIZE``: text messages longer than this are dropped.
MOD_AUDIO_FORK_MAX_MESSAGE = 65 * 1024 * 10
# Keep a margin under the limit for the JSON envelope and any framing surprises.
_FRAME_BUDGET = MOD_AUDIO_FORK_MAX_MESSAGE - 1024
_PLAY_ENVELOPE = len('{"type":"playAudio","data":{"audioContentType":"wave","audioContent":""}}')
#: The most PCM one playAudio message may carry: its base64 WAV still fits the budget.
MAX_CLIP_PCM_BYTES = ((_FRAME_BUDGET - _PLAY_ENVELOPE) // 4 * 3 - 44) // 2 * 2


def play_message(audio_b64: str, text_content: str | None = None) -> str:
    data: dict[str, str] = {"audioContentType": "wave", "audioContent": audio_b64}
    if text_content is not None:
        data["textContent"] = text_content
    return dumps({"type": "playAudio", "data": data})


def parse_text_content(text: str) -> dict[str, str]:
    """``"asr_disconnect=true,parameter1=default"`` -> {"asr_disconnect": "true", ...}."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def decode_clip(data: dict) -> list[Event]:
    """The audio of one playAudio: a WAV file ("wave"/"wav") or headerless PCM ("raw")."""
    content_type = data.get("audioContentType")
    raw = b64decode(data.get("audioContent"), what="knowlarity playAudio audioContent")
    if content_type in ("wave", "wav"):
        try:
            wav = parse_wav(raw)
        except WavError as exc:
            raise RemoteProtocolError(f"knowlarity: playAudio audioContent is not a WAV file: {exc}", CloseCode.INVALID_PAYLOAD) from exc
        pcm, rate = wav.pcm, wav.sample_rate
    elif content_type == "raw":
        if data.get("sampleRate") in (None, ""):
            raise RemoteProtocolError("knowlarity: raw playAudio needs a sampleRate", CloseCode.INVALID_PAYLOAD)
        rate = parse_sample_rate(data.get("sampleRate"), DEFAULT_RATE, what="knowlarity playAudio sampleRate")
        if len(raw) % 2:
            raise RemoteProtocolError(
                f"knowlarity: raw playAudio is {len(raw)} bytes, not whole 16-bit samples", CloseCode.INVALID_PAYLOAD
            )
        pcm = raw
    else:
        raise RemoteProtocolError(
            f"knowlarity: unsupported audioContentType {content_type!r:.40} (expected wave, wav or raw)",
            CloseCode.INVALID_PAYLOAD,
        )
    return [PlayAudio(pcm=pcm, sample_rate=rate)] if pcm else []


def check_transfer_target(target: object) -> None:
    if not isinstance(target, str) or not target:
        raise LocalProtocolError(f"knowlarity: transfer target must be a non-empty string, got {target!r}")
    bad = sorted({c for c in target if c in ",=" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise LocalProtocolError(
            f"knowlarity: transfer target {target!r} contains {bad!r}; textContent is a comma-separated "
            "key=value list, so commas, '=' and control characters cannot be carried"
        )
