#!/usr/bin/env python3
"""Per-message CPU cost of the provider codecs' JSON/base64 path, optionally against another
revision.

    python scripts/bench_codecs.py [--baseline REV] [--check] [--repeats 31] [--number 2000]

Times the ENGINE role, per message, in microseconds (median of ``--repeats`` timings of
``--number`` messages each):

  <provider>/receive   codec.receive() of one caller ``media`` message of 20 ms, as the
                       provider's simulator (PROVIDER role) writes it
  <provider>/send      codec.send(PlayAudio) of 20 ms of agent audio, to the wire text
  knowlarity/send      codec.send(PlayAudio) of one 200 ms playAudio clip (a WAV, base64)

for awaaz, twilio, exotel, plivo, smartflo and telnyx, after a ``start``.

With ``--baseline REV`` the codecs as of REV (callengine/protocols/_common.py, skeleton.py,
jsonevents.py and the provider modules, ``git show``; loaded as separate modules, the rest
of the package is this tree's) are timed too, old and new alternately in one run; the table
gives old, new and old/new.

``--check`` (with ``--baseline``) feeds the old and the new codecs the same messages, each
case on a fresh pair of started codecs: odd inbound messages (base64 with line breaks,
missing or extra padding, a UTF-8 BOM, JSON in a binary frame, unicode escapes, big numbers,
duplicate keys, NaN/Infinity literals, deep nesting, non-object JSON, lone surrogates,
broken JSON, ...), then commands whose text is odd (mark names and stream ids with
non-ASCII, DEL, quotes, control characters), in both roles; then random mutations of real
messages, and the shared helpers (loads_object, dumps, b64decode, b64encode) on random
inputs. It reports every difference in the events produced (their fields' reprs, so
``-0.0``/``0`` or ``nan`` count), the errors raised (type, close code, text) or the exact
messages sent, and exits non-zero if there is one.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import attrs  # noqa: E402
import numpy as np  # noqa: E402

from bench_vad import load_revision  # noqa: E402
from callengine.errors import ProtocolError  # noqa: E402
from callengine.events import CallerAudio, CallStarted, Clear, Dtmf, Hangup, Mark, MarkEchoed, PlayAudio, Transfer, UnknownMessage, CallStopped  # noqa: E402
from callengine.protocols.base import Role  # noqa: E402

PACKAGE = "callengine.protocols"
PROVIDERS = {  # provider -> (module, class)
    "awaaz": ("awaaz", "AwaazCodec"),
    "twilio": ("twilio", "TwilioCodec"),
    "exotel": ("exotel", "ExotelCodec"),
    "plivo": ("plivo", "PlivoCodec"),
    "smartflo": ("smartflo", "SmartfloCodec"),
    "telnyx": ("telnyx", "TelnyxCodec"),
}
# the modules that hold the JSON/base64 path, in import order (each old one imports the
# old ones before it)
MODULES = ("_common", "skeleton", "jsonevents", "twilio", "exotel", "plivo", "smartflo", "telnyx", "awaaz", "knowlarity_metadata", "modaudiofork", "knowlarity")
RATE = 8000


def load_new() -> dict[str, types.ModuleType]:
    import importlib

    return {name: importlib.import_module(f"{PACKAGE}.{name}") for name in MODULES}


def load_old(rev: str) -> dict[str, types.ModuleType]:
    old: dict[str, types.ModuleType] = {}
    for name in MODULES:
        swap = {f"{PACKAGE}.{done}": module for done, module in old.items()}
        old[name] = load_revision(rev, f"callengine/protocols/{name}.py", f"{PACKAGE}._old_{name}", PACKAGE, swap)
    return old


def codec_class(modules: dict[str, types.ModuleType], provider: str) -> type:
    if provider == "knowlarity":
        return modules["knowlarity"].KnowlarityCodec
    module, cls = PROVIDERS[provider]
    return getattr(modules[module], cls)


def speech(samples: int, seed: int = 1) -> bytes:
    t = np.arange(samples) / RATE
    rng = np.random.default_rng(seed)
    x = 6000 * np.sin(2 * np.pi * 220 * t) + 2000 * rng.standard_normal(samples)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def started_pair(new: dict, old: dict | None, provider: str, *, stream_id: str = "MZ" + "5" * 32, custom: dict | None = None) -> tuple[Any, Any, list]:
    """A new and an old ENGINE codec after the same start (written by the new PROVIDER)."""
    sim = codec_class(new, provider)(Role.PROVIDER)
    opening = list(sim.send(CallStarted(call_id="CA" + "7" * 32, stream_id=stream_id, caller="+15550001", called="+15550002", sample_rate=RATE, custom=custom or {"k": "v"})))
    codecs = []
    for modules in (new, old):
        if modules is None:
            codecs.append(None)
            continue
        codec = codec_class(modules, provider)(Role.ENGINE)
        for message in opening:
            codec.receive(message)
        codecs.append(codec)
    return codecs[0], codecs[1], [sim, opening]


def media_message(new: dict, provider: str, pcm: bytes) -> str | bytes:
    sim = codec_class(new, provider)(Role.PROVIDER)
    sim.send(CallStarted(call_id="CA" + "7" * 32, stream_id="MZ" + "5" * 32, caller="+15550001", called="+15550002", sample_rate=RATE))
    (message,) = sim.send(CallerAudio(pcm=pcm, sample_rate=RATE))
    return message


# --- timing ---------------------------------------------------------------------------


def cases(new: dict, old: dict | None) -> list[tuple[str, Callable[[], Any] | None, Callable[[], Any]]]:
    """(name, old step, new step): each step handles one message."""
    frame = speech(RATE * 20 // 1000)
    clip = speech(RATE * 200 // 1000, seed=2)
    out = []
    for provider in PROVIDERS:
        message = media_message(new, provider, frame)
        pair = started_pair(new, old, provider)[:2]
        steps = [None if c is None else (lambda c=c, m=message: c.receive(m)) for c in pair]
        out.append((f"{provider}/receive", steps[1], steps[0]))
        play = PlayAudio(pcm=frame, sample_rate=RATE)
        pair = started_pair(new, old, provider)[:2]
        steps = [None if c is None else (lambda c=c, p=play: c.send(p)) for c in pair]
        out.append((f"{provider}/send", steps[1], steps[0]))
    play = PlayAudio(pcm=clip, sample_rate=RATE)
    pair = started_pair(new, old, "knowlarity")[:2]
    steps = [None if c is None else (lambda c=c, p=play: c.send(p)) for c in pair]
    out.append(("knowlarity/send (200 ms clip)", steps[1], steps[0]))
    return out


def sane(name: str, old_step: Callable[[], Any] | None, new_step: Callable[[], Any]) -> None:
    """One call of each step: a receive gives 20 ms of caller audio, a send one message, and
    old and new give the same (the steps' counters move on together)."""
    out = new_step()
    if name.endswith("/receive"):
        assert len(out) == 1 and isinstance(out[0], CallerAudio) and len(out[0].pcm) == 2 * RATE * 20 // 1000, (name, out)
    else:
        assert len(out) == 1 and isinstance(out[0], str), (name, out)
    if old_step is not None:
        assert canon(old_step()) == canon(out), name


def time_step(step: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - start) / number * 1e6


def bench(new: dict, old: dict | None, repeats: int, number: int) -> None:
    rows = []
    for name, old_step, new_step in cases(new, old):
        sane(name, old_step, new_step)
        timings: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(repeats):
            order = [("new", new_step), ("old", old_step)]
            if r % 2:
                order.reverse()
            for label, step in order:
                if step is not None:
                    timings[label].append(time_step(step, number))
        rows.append((name, statistics.median(timings["old"]) if timings["old"] else None, statistics.median(timings["new"])))
    width = max(len(r[0]) for r in rows)
    if old is None:
        print(f"{'us per message':<{width}}  {'this tree':>9}")
        for name, _, t_new in rows:
            print(f"{name:<{width}}  {t_new:9.2f}")
        return
    print(f"{'us per message':<{width}}  {'old':>7}  {'new':>7}  {'old/new':>7}")
    for name, t_old, t_new in rows:
        assert t_old is not None
        print(f"{name:<{width}}  {t_old:7.2f}  {t_new:7.2f}  {t_old / t_new:7.2f}")


# --- check ----------------------------------------------------------------------------


def canon(value: Any) -> Any:
    """What a call produced, comparable: events by type and their fields' reprs (repr tells
    0 from 0.0 from -0.0 and shows nan), errors by type, close code and text."""
    if isinstance(value, BaseException):
        return ("raised", type(value).__name__, getattr(value, "close_code", None), str(value))
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if attrs.has(type(value)):
        return (type(value).__name__, tuple((f.name, repr(getattr(value, f.name))) for f in attrs.fields(type(value))))
    return ("value", type(value).__name__, repr(value))


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return canon(call())
    except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
        return canon(exc)


def nested(depth: int, leaf: str = "1") -> str:
    return '{"n":' * depth + leaf + "}" * depth


def odd_inbound(media: str) -> dict[str, str | bytes]:
    """Odd versions of a real media message (and some odd messages of every kind)."""
    msg = json.loads(media)
    payload = _payload_of(msg)
    raw = base64.b64decode(payload)

    def with_payload(p: str) -> str:
        m = json.loads(media)
        _set_payload(m, p)
        return json.dumps(m, separators=(",", ":"))

    def with_extra(text: str) -> str:
        return media[:-1] + ',"extra":' + text + "}"

    out: dict[str, str | bytes] = {
        "plain": media,
        "payload with newlines (encodebytes)": with_payload(base64.encodebytes(raw).decode()),
        "payload with spaces": with_payload(" ".join(payload[i : i + 8] for i in range(0, len(payload), 8))),
        "payload without padding": with_payload(base64.b64encode(raw[:-1]).decode().rstrip("=")),
        "payload with extra padding": with_payload(payload + "=" if payload.endswith("=") else payload + "="),
        "payload with ==== after a whole quantum": with_payload(base64.b64encode(raw[:3]).decode() + "===="),
        "payload with non-canonical last bits": with_payload(base64.b64encode(raw[:4]).decode()[:-2].replace("=", "") + "B="),
        "payload urlsafe alphabet": with_payload(base64.urlsafe_b64encode(raw).decode()),
        "payload with non-ASCII": with_payload(payload[:10] + "é" + payload[10:]),
        "payload empty": with_payload(""),
        "payload odd length of bytes": with_payload(base64.b64encode(raw[:3]).decode()),
        "payload a number": media.replace(json.dumps(payload), "12345"),
        "payload null": media.replace(json.dumps(payload), "null"),
        "utf-8 BOM": "\ufeff" + media,
        "two BOMs": "\ufeff\ufeff" + media,
        "binary frame": media.encode(),
        "binary frame with BOM": "\ufeff".encode() + media.encode(),
        "binary frame, leading whitespace": b" \r\n" + media.encode(),
        "binary frame not UTF-8": b"\xff" + media.encode(),
        "binary frame not JSON": b"\x00\x01\x02",
        "leading and trailing whitespace": " \t\r\n" + media + " \n",
        "unicode-escaped event name": media.replace('"media"', '"\\u006d\\u0065dia"', 1),
        "unicode escapes in a field": with_extra('"\\u00e9\\u4e2d\\ud83d\\ude00\\u0000\\u007f"'),
        "lone surrogate escape": with_extra('"\\ud800"'),
        "reversed surrogate pair": with_extra('"\\udc00\\ud800"'),
        "raw non-ASCII text": with_extra('"caf\u00e9 \u4e2d \U0001f600"'),
        "int at 2**63-1": with_extra(str(2**63 - 1)),
        "int at 2**64-1": with_extra(str(2**64 - 1)),
        "int at 2**64": with_extra(str(2**64)),
        "int at -2**63-1": with_extra(str(-(2**63) - 1)),
        "int of 200 digits": with_extra("9" * 200),
        "int of 5000 digits": with_extra("9" * 5000),
        "big float 1e308": with_extra("1e308"),
        "float overflow 1e400": with_extra("1e400"),
        "float underflow 1e-400": with_extra("1e-400"),
        "negative zero ints and floats": with_extra("[-0,-0.0,0.0,1.0,1E2,1e-7,0.1]"),
        "float with 30 digits": with_extra("0.123456789012345678901234567891"),
        "NaN literal": with_extra("NaN"),
        "Infinity literal": with_extra("Infinity"),
        "-Infinity literal": with_extra("-Infinity"),
        "NaN as sequence number": media.replace("{", '{"sequence_number":NaN,"sequenceNumber":NaN,', 1),
        "duplicate keys (event media then mark)": media[:-1] + ',"event":"mark","mark":{"name":"m1"}}',
        "duplicate keys (event start then media)": '{"event":"start",' + media[1:],
        "duplicate payload": media.replace('"payload":', '"payload":"AAAA","payload":', 1),
        "nested 10": with_extra(nested(10)),
        "nested 63": with_extra(nested(63)),
        "nested 64": with_extra(nested(64)),
        "nested 200": with_extra(nested(200)),
        "nested 990": with_extra(nested(990)),
        "nested 1000": with_extra(nested(1000)),
        "nested 1023": with_extra(nested(1023)),
        "nested 1100": with_extra(nested(1100)),
        "nested lists 995": with_extra("[" * 995 + "]" * 995),
        "nested 100000": with_extra(nested(100000)),
        "non-object: list": "[" + media + "]",
        "non-object: string": json.dumps(media),
        "non-object: number": "42",
        "non-object: big number": "1" * 30,
        "non-object: null": "null",
        "non-object: NaN": "NaN",
        "empty text": "",
        "whitespace only": "  \n",
        "truncated JSON": media[:-1],
        "trailing garbage": media + "x",
        "two objects": media + media,
        "single quotes": media.replace('"', "'"),
        "trailing comma": media[:-1] + ",}",
        "control character in a string": with_extra('"a\x01b"'),
        "raw DEL in a string": with_extra('"a\x7fb"'),
        "event not a string": media.replace('"media"', "7", 1),
        "no event": "{}",
        "unknown event": '{"event":"weird","x":1.5}',
        "dtmf with odd digit": '{"event":"dtmf","dtmf":{"digit":5.0}}',
        "dtmf digit big int": '{"event":"dtmf","dtmf":{"digit":' + str(2**64 + 5) + "}}",
        "mark echo with unicode name": '{"event":"mark","mark":{"name":"\\u00e9t\\u00e9"},"name":"\\u00e9t\\u00e9"}',
        "mark echo with NaN": '{"event":"mark","mark":{"name":NaN},"name":NaN}',
        "playedStream echo": '{"event":"playedStream","name":"m\\u00e9"}',
        "stop with float reason": '{"event":"stop","stop":{"reason":1e400}}',
        "second start with big ints": '{"event":"start","start":{"media_format":{"sample_rate":' + str(2**70) + "}}}",
    }
    return out


def _payload_of(msg: dict) -> str:
    return msg["media"]["payload"]


def _set_payload(msg: dict, payload: str) -> None:
    msg["media"]["payload"] = payload


ODD_TEXTS = ["plain", "caf\u00e9", "\u4e2d\u6587", "\U0001f600", "a\x7fb", 'q"u\\o/te', "tab\tnl\nnul\x00\x1f", "\ud800", "</script>", "\u2028\u2029", ""]


def commands_after(new: dict, old: dict, provider: str, stream_id: str) -> list[tuple[str, Any, Any]]:
    """(what, old outcome, new outcome) for the ENGINE's commands after a start with ``stream_id``."""
    results = []
    new_codec, old_codec, _ = started_pair(new, old, provider, stream_id=stream_id, custom={"k": stream_id})
    commands: list[tuple[str, Any]] = [
        ("PlayAudio 20 ms", PlayAudio(pcm=speech(160), sample_rate=RATE)),
        ("PlayAudio 2 samples", PlayAudio(pcm=b"\x01\x00\xff\x7f", sample_rate=RATE)),
        ("PlayAudio 200 ms", PlayAudio(pcm=speech(1600, seed=3), sample_rate=RATE)),
        ("PlayAudio 16 kHz", PlayAudio(pcm=speech(320), sample_rate=16000)),
        ("PlayAudio empty", PlayAudio(pcm=b"", sample_rate=RATE)),
    ]
    commands += [(f"Mark {name!r}", Mark(name)) for name in ODD_TEXTS if name]
    commands += [("Clear", Clear()), ("Hangup", Hangup()), ("Transfer", Transfer("+15550003"))]
    for what, command in commands:
        results.append((f"send {what}", outcome(lambda c=old_codec: c.send(command)), outcome(lambda c=new_codec: c.send(command))))
    return results


def provider_role(new: dict, old: dict, provider: str) -> list[tuple[str, Any, Any]]:
    """The simulator's side: what the PROVIDER role sends (odd ids, custom values that
    dumps must refuse or spell as the stdlib does) and reads."""
    results = []
    customs: list[dict] = [
        {"k": text for text in ODD_TEXTS[:1]},
        {text or "empty": text for text in ODD_TEXTS},
        {"float": 1.5, "big": 2**70, "neg": -(2**63) - 1, "zero": -0.0, "list": [1, 2.5, None, True]},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {"int key": {1: 2}},
        {"deep": json.loads(nested(60))},
        {"deeper": json.loads(nested(300))},
    ]
    for n, custom in enumerate(customs):
        sims = [codec_class(m, provider)(Role.PROVIDER) for m in (old, new)]
        start = CallStarted(call_id="CA\u00e9", stream_id=f"MZ{n}\u00e9\x7f", caller="+1", called="+2", sample_rate=RATE, custom=custom)
        outs = [outcome(lambda s=s: s.send(start)) for s in sims]
        results.append((f"PROVIDER send CallStarted custom #{n}", outs[0], outs[1]))
        for event in (CallerAudio(pcm=speech(160), sample_rate=RATE), Dtmf("5"), MarkEchoed("m\u00e9\x7f"), UnknownMessage(kind="x", raw={"event": "x", "v": custom}), CallStopped(reason="r\u00e9")):
            outs = [outcome(lambda s=s: s.send(event)) for s in sims]
            results.append((f"PROVIDER send {type(event).__name__} after custom #{n}", outs[0], outs[1]))
    # the PROVIDER reading the engine's commands, odd ones included
    engine = codec_class(new, provider)(Role.ENGINE)
    sim = codec_class(new, provider)(Role.PROVIDER)
    for message in sim.send(CallStarted(call_id="CA1", stream_id="MZ1", caller="+1", called="+2", sample_rate=RATE)):
        engine.receive(message)
    engine_messages = list(engine.send(PlayAudio(pcm=speech(1600), sample_rate=RATE))) + list(engine.send(Mark("m\u00e9"))) + list(engine.send(Clear()))
    for n, message in enumerate(engine_messages + [m.replace("{", '{"x":NaN,', 1) for m in engine_messages if isinstance(m, str)]):
        sims = [codec_class(m, provider)(Role.PROVIDER) for m in (old, new)]
        for s in sims:
            s.send(CallStarted(call_id="CA1", stream_id="MZ1", caller="+1", called="+2", sample_rate=RATE))
        outs = [outcome(lambda s=s: s.receive(message)) for s in sims]
        results.append((f"PROVIDER receive engine message #{n}", outs[0], outs[1]))
    return results


def mutations(text: str, rnd: random.Random, count: int) -> list[str]:
    pieces = ['"', "\\", "{", "}", "[", "]", ",", ":", "=", "\n", " ", "\ufeff", "é", "\\u00e9", "\\ud800", "NaN", "1e400", "9" * 25, "-0", "null", "\x7f", "\x00"]
    out = []
    for _ in range(count):
        s = text
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(s) + 1)
            op = rnd.random()
            if op < 0.4:
                s = s[:at] + rnd.choice(pieces) + s[at:]
            elif op < 0.7:
                s = s[:at] + s[at + rnd.randint(1, 4) :]
            else:
                s = s[:at] + chr(rnd.randrange(32, 127)) + s[at + 1 :]
        out.append(s)
    return out


