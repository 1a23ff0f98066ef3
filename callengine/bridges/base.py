"""What the speech-to-speech bridges share: the model connection seam, tools, and the
bookkeeping of what the caller heard of each piece of model audio.

A bridge is an agent (``async def __call__(self, call)``) that connects one call to one
model socket. The model's audio goes into one streaming playback per model item (an OpenAI
assistant item, a Gemini turn), so that when the caller barges in, that playback's
``played_ms`` says exactly what the caller heard of that item, to the chunk.

Everything runs in the agent's task and nurseries under it, so the end of the call cancels
the model socket; every wait in teardown is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
from collections import Counter
from typing import Any, AsyncContextManager, Callable, Mapping, Sequence

import attrs
import trio

from ..audio.resample import StreamResampler
from ..call.api import Call, PlaybackWriter
from ..call.transport import Transport, TransportClosed
from ..errors import UnsupportedCommand
from ..events import BargeIn, CallerAudio, Dtmf
from .connect import Connect, ModelConnectError, websocket_connect
from .tools import BUNDLED_TOOLS, HANG_UP, TRANSFER, Tool

__all__ = ["Connect", "ModelConnectError", "SessionOver", "websocket_connect", "Tool", "HANG_UP", "TRANSFER", "BUNDLED_TOOLS", "Heard", "RealtimeBridge", "BridgeSession"]


class SessionOver(Exception):
    """The model session cannot go on (raised inside a session; the reason is logged)."""


@attrs.frozen
class Heard:
    """What the caller heard of one model item when it was cut short.

    ``item_id``: the model's id for it (an OpenAI item id, ``turn-N`` for Gemini).
    ``played_ms``: what the caller heard, by the engine's playback (exact to the chunk).
    ``generated_ms``: how much audio of it the model had sent. ``source``: ``"barge-in"``
    (the engine's VAD) or ``"model"`` (the model said the caller started talking).
    """

    item_id: str
    content_index: int
    played_ms: float
    generated_ms: float
    source: str


class _Item:
    """The audio of one model item, as it went into one streaming playback."""

    def __init__(self, item_id: str, content_index: int, response_id: str, rate: int) -> None:
        self.item_id = item_id
        self.content_index = content_index
        self.response_id = response_id
        self.rate = rate
        self.stack = contextlib.AsyncExitStack()
        self.writer: PlaybackWriter | None = None
        self.samples = 0  # received from the model
        self.open = True  # more audio may come
        self.cut = False  # interrupted: its later audio is dropped

    @property
    def generated_ms(self) -> float:
        return 1000.0 * self.samples / self.rate

    @property
    def cuttable(self) -> bool:
        """Not heard to its end: pending, or already cut short by a clear."""
        pb = self.writer.playback if self.writer is not None else None
        return pb is not None and (pb.result is None or pb.result.interrupted)

    @property
    def pending(self) -> bool:
        """Not yet heard to its end: audible, queued, or still streaming."""
        pb = self.writer.playback if self.writer is not None else None
        return pb is not None and not pb.done


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class RealtimeBridge:
    """Base of the bundled speech-to-speech agents. Subclass it to add tools::

        class Shop(OpenAIRealtimeAgent):
            extra_tools = (Tool("order_status", "Look up an order", {...}),)

            async def on_tool_call(self, call, name, args):
                if name == "order_status":
                    return {"status": "shipped"}
                return await super().on_tool_call(call, name, args)

    Settings come from the constructor, else from ``{ENV_PREFIX}URL``, ``MODEL``, ``VOICE``,
    ``INSTRUCTIONS``, ``GREETING`` and ``TOOLS`` (bundled tool names, comma-separated, or
    ``none``) in the environment. A missing API key is a ValueError at construction.
    """

    ENV_PREFIX = "CALLENGINE_REALTIME_"
    API_KEY_ENV: tuple[str, ...] = ()
    DEFAULT_URL = ""
    DEFAULT_MODEL = ""
    DEFAULT_VOICE = ""
    DEFAULT_INSTRUCTIONS = (
        "You are a friendly voice assistant on a phone call. Keep your answers short and "
        "spoken. When the caller wants to end the call, say goodbye, then call hang_up. When "
        "the caller asks for a person, call transfer."
    )
    #: tools a subclass adds to the bundled ones
    extra_tools: Sequence[Tool] = ()
    logger = logging.getLogger("callengine.bridges")

    def __init__(
        self,
        *,
        api_key: str | None = None,
        url: str | None = None,
        model: str | None = None,
        voice: str | None = None,
        instructions: str | None = None,
        greeting: str | None = None,
        tools: Sequence[Tool] | None = None,
        bundled_tools: Sequence[str] | None = None,
        transfer_target: str = "default",
        connect: Connect | None = None,
        connect_timeout: float = 10.0,
        close_timeout: float = 2.0,
    ) -> None:
        p = self.ENV_PREFIX
        key = api_key or next((v for v in (_env(n) for n in self.API_KEY_ENV) if v), None)
        if not key:
            raise ValueError(f"{type(self).__name__} needs an API key: set {' or '.join(self.API_KEY_ENV)}")
        self.api_key = key
        self.url = url or _env(p + "URL", self.DEFAULT_URL) or self.DEFAULT_URL
        self.model = model or _env(p + "MODEL", self.DEFAULT_MODEL) or self.DEFAULT_MODEL
        self.voice = voice or _env(p + "VOICE", self.DEFAULT_VOICE) or self.DEFAULT_VOICE
        self.instructions = instructions if instructions is not None else _env(p + "INSTRUCTIONS", self.DEFAULT_INSTRUCTIONS) or ""
        self.greeting = greeting if greeting is not None else _env(p + "GREETING")
        if bundled_tools is None:
            names = _env(p + "TOOLS", ",".join(BUNDLED_TOOLS)) or ""
            bundled_tools = [] if names.strip().lower() == "none" else [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in bundled_tools if n not in BUNDLED_TOOLS]
        if unknown:
            raise ValueError(f"unknown bundled tool(s) {unknown}; choose from {', '.join(BUNDLED_TOOLS)}")
        self.tools: list[Tool] = [BUNDLED_TOOLS[n] for n in bundled_tools] + list(self.extra_tools) + list(tools or ())
        self.transfer_target = transfer_target
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._connect = connect

    # --- hooks ------------------------------------------------------------------------

    async def on_tool_call(self, call: Call, name: str, args: Mapping[str, Any]) -> Any:
        """Run tool ``name``; the result (JSON-serialisable) goes back to the model.

        ``hang_up`` and ``transfer`` end the call after the audio queued so far has played
        (they do not return: the call's end cancels the agent). A transfer the provider
        cannot do (Awaaz) returns an error for the model to tell the caller."""
        if name == "hang_up":
            await call.hangup()
            return {"ok": True}
        if name == "transfer":
            target = str(args.get("target") or self.transfer_target)
            try:
                await call.transfer(target)
            except (UnsupportedCommand, ValueError) as exc:
                return {"ok": False, "error": f"cannot transfer this call: {exc}"}
            return {"ok": True}
        return {"ok": False, "error": f"no such tool: {name}"}

    async def on_interrupted(self, call: Call, heard: Heard) -> None:
        """The caller cut model item ``heard.item_id`` short after ``heard.played_ms``."""

    # --- running ----------------------------------------------------------------------

    def connection(self) -> tuple[str, list[tuple[str, str]]]:
        """The URL and headers of the model socket."""
        raise NotImplementedError

    def new_session(self, call: Call, model: Transport) -> "BridgeSession":
        raise NotImplementedError

    def _open(self, url: str, headers: Sequence[tuple[str, str]]) -> AsyncContextManager[Transport]:
        if self._connect is not None:
            return self._connect(url, headers)
        return websocket_connect(url, headers, connect_timeout=self.connect_timeout, close_timeout=self.close_timeout)

    async def __call__(self, call: Call) -> None:
        call.barge_in = True
        url, headers = self.connection()
        log = self.logger
        try:
            async with self._open(url, headers) as model:
                session = self.new_session(call, model)
                try:
                    await session.run()
                finally:
                    with trio.move_on_after(self.close_timeout, shield=True):
                        await model.aclose(1000, "call ended")
                log.info("call %s: model connection ended: %s", call.info.call_id, session.end_reason)
        except ModelConnectError as exc:
            log.error("call %s: %s; ending the call", call.info.call_id, exc)
        # returning ends the call once the queued audio has played


class BridgeSession:
    """One call's bridge: caller audio to the model, model audio to the caller."""

    #: the rate the model takes caller audio at, and the rate its audio comes at
    input_rate = 24000
    output_rate = 24000

    def __init__(self, bridge: RealtimeBridge, call: Call, model: Transport) -> None:
        self.bridge = bridge
        self.call = call
        self.model = model
        self.log = bridge.logger
        self.label = call.info.call_id
        self.items: dict[str, _Item] = {}
        self.heard: list[Heard] = []  # every interruption, in order
        self.errors: Counter[str] = Counter()  # the model's errors by code
        self.end_reason = "running"
        self._resampler = StreamResampler(call.info.sample_rate, self.input_rate, low_latency=True)
        self._nursery: trio.Nursery | None = None

    # --- to the model -----------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.model.send_message(json.dumps(message, separators=(",", ":")))

    async def send_audio(self, b64: str) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Configure the model session (before any audio)."""

    # --- the model's audio ------------------------------------------------------------

    async def play(self, item_id: str, pcm: bytes, *, content_index: int = 0, response_id: str = "", rate: int | None = None) -> None:
        """Queue a piece of item ``item_id``'s audio (PCM16 at ``rate``)."""
        item = self.items.get(item_id)
        if item is None:
            self._prune()
            item = self.items[item_id] = _Item(item_id, content_index, response_id, rate or self.output_rate)
            item.writer = await item.stack.enter_async_context(self.call.open_playback(item.rate))
        if item.cut or not item.open or not pcm:
            return
        assert item.writer is not None
        item.samples += len(pcm) // 2
        await item.writer.write(pcm)

    async def finish(self, item_id: str | None = None, response_id: str | None = None) -> None:
        """No more audio comes for this item (or every item of a response, or every item)."""
        for item in list(self.items.values()):
            if item.open and (item_id is None or item.item_id == item_id) and (response_id is None or item.response_id == response_id):
                item.open = False
                await item.stack.aclose()

    def _prune(self) -> None:
        for key, item in list(self.items.items()):
            if not item.open and not item.pending:
                del self.items[key]

    async def interrupt(self, source: str, *, cleared: bool = False) -> list[Heard]:
        """The caller talks over the model: stop its audio and find what was heard of each
        item cut short. ``cleared``: the engine's barge-in has already cleared playback."""
        pending = [item for item in self.items.values() if not item.cut and item.cuttable]
        if not pending:
            return []
        if not cleared and any(item.pending for item in pending):
            await self.call.clear()
        out = []
        for item in pending:
            if item.cut:
                continue  # an interruption that ran meanwhile took it
            item.cut = True
            pb = item.writer.playback if item.writer is not None else None
            result = pb.result if pb is not None else None
            if result is None or not result.interrupted:
                continue  # it had played to its end
            heard = Heard(item.item_id, item.content_index, result.played_ms, item.generated_ms, source)
            out.append(heard)
            self.heard.append(heard)
            self.log.info(
                "call %s: caller heard %.0f of %.0f ms of %s (%s)", self.label, heard.played_ms, heard.generated_ms, item.item_id, source
            )
        await self.finish_cut()
        return out

    async def finish_cut(self) -> None:
        for item in list(self.items.values()):
            if item.cut and item.open:
                item.open = False
                await item.stack.aclose()

    async def report_heard(self, heard: list[Heard]) -> None:
        for h in heard:
            await self.bridge.on_interrupted(self.call, h)

    def model_error(self, code: str, message: str) -> None:
        """An error the model reported: logged the first time per code, counted always."""
        self.errors[code] += 1
        if self.errors[code] == 1:
            self.log.warning("call %s: the model reported an error %s: %s", self.label, code, message)
        else:
            self.log.debug("call %s: model error %s again (%d): %s", self.label, code, self.errors[code], message)

    # --- the tasks --------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self.start()
                nursery.start_soon(self._caller_to_model)
                await self._model_to_caller()
            except TransportClosed as exc:
                self.end_reason = f"the model closed the connection (code={exc.code}, reason={exc.reason!r})"
            except SessionOver as exc:
                self.end_reason = str(exc)
            finally:
                nursery.cancel_scope.cancel()
                with trio.move_on_after(self.bridge.close_timeout, shield=True):
                    await self.finish()

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def _caller_to_model(self) -> None:
        try:
            async for event in self.call:
                if isinstance(event, CallerAudio):
                    pcm = self._resampler.process(event.pcm).astype("<i2", copy=False).tobytes()
                    if pcm:
                        await self.send_audio(base64.b64encode(pcm).decode("ascii"))
                elif isinstance(event, BargeIn):
                    await self.on_barge_in()
                elif isinstance(event, Dtmf):
                    await self.on_dtmf(event.digit)
        except TransportClosed:
            pass  # the model reader sees it too and ends the session

    async def on_barge_in(self) -> None:
        """The engine's barge-in (it has cleared playback already)."""
        await self.report_heard(await self.interrupt("barge-in", cleared=True))

    async def on_dtmf(self, digit: str) -> None:
        """A key the caller pressed (ignored by default)."""

    async def _model_to_caller(self) -> None:
        while True:
            message = await self.model.get_message()
            try:
                event = json.loads(message)
            except (ValueError, UnicodeDecodeError):
                self.model_error("bad_json", f"not JSON: {str(message)[:80]!r}")
                continue
            if not isinstance(event, dict):
                self.model_error("bad_json", f"not a JSON object: {str(message)[:80]!r}")
                continue
            await self.on_model_event(event)

    async def on_model_event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    async def run_tool(self, name: str, args_json: str | Mapping[str, Any], reply: Callable[[Any], Any]) -> None:
        """Run a tool in its own task, and send its result with ``reply(result)``."""
        if isinstance(args_json, str):
            try:
                args = json.loads(args_json or "{}")
            except ValueError:
                args = None
        else:
            args = dict(args_json)
        if not isinstance(args, dict):
            await reply({"ok": False, "error": f"arguments are not a JSON object: {args_json!r}"})
            return
        self.log.info("call %s: the model calls %s(%s)", self.label, name, json.dumps(args)[:200])
        result = await self.bridge.on_tool_call(self.call, name, args)
        try:
            await reply(result)
        except TransportClosed:
            pass


def decode_audio(b64: Any) -> bytes | None:
    """Base64 PCM16 from the model, or None if it is not that."""
    if not isinstance(b64, str):
        return None
    try:
        pcm = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    return pcm if len(pcm) % 2 == 0 else None
