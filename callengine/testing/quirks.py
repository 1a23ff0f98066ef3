"""Quirks: the odd messages real providers' code sends, played by the simulator on request.

The engine tolerates each of these (docs/protocols.md); a quirk makes the
simulated provider actually send it, so a test can show the engine keeps the call alive
and gives the odd message its right meaning. Quirks are opt-in: the default simulator
speaks the documented protocol.

Turn them on with the simulator's codec options (``quirks`` is taken by the simulator, the
rest go to the PROVIDER-role codec)::

    open_simulated_call(agent, "awaaz", provider_codec_options={"quirks": {"bom", "binary-json"}})
    SimulatedProvider(transport, "knowlarity", codec_options={"quirks": "joined-texts,dtmf-drachtio"})

or ``callengine dial --quirk NAME`` (see :func:`add_quirk_argument`).

The quirks work on the wire messages the PROVIDER codec produces (:func:`with_quirks` wraps
the codec), so the codecs themselves keep speaking the protocol as documented.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Sequence

import attrs

from ..errors import LocalProtocolError
from ..events import DTMF_DIGITS, CallerAudio, CallStarted, CallStopped, Dtmf, Event, MarkEchoed
from ..protocols.base import Codec, WireMessage
from ..protocols.registry import get_codec

__all__ = ["AWAAZ_QUIRKS", "MOD_AUDIO_FORK_QUIRKS", "quirks_for", "parse_quirks", "check_quirks", "with_quirks", "add_quirk_argument"]

#: Quirks of the JSON-event family (Awaaz), each as seen in Awaaz-side code (connector.py
#: tolerates them all).
AWAAZ_QUIRKS: dict[str, str] = {
    "media-before-start": "one media message (20 ms of silence) before start",
    "dtmf-before-start": "a dtmf (digit 1) before start",
    "mark-before-start": "a mark echo (name 'early') before start",
    "second-start": "start sent twice; the second one names another call",
    "base64-line-breaks": "media payloads in base64 with a line break every 76 characters (base64.encodebytes)",
    "media-without-payload": "after the first media message, one media message whose media object has no payload",
    "media-without-media": "after the first media message, one media message with no media object",
    "binary-json": "every message as UTF-8 JSON in a binary frame",
    "bom": "every message starts with a UTF-8 byte order mark",
    "string-marks": 'mark echoes as {"event":"mark","mark":"name"} (the codec\'s mark_shape="string")',
}

#: Quirks of the mod_audio_fork family (Knowlarity, legacy Awaaz), from drachtio's and
#: jambonz's module and examples.
MOD_AUDIO_FORK_QUIRKS: dict[str, str] = {
    "bom": "every text frame (the metadata first) starts with a UTF-8 byte order mark",
    "joined-texts": "texts wait for the next frame that goes out and leave joined in one frame, as drachtio's send buffer joins them",
    "binary-before-metadata": "one binary audio frame (20 ms of silence) before the metadata",
    "dtmf-drachtio": 'key presses as text {"dtmf":"5","duration":"1600","source":"RTP"} (drachtio\'s example), not tones',
    "dtmf-jambonz": 'key presses as text {"event":"dtmf","dtmf":"5","duration":1600} (jambonz), not tones',
}

_BY_FAMILY = {"json-events": AWAAZ_QUIRKS, "mod_audio_fork": MOD_AUDIO_FORK_QUIRKS}
_BOM = "\ufeff"
_DTMF_TEXT = ("dtmf-drachtio", "dtmf-jambonz")


def quirks_for(provider: str | Codec) -> dict[str, str]:
    """The quirks a provider (name or codec) can play: name -> what it sends."""
    family = get_codec(provider).family if isinstance(provider, str) else provider.family
    return dict(_BY_FAMILY.get(family, {}))


def parse_quirks(spec: str | Iterable[str] | None) -> frozenset[str]:
    """``"bom,binary-json"`` or an iterable of names (each may itself be comma-separated)
    -> a frozenset of quirk names, lower-cased. Names are checked by :func:`with_quirks`."""
    if spec is None:
        return frozenset()
    items = [spec] if isinstance(spec, str) else list(spec)
    return frozenset(part.strip().lower() for item in items for part in str(item).split(",") if part.strip())


def check_quirks(provider: str | Codec, quirks: str | Iterable[str] | None) -> frozenset[str]:
    """The quirk names, or ValueError naming the ones this provider cannot play."""
    names = parse_quirks(quirks)
    known = quirks_for(provider)
    unknown = sorted(names - known.keys())
    if unknown:
        name = provider if isinstance(provider, str) else provider.name
        raise ValueError(f"{name} has no quirk {', '.join(unknown)}; it can play: {', '.join(sorted(known))}")
    if set(_DTMF_TEXT) <= names:
        raise ValueError("choose one of dtmf-drachtio and dtmf-jambonz")
    return names


def with_quirks(codec: Codec, quirks: str | Iterable[str] | None) -> Codec:
    """``codec`` (PROVIDER role) playing ``quirks``; the codec itself when there are none."""
    names = check_quirks(codec, quirks)
    if not names:
        return codec
    # a class per codec so that name and family stay class attributes, as on every codec
    cls = type(f"Quirky{type(codec).__name__}", (_QuirkyCodec,), {"name": codec.name, "family": codec.family})
    return cls(codec, names)


class _QuirkyCodec(Codec):
    """Wraps a PROVIDER-role codec and bends the wire messages it produces."""

    def __init__(self, inner: Codec, quirks: frozenset[str]) -> None:
        super().__init__(inner.role)
        self.inner = inner
        self.quirks = quirks
        self._media_sent = 0
        self._held: list[str] = []  # joined-texts: texts waiting for the next frame
        self.dtmf_as_text = next((q for q in _DTMF_TEXT if q in quirks), None)
        caps = inner.capabilities
        if self.dtmf_as_text:
            # the provider's application forwards key presses as text (any key it detects)
            caps = attrs.evolve(caps, dtmf_events=True, dtmf_keys=frozenset(DTMF_DIGITS))
        self.capabilities = caps

    def __getattr__(self, name: str) -> Any:
        # everything else (stream_sid, call_id, state...) is the wrapped codec's; "inner"
        # itself is never looked up there (copy and pickle ask before __init__ ran)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def started(self) -> bool:
        return self.inner.started

    @property
    def inbound_rate(self) -> int:
        return self.inner.inbound_rate

    @property
    def outbound_rate(self) -> int:
        return self.inner.outbound_rate

    def receive(self, message: WireMessage) -> Sequence[Event]:
        return self.inner.receive(message)

    def send(self, event: Event) -> Sequence[WireMessage]:
        if self.family == "json-events":
            out = self._awaaz(event)
        else:
            out = self._mod_audio_fork(event)
        return [self._dress(m) for m in out]

    # --- JSON events (Awaaz) ---------------------------------------------------------------

    def _awaaz(self, event: Event) -> list[WireMessage]:
        out = list(self.inner.send(event))
        q = self.quirks
        if isinstance(event, CallStarted):
            at = next(i for i, m in enumerate(out) if _event_of(m) == "start")
            sid = getattr(self.inner, "stream_sid", "")
            early: list[WireMessage] = []
            if "media-before-start" in q:
                silence = bytes(2 * (event.sample_rate // 50))
                early.append(_dumps({"event": "media", "stream_sid": sid, "media": {"payload": _b64(silence)}}))
            if "dtmf-before-start" in q:
                early.append(_dumps({"event": "dtmf", "stream_sid": sid, "dtmf": {"digit": "1"}}))
            if "mark-before-start" in q:
                early.append(_dumps({"event": "mark", "stream_sid": sid, "mark": {"name": "early"}}))
            if "second-start" in q:
                second = json.loads(out[at])
                second["start"]["call_sid"] = f"second-{event.call_id}"
                out.insert(at + 1, _dumps(second))
            out[at:at] = early
        elif isinstance(event, MarkEchoed) and "string-marks" in q:
            # only the echo's shape changes: this peer still reads the engine's marks
            for i, m in enumerate(out):
                echo = json.loads(m)
                echo["mark"] = event.name
                out[i] = _dumps(echo)
        elif isinstance(event, CallerAudio) and out:
            self._media_sent += 1
            if "base64-line-breaks" in q:
                out = [_with_line_breaks(m) for m in out]
            if self._media_sent == 1:
                sid = getattr(self.inner, "stream_sid", "")
                if "media-without-payload" in q:
                    out.append(_dumps({"event": "media", "stream_sid": sid, "media": {"chunk": 0}}))
                if "media-without-media" in q:
                    out.append(_dumps({"event": "media", "stream_sid": sid}))
        return out

    # --- mod_audio_fork (Knowlarity, legacy Awaaz) -------------------------------------------

    def _mod_audio_fork(self, event: Event) -> list[WireMessage]:
        if isinstance(event, Dtmf) and self.dtmf_as_text:
            if not self.inner.started:
                raise LocalProtocolError(f"{self.name}: cannot send a key press before the metadata")
            if self.dtmf_as_text == "dtmf-drachtio":
                text = {"dtmf": event.digit, "duration": "1600", "source": "RTP"}
            else:
                text = {"event": "dtmf", "dtmf": event.digit, "duration": 1600}
            out: list[WireMessage] = [_dumps(text)]
        else:
            out = list(self.inner.send(event))
        if isinstance(event, CallStarted) and "binary-before-metadata" in self.quirks:
            out.insert(0, bytes(2 * (event.sample_rate // 50)))
        if "joined-texts" not in self.quirks:
            return out
        # drachtio's AudioPipe appends each text to one buffer that goes out, whole, when
        # the socket is next writable: texts queued meanwhile arrive joined in one frame.
        # Here "next writable" is the next binary frame (the microphone sends one every
        # 20 ms) or the end of the call.
        frames: list[WireMessage] = []
        for m in out:
            if isinstance(m, str):
                self._held.append(m)
                continue
            if self._held:
                frames.append("".join(self._held))
                self._held = []
            frames.append(m)
        if isinstance(event, CallStopped) and self._held:
            frames.insert(0, "".join(self._held))
            self._held = []
        return frames

    def _dress(self, message: WireMessage) -> WireMessage:
        if isinstance(message, str):
            if "bom" in self.quirks:
                message = _BOM + message
            if "binary-json" in self.quirks:
                return message.encode("utf-8")
        return message


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _event_of(message: WireMessage) -> Any:
    try:
        return json.loads(message).get("event")
    except (ValueError, AttributeError):
        return None


def _with_line_breaks(message: WireMessage) -> WireMessage:
    """The same media message with its payload as ``base64.encodebytes`` writes it."""
    msg = json.loads(message)
    media = msg.get("media")
    if isinstance(media, dict) and isinstance(media.get("payload"), str):
        media["payload"] = base64.encodebytes(base64.b64decode(media["payload"])).decode("ascii")
    return _dumps(msg)


def add_quirk_argument(parser) -> None:
    """``--quirk NAME`` (repeatable, or comma-separated) on an argparse parser."""
    names = sorted(set(AWAAZ_QUIRKS) | set(MOD_AUDIO_FORK_QUIRKS))
    parser.add_argument(
        "--quirk",
        action="append",
        default=[],
        metavar="NAME",
        help="make the simulated provider send an odd message real providers send (repeatable): " + ", ".join(names),
    )