def random_json(rnd: random.Random, depth: int = 0) -> str:
    choice = rnd.random()
    if depth > 3 or choice < 0.45:
        return rnd.choice(
            [str(rnd.randint(-(2**70), 2**70)), str(rnd.randint(-1000, 1000)), repr(rnd.uniform(-1e20, 1e20)), f"{rnd.random():.{rnd.randint(1, 25)}f}",
             f"{rnd.randint(1, 9)}e{rnd.randint(-330, 330)}", "true", "false", "null", "NaN", "-Infinity", "-0", "-0.0",
             json.dumps("".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0x80, 0x3000), 0xD800, 0x7F, 0x1F600])) for _ in range(rnd.randint(0, 6))), ensure_ascii=rnd.random() < 0.5)]
        )
    if choice < 0.75:
        return "{" + ",".join(f'"{rnd.choice("abcdeé")}":{random_json(rnd, depth + 1)}' for _ in range(rnd.randint(0, 4))) + "}"
    return "[" + ",".join(random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))) + "]"


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    choice = rnd.random()
    if depth > 3 or choice < 0.5:
        return rnd.choice([rnd.randint(-(2**66), 2**66), rnd.randint(-5, 5), rnd.uniform(-1e20, 1e20), 0.1, -0.0, 1e16, float("nan"), float("inf"), True, False, None,
                           "".join(chr(rnd.choice([rnd.randrange(0, 128), rnd.randrange(0x80, 0x3000), 0xD800, 0x1F600])) for _ in range(rnd.randint(0, 6)))])
    if choice < 0.8:
        return {rnd.choice(["a", "b", "é", "\x7f", 1, None]): random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}
    return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))] if rnd.random() < 0.7 else tuple(random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3)))


