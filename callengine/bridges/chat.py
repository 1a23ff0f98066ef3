"""A :class:`~callengine.bridges.cascade.ChatModel` for any OpenAI-compatible endpoint.

Followed: the OpenAI Chat Completions API reference (``POST /v1/chat/completions`` with
``stream: true``): the answer is server-sent events, one ``data: {json}`` line per
``chat.completion.chunk`` whose ``choices[0].delta.content`` is the next piece of text,
then ``data: [DONE]``. Many vendors serve the same shape (a local vLLM or Ollama, Sarvam's
own chat, Groq, Together...): point ``CALLENGINE_CHAT_URL`` at their ``/v1`` base.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Sequence

import httpx

from .cascade import ChatModel, VendorError

__all__ = ["OpenAIChat"]


class OpenAIChat(ChatModel):
    """Streams ``{base_url}/chat/completions``; ``Authorization: Bearer {api_key}``."""

    def __init__(self, client: httpx.AsyncClient, *, api_key: str, base_url: str = "https://api.openai.com/v1", model: str = "gpt-4o-mini", temperature: float | None = None) -> None:
        self.client = client
        self.api_key = api_key
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature

    async def stream(self, messages: Sequence[dict[str, Any]]) -> AsyncIterator[str]:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream"}
        try:
            async with self.client.stream("POST", self.url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    detail = (await response.aread())[:200].decode("utf-8", "replace")
                    raise VendorError(f"chat_http_{response.status_code}", f"chat completions answered HTTP {response.status_code}: {detail}")
                done = False
                async for line in response.aiter_lines():  # read to its end: httpx's generators are then exhausted
                    if done or not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, event: lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    try:
                        chunk = json.loads(data)
                        choices = chunk.get("choices") or []
                        delta = (choices[0].get("delta") or {}).get("content") if choices else None
                    except (ValueError, AttributeError, IndexError, TypeError):
                        raise VendorError("chat_bad_chunk", f"not a chat.completion.chunk: {data[:80]!r}") from None
                    if isinstance(delta, str) and delta:
                        yield delta
        except httpx.HTTPError as exc:
            raise VendorError("chat_unreachable", f"chat completions at {self.url}: {exc!r}") from None
