"""Fake Sarvam AI (speech to text, text to speech) and OpenAI-compatible chat servers:
one real HTTP/1.1 server on 127.0.0.1 (trio + h11) serving the three endpoints::

    fake = FakeVendors(transcripts=["hello"], replies=["Hi there. How can I help?"])
    await nursery.start(fake.serve)      # fake.url: CALLENGINE_SARVAM_URL, fake.chat_url

It checks what the real APIs check: the ``api-subscription-key`` header (Sarvam), the
``Authorization: Bearer`` header (chat), the request shapes (a multipart ``file`` that is
a PCM16 mono WAV and a ``model``; a JSON ``text`` with ``target_language_code``,
``speaker``, ``model``, ``speech_sample_rate``; ``messages`` with ``stream: true``), and
answers as the documented APIs do: a ``transcript``; ``audios`` (base64 WAV) as long as
``ms_per_char`` per character of text; server-sent ``chat.completion.chunk`` deltas and
``data: [DONE]``. ``fail`` maps a path to how many of its next requests answer HTTP 500.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import functools
import json
from typing import Any

import h11
import trio

from ..audio.generate import tone
from ..bridges.sarvam import wav_bytes, wav_pcm
from ._http import read_request

__all__ = ["FakeVendors"]

STT, TTS, CHAT = "/speech-to-text", "/text-to-speech", "/v1/chat/completions"


class FakeVendors:
    def __init__(self, *, transcripts: list[str] | None = None, replies: list[str] | None = None, api_key: str = "sarvam-test-key", chat_key: str = "chat-test-key", ms_per_char: float = 60.0, delta_s: float = 0.01) -> None:
        self.transcripts = list(transcripts or ["hello"])
        self.replies = list(replies or ["Hello there. How can I help you today?"])
        self.api_key, self.chat_key = api_key, chat_key
        self.ms_per_char, self.delta_s = ms_per_char, delta_s
        self.fail: dict[str, int] = {}
        self.stt: list[dict[str, Any]] = []  # each request: its form fields, the WAV's rate and samples
        self.tts: list[dict[str, Any]] = []
        self.chat: list[dict[str, Any]] = []
        self.chat_cancelled = 0  # SSE streams the client closed before their end
        self.problems: list[str] = []  # bad requests (answered 4xx)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return self.url + "/v1"

    async def serve(self, *, task_status: trio.TaskStatus["FakeVendors"] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await read_request(conn, stream)
                if request is None:
                    return
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                path = request.target.decode().split("?", 1)[0]
                await self._answer(conn, stream, request.method.decode(), path, headers, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        async def reply(status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            hs = [("content-type", "application/json"), ("content-length", str(len(data)))]
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=hs)) or b"")
            await stream.send_all((conn.send(h11.Data(data=data)) or b"") + (conn.send(h11.EndOfMessage()) or b""))

        async def bad(status: int, problem: str) -> None:
            self.problems.append(f"{path}: {problem}")
            await reply(status, {"error": {"message": problem, "code": "invalid_request_error"}})

        if method != "POST" or path not in (STT, TTS, CHAT):
            return await bad(404, f"no route for {method} {path}")
        if path == CHAT:
            if headers.get("authorization") != f"Bearer {self.chat_key}":
                return await bad(401, "Incorrect API key provided")
        elif headers.get("api-subscription-key") != self.api_key:
            return await bad(403, "Invalid API subscription key")
        if self.fail.get(path):
            self.fail[path] -= 1
            return await reply(500, {"error": {"message": "Internal Server Error", "code": "internal_server_error"}})
        if path == STT:
            form = _multipart(headers.get("content-type", ""), body)
            if form is None or "file" not in form or "model" not in form:
                return await bad(400, "expected multipart/form-data with file and model")
            try:
                pcm, rate = wav_pcm(form["file"])
            except ValueError as exc:
                return await bad(400, f"file: {exc}")
            self.stt.append({**{k: v.decode() for k, v in form.items() if k != "file"}, "rate": rate, "samples": len(pcm) // 2})
            text = self.transcripts.pop(0) if self.transcripts else ""
            return await reply(200, {"request_id": f"stt-{len(self.stt)}", "transcript": text, "language_code": "en-IN"})
        try:
            request = json.loads(body)
        except ValueError:
            return await bad(400, "body is not JSON")
        if path == TTS:
            need = ("text", "target_language_code", "speaker", "model", "speech_sample_rate")
            if not isinstance(request, dict) or any(k not in request for k in need) or not isinstance(request["text"], str):
                return await bad(400, f"expected JSON with {', '.join(need)}")
            rate = int(request["speech_sample_rate"])
            self.tts.append(request)
            pcm = tone(500, len(request["text"]) * self.ms_per_char / 1000, rate, dbfs=-14).astype("<i2").tobytes()
            return await reply(200, {"request_id": f"tts-{len(self.tts)}", "audios": [base64.b64encode(wav_bytes(pcm, rate)).decode()]})
        if not isinstance(request, dict) or request.get("stream") is not True or not isinstance(request.get("messages"), list) or not request.get("model"):
            return await bad(400, "expected JSON with model, messages and stream: true")
        self.chat.append(request)
        await self._stream_chat(conn, stream, self.replies.pop(0) if self.replies else "Okay.")

    async def _stream_chat(self, conn: h11.Connection, stream: trio.SocketStream, text: str) -> None:
        hs = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]  # chunked
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=hs)) or b"")
        words = text.split(" ")
        try:
            for i, word in enumerate(words):
                chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}]}
                await stream.send_all(conn.send(h11.Data(data=f"data: {json.dumps(chunk)}\n\n".encode())) or b"")
                await trio.sleep(self.delta_s)
            await stream.send_all(conn.send(h11.Data(data=b"data: [DONE]\n\n")) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.chat_cancelled += 1
            raise


def _multipart(content_type: str, body: bytes) -> dict[str, bytes] | None:
    if not content_type.startswith("multipart/form-data"):
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    out: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            out[name] = payload
    return out