def check(new: dict, old: dict, seed: int, fuzz: int) -> int:
    rnd = random.Random(seed)
    differences = 0
    compared = 0

    def report(where: str, was: Any, now: Any) -> None:
        nonlocal differences, compared
        compared += 1
        if was != now:
            differences += 1
            if differences <= 40:
                print(f"DIFF {where}\n  old: {str(was)[:300]}\n  new: {str(now)[:300]}")

    frame = speech(160)
    for provider in PROVIDERS:
        media = media_message(new, provider, frame)
        assert isinstance(media, str)
        odd = odd_inbound(media)
        # odd messages on a started call, then a plain media and a mark (the state must agree)
        for what, message in odd.items():
            new_codec, old_codec, _ = started_pair(new, old, provider)
            for label, msg in ((what, message), (f"{what}, then plain media", media)):
                report(f"{provider} receive {label}", outcome(lambda: old_codec.receive(msg)), outcome(lambda: new_codec.receive(msg)))
            report(f"{provider} send after {what}", outcome(lambda: old_codec.send(Mark("m"))), outcome(lambda: new_codec.send(Mark("m"))))
        # the same before start (the IDLE state's tolerance)
        for what, message in odd.items():
            codecs = [codec_class(m, provider)(Role.ENGINE) for m in (old, new)]
            outs = [outcome(lambda c=c: c.receive(message)) for c in codecs]
            report(f"{provider} receive before start: {what}", *outs)
        # starts with odd stream ids, then the commands' exact bytes
        for sid in ODD_TEXTS:
            try:
                rows = commands_after(new, old, provider, "MZ" + sid)
            except ProtocolError as exc:
                rows = [(f"start with stream id {sid!r}", "?", canon(exc))]
            for what, was, now in rows:
                report(f"{provider} stream id {sid!r}: {what}", was, now)
        # odd starts, written by hand
        start = next(m for m in started_pair(new, None, provider)[2][1] if json.loads(m).get("event") == "start")
        for what, message in odd_inbound(media).items():
            if not isinstance(message, str) or what in ("plain",):
                continue
            mutated = start[:-1] + ',"extra":' + message + "}" if message.startswith("{") else start
            codecs = [codec_class(m, provider)(Role.ENGINE) for m in (old, new)]
            report(f"{provider} start carrying {what}", *[outcome(lambda c=c: c.receive(mutated)) for c in codecs])
        for what, was, now in provider_role(new, old, provider):
            report(f"{provider} {what}", was, now)
        # random mutations of the media message and the start
        for n, message in enumerate(mutations(media, rnd, fuzz) + mutations(start, rnd, fuzz // 4)):
            new_codec, old_codec, _ = started_pair(new, old, provider)
            report(f"{provider} mutation #{n} {message[:80]!r}", outcome(lambda: old_codec.receive(message)), outcome(lambda: new_codec.receive(message)))
    # the shared helpers, on random inputs
    old_c, new_c = old["_common"], new["_common"]
    for n in range(fuzz * 10):
        text = random_json(rnd)
        report(f"loads_object #{n} {text[:80]!r}", outcome(lambda: old_c.loads_object(text)), outcome(lambda: new_c.loads_object(text)))
        wrapped = '{"v":' + text + "}"
        report(f"loads_object #{n} {wrapped[:80]!r}", outcome(lambda: old_c.loads_object(wrapped)), outcome(lambda: new_c.loads_object(wrapped)))
        value = random_value(rnd)
        report(f"dumps #{n} {value!r:.80}", outcome(lambda: old_c.dumps(value)), outcome(lambda: new_c.dumps(value)))
        data = rnd.randbytes(rnd.randint(0, 12))
        encoded = base64.b64encode(data).decode()
        for variant in (encoded, encoded.rstrip("="), encoded + "=", encoded + "==", encoded[:-1] + rnd.choice("AQgw+/=\n é-_"), "".join(rnd.choice("AB+/=\n é") for _ in range(rnd.randint(0, 9)))):
            for lenient in (False, True):
                report(f"b64decode #{n} {variant!r} lenient={lenient}", outcome(lambda: old_c.b64decode(variant, what="x", lenient=lenient)), outcome(lambda: new_c.b64decode(variant, what="x", lenient=lenient)))
        for blob in (data, bytearray(data), memoryview(data)):
            report(f"b64encode #{n} {type(blob).__name__}", outcome(lambda: old_c.b64encode(blob)), outcome(lambda: new_c.b64encode(blob)))
    print(f"check: {compared} comparisons, {differences} differences")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="REV", help="also time the codecs as of this git revision")
    parser.add_argument("--check", action="store_true", help="compare old and new on odd and random messages (needs --baseline)")
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--number", type=int, default=2000, help="messages per timing")
    parser.add_argument("--fuzz", type=int, default=400, help="random mutations per provider in --check")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-bench", action="store_true", help="with --check: only check")
    args = parser.parse_args(argv)
    new = load_new()
    old = load_old(args.baseline) if args.baseline else None
    if args.check:
        if old is None:
            parser.error("--check needs --baseline")
        if check(new, old, args.seed, args.fuzz):
            return 1
    if not args.no_bench:
        bench(new, old, args.repeats, args.number)
    return 0


if __name__ == "__main__":
    sys.exit(main())
