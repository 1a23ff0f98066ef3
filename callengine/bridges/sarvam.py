"""Sarvam AI speech to text and text to speech over its REST API, and the bundled
``cascade-sarvam`` agent (Sarvam for the ears and the voice, any OpenAI-compatible chat
endpoint for the words).

Followed: Sarvam's API reference at docs.sarvam.ai as published in 2026 (pages "last
updated July 15, 2026"): authentication by the ``api-subscription-key`` header.

* Speech to text, REST (``POST {base}/speech-to-text``, ``multipart/form-data``, up to
  30 s of audio): the form fields ``file`` (a WAV: here PCM16 mono at the call's rate),
  ``model`` (``saaras:v3``), ``mode`` (``transcribe``) and ``language_code`` (``unknown``
  lets it detect); the JSON answer's ``transcript``. One request per utterance, at its end
  (the engine's VAD cuts the utterances).
* Text to speech, REST (``POST {base}/text-to-speech``, JSON): ``text``,
  ``target_language_code``, ``speaker``, ``model`` (``bulbul:v3``), ``speech_sample_rate``;
  the answer's ``audios`` is a list of base64 WAV files. One request per sentence, so the
  first sentence plays while the next is synthesized.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import wave
from typing import Any, AsyncIterator

import httpx

from ..call.api import Call
from .cascade import CascadeAgent, ChatModel, SpeechToText, TextToSpeech, VendorError
from .chat import OpenAIChat

__all__ = ["SarvamSTT", "SarvamTTS", "SarvamCascadeAgent", "wav_bytes", "wav_pcm"]

DEFAULT_URL = "https://api.sarvam.ai"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """PCM16 mono as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def wav_pcm(data: bytes) -> tuple[bytes, int]:
    """(PCM16 mono, rate) of a WAV file; ValueError if it is not that."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(f"not PCM16 mono: {w.getnchannels()} channel(s), {8 * w.getsampwidth()} bits")
            return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from None


async def _post(client: httpx.AsyncClient, what: str, url: str, **kwargs: Any) -> Any:
    try:
        response = await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise VendorError(f"{what}_unreachable", f"Sarvam {what} at {url}: {exc!r}") from None
    if response.status_code != 200:
        raise VendorError(f"{what}_http_{response.status_code}", f"Sarvam {what} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise VendorError(f"{what}_bad_answer", f"Sarvam {what} answered no JSON: {response.text[:80]!r}") from None


class SarvamSTT(SpeechToText):
    def __init__(self, client: httpx.AsyncClient, *, api_key: str, base_url: str = DEFAULT_URL, model: str = "saaras:v3", language: str = "unknown", mode: str = "transcribe") -> None:
        self.client = client
        self.api_key = api_key
        self.url = base_url.rstrip("/") + "/speech-to-text"
        self.model, self.language, self.mode = model, language, mode

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        files = {"file": ("utterance.wav", wav_bytes(pcm, rate), "audio/wav")}
        data = {"model": self.model, "mode": self.mode, "language_code": self.language}
        answer = await _post(self.client, "stt", self.url, files=files, data=data, headers={"api-subscription-key": self.api_key})
        transcript = answer.get("transcript") if isinstance(answer, dict) else None
        if not isinstance(transcript, str):
            raise VendorError("stt_bad_answer", f"Sarvam speech-to-text answered no transcript: {str(answer)[:80]}")
        return transcript


class SarvamTTS(TextToSpeech):
    def __init__(self, client: httpx.AsyncClient, *, api_key: str, base_url: str = DEFAULT_URL, model: str = "bulbul:v3", speaker: str = "shubh", language: str = "en-IN", rate: int = 16000) -> None:
        self.client = client
        self.api_key = api_key
        self.url = base_url.rstrip("/") + "/text-to-speech"
        self.model, self.speaker, self.language, self.rate = model, speaker, language, rate

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        body = {"text": text, "target_language_code": self.language, "speaker": self.speaker, "model": self.model, "speech_sample_rate": self.rate}
        answer = await _post(self.client, "tts", self.url, json=body, headers={"api-subscription-key": self.api_key})
        audios = answer.get("audios") if isinstance(answer, dict) else None
        if not isinstance(audios, list) or not all(isinstance(a, str) for a in audios):
            raise VendorError("tts_bad_answer", f"Sarvam text-to-speech answered no audios: {str(answer)[:80]}")
        for b64 in audios:
            try:
                pcm, rate = wav_pcm(base64.b64decode(b64, validate=True))
            except (ValueError, binascii.Error) as exc:
                raise VendorError("tts_bad_audio", f"Sarvam text-to-speech audio: {exc}") from None
            if rate != self.rate:
                raise VendorError("tts_bad_audio", f"Sarvam text-to-speech answered {rate} Hz, asked for {self.rate} Hz")
            yield pcm


class SarvamCascadeAgent(CascadeAgent):
    """The bundled ``cascade-sarvam`` agent. From the environment: ``SARVAM_API_KEY``,
    ``CALLENGINE_SARVAM_URL`` (``https://api.sarvam.ai``), ``CALLENGINE_SARVAM_LANGUAGE``
    (TTS language, ``en-IN``), ``CALLENGINE_SARVAM_SPEAKER`` (``shubh``); the chat model:
    ``CALLENGINE_CHAT_KEY`` or ``OPENAI_API_KEY``, ``CALLENGINE_CHAT_URL``
    (``https://api.openai.com/v1``), ``CALLENGINE_CHAT_MODEL`` (``gpt-4o-mini``);
    ``CALLENGINE_CASCADE_INSTRUCTIONS``, ``CALLENGINE_CASCADE_GREETING``. A missing key is a
    ValueError at construction."""

    def __init__(self, *, sarvam_key: str | None = None, chat_key: str | None = None, timeout: float = 15.0) -> None:
        self.sarvam_key = sarvam_key or _env("SARVAM_API_KEY")
        self.chat_key = chat_key or _env("CALLENGINE_CHAT_KEY") or _env("OPENAI_API_KEY")
        if not self.sarvam_key:
            raise ValueError("SarvamCascadeAgent needs a Sarvam API key: set SARVAM_API_KEY")
        if not self.chat_key:
            raise ValueError("SarvamCascadeAgent needs a chat API key: set CALLENGINE_CHAT_KEY or OPENAI_API_KEY")
        self.sarvam_url = _env("CALLENGINE_SARVAM_URL", DEFAULT_URL) or DEFAULT_URL
        self.language = _env("CALLENGINE_SARVAM_LANGUAGE", "en-IN") or "en-IN"
        self.speaker = _env("CALLENGINE_SARVAM_SPEAKER", "shubh") or "shubh"
        self.chat_url = _env("CALLENGINE_CHAT_URL", "https://api.openai.com/v1") or ""
        self.chat_model = _env("CALLENGINE_CHAT_MODEL", "gpt-4o-mini") or ""
        for name, url in (("CALLENGINE_SARVAM_URL", self.sarvam_url), ("CALLENGINE_CHAT_URL", self.chat_url)):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http:// or https:// URL, not {url!r}")
        self.timeout = timeout
        super().__init__(SpeechToText(), ChatModel(), TextToSpeech(), instructions=_env("CALLENGINE_CASCADE_INSTRUCTIONS"), greeting=_env("CALLENGINE_CASCADE_GREETING"))

    @contextlib.asynccontextmanager
    async def vendors(self, call: Call) -> AsyncIterator[tuple[SpeechToText, ChatModel, TextToSpeech]]:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0))
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            assert self.sarvam_key and self.chat_key
            stt = SarvamSTT(client, api_key=self.sarvam_key, base_url=self.sarvam_url)
            tts = SarvamTTS(client, api_key=self.sarvam_key, base_url=self.sarvam_url, language=self.language, speaker=self.speaker)
            chat = OpenAIChat(client, api_key=self.chat_key, base_url=self.chat_url, model=self.chat_model)
            yield stt, chat, tts
