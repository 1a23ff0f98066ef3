import json
import subprocess
import sys
import urllib.parse

import pytest

from callengine.events import CallStarted
from callengine.protocols import (
    CODECS,
    AwaazCodec,
    KnowlarityCodec,
    Role,
    create_codec,
    detect_provider,
    get_codec,
    provider_from_path,
)

VERLOOP = {
    "uuid": "aosi-adfad-23-ad",
    "sample_rate": 16000,
    "from": "1",
    "to": "2",
    "campaign": "",
    "metadata": {"welcome_message": "Welcome", "event": "websocket:connected", "call_type": "inbound"},
}
CALLID = {"ivr_data": "{}", "callid": "c", "virtual_number": "2", "customer_number": "1"}


def test_codecs_table():
    from callengine.protocols import LegacyAwaazCodec

    assert list(CODECS) == ["awaaz", "knowlarity", "awaaz-legacy", "twilio", "exotel", "plivo", "vobiz", "smartflo", "telnyx", "vonage"]
    assert (CODECS["awaaz"], CODECS["knowlarity"], CODECS["awaaz-legacy"]) == (AwaazCodec, KnowlarityCodec, LegacyAwaazCodec)
    assert all(cls.name == name for name, cls in CODECS.items())


def test_get_codec():
    assert get_codec("awaaz") is AwaazCodec
    assert get_codec(" Knowlarity ") is KnowlarityCodec
    with pytest.raises(ValueError, match="awaaz, awaaz-legacy, exotel, knowlarity, plivo, smartflo, telnyx, twilio, vobiz, vonage"):
        get_codec("nosuch")
    with pytest.raises(ValueError):
        get_codec(None)


def test_create_codec_passes_role_and_options():
    codec = create_codec("awaaz", Role.PROVIDER, chunk_ms=40)
    assert isinstance(codec, AwaazCodec) and codec.role is Role.PROVIDER and codec.capabilities.chunk_ms == 40
    codec = create_codec("knowlarity", "engine", kill_audio=False)
    assert isinstance(codec, KnowlarityCodec) and codec.role is Role.ENGINE and not codec.capabilities.clear
    assert create_codec("awaaz").role is Role.ENGINE
    with pytest.raises(TypeError):
        create_codec("awaaz", bogus=1)
    with pytest.raises(ValueError):
        create_codec("awaaz", "simulator")


@pytest.mark.parametrize(
    "message",
    [
        json.dumps({"event": "start", "stream_sid": "MZ", "start": {"call_sid": "CA"}}),
        json.dumps({"event": "start", "start": {"stream_sid": "MZ", "call_sid": "CA"}}),
        json.dumps({"event": "media", "stream_sid": "MZ", "media": {"payload": ""}}),
    ],
)
def test_detect_awaaz(message):
    assert detect_provider(message) == "awaaz"


@pytest.mark.parametrize(
    "message",
    [
        json.dumps(VERLOOP),
        json.dumps(CALLID),
        json.dumps(json.dumps(VERLOOP)),
        repr(VERLOOP),
        urllib.parse.quote(json.dumps(CALLID)),
        '{"sample_rate": 8000}',
        '{"uuid": "x", "event": "websocket:connected"}',
    ],
)
def test_detect_knowlarity(message):
    assert detect_provider(message) == "knowlarity"


@pytest.mark.parametrize(
    "message",
    [
        b"\x00\x01",
        b"",
        "",
        "garbage",
        "[1,2]",
        '{"hello":"world"}',
        '{"event":"stop","uuid":"x"}',
        '{"event":"dtmf","dtmf":{"digit":"1"}}',
        '{"event":"connected"}',  # alone, it could be Awaaz, Exotel or Smartflo
    ],
)
def test_detect_nothing(message):
    assert detect_provider(message) is None


@pytest.mark.parametrize("connected_first", [True, False])
def test_detect_what_the_simulators_send_first(connected_first):
    call = CallStarted(call_id="c", stream_id="s")
    opening = AwaazCodec(Role.PROVIDER, connected_first=connected_first).send(call)
    assert detect_provider(*opening) == "awaaz"
    for layout in ("verloop", "callid"):
        first = KnowlarityCodec(Role.PROVIDER, layout=layout).send(call)[0]
        assert detect_provider(first) == "knowlarity"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/vaani/knowlarity/setup-call-streams", "knowlarity"),
        ("/v2/login/vaani/knowlarity/setup-call-streams", "knowlarity"),
        ("/x/awaaz", "awaaz"),
        ("/awaaz/", "awaaz"),
        ("/AWAAZ?token=abc", "awaaz"),
        ("wss://host.example/calls/knowlarity?secret=1#frag", "knowlarity"),
        ("/calls/%61waaz", "awaaz"),
        ("/", None),
        ("", None),
        ("/awaazai/stream", None),
        ("/knowlarity-ws", None),
        ("/stream?provider=awaaz", None),
        ("/awaaz/knowlarity", None),
    ],
)
def test_provider_from_path(path, expected):
    assert provider_from_path(path) == expected


def test_protocols_are_sans_io():
    code = (
        "import sys, callengine.protocols\n"
        "bad = sorted(m for m in ('trio', 'trio_websocket', 'callengine.call', 'callengine.server') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_legacy_awaaz_is_routed_by_its_path_and_defaults_to_8k():
    from callengine.protocols import LegacyAwaazCodec

    assert provider_from_path("/s3cret/awaaz-legacy") == "awaaz-legacy"
    assert provider_from_path("/awaaz") == "awaaz"
    engine = LegacyAwaazCodec()
    [started] = engine.receive(json.dumps({"uuid": "u1", "from": "+91", "to": "+92"}))  # no rate
    assert started.sample_rate == 8000 and engine.outbound_rate == 8000
    assert engine.rate_source.startswith("awaaz-legacy's default")
    engine = LegacyAwaazCodec()
    [started] = engine.receive(json.dumps({"uuid": "u2", "sample_rate": 16000}))
    assert started.sample_rate == 16000 and engine.rate_source == "the first message"


# --- detection: what real first frames look like, read as the codecs read them ------------

FORK_EXAMPLE = {"callId": "9f1c@10.0.0.1", "to": "sip:+918000000002@awaaz", "from": "sip:+919800000001@pstn"}


@pytest.mark.parametrize(
    "message, provider, why",
    [
        ("\ufeff" + '{"event":"connected"}', None, "a bare 'connected' event"),
        ('{"event":"media","stream_sid":"MZ"}'.encode(), "awaaz", "in a binary frame"),
        ("\ufeff" + '{"event":"start","start":{}}', "awaaz", "an Awaaz start"),
        ('{"event":"connected"}{"event":"start","start":{}}', "awaaz", "an Awaaz start (stream_sid without account_sid), after a bare 'connected'"),
        (json.dumps({"event": "media", "media": {"payload": ""}}), "awaaz", "'media' event"),
        ("\ufeff" + json.dumps(VERLOOP), "knowlarity", "campaign, the websocket:connected hello"),
        (json.dumps(CALLID) + '{"event":"dtmf","dtmf":"5"}', "knowlarity", "first of 2 JSON texts"),
        (json.dumps(FORK_EXAMPLE), "awaaz-legacy", "awaaz-legacy's 8000 Hz default"),
        (json.dumps({**FORK_EXAMPLE, "sample_rate": 16000}), "awaaz-legacy", "the rate is in the message"),
        (json.dumps({"uuid": "u", "from": "1", "to": "2"}), "knowlarity", "ambiguous"),
        (json.dumps({"callid": "c", "from": "1", "to": "2"}), "knowlarity", "Knowlarity's 16000 Hz default"),
        ('{"sample_rate": 8000}', "knowlarity", "the rate is in the message"),
        (b"\x00" * 320, None, "binary frame"),
        (json.dumps(VERLOOP).encode(), None, "not an Awaaz event"),
        ('{"hello":"world"}', None, "no call id"),
    ],
)
def test_explain_provider(message, provider, why):
    from callengine.protocols.registry import explain_provider

    found, reason = explain_provider(message)
    assert (found, why in reason) == (provider, True), reason


def test_ambiguous_metadata_is_detected_loudly(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="callengine.protocols.registry"):
        assert detect_provider(json.dumps({"uuid": "u"})) == "knowlarity"
        assert detect_provider(json.dumps(FORK_EXAMPLE)) == "awaaz-legacy"
    ambiguous, legacy = caplog.records
    assert ambiguous.levelno == logging.WARNING and "route it by /awaaz-legacy" in ambiguous.getMessage()
    assert legacy.levelno == logging.INFO and "provider awaaz-legacy detected" in legacy.getMessage()


def test_the_legacy_simulator_sends_the_fork_example_and_is_detected():
    from callengine.protocols import LegacyAwaazCodec

    provider = LegacyAwaazCodec(Role.PROVIDER)
    (first,) = provider.send(CallStarted(call_id="c9", caller="+91", called="+92", sample_rate=8000, custom={"k": "v"}))
    assert json.loads(first) == {"callId": "c9", "from": "+91", "to": "+92", "k": "v"}  # no rate: 8 kHz is the default
    assert detect_provider(first) == "awaaz-legacy"
    engine = create_codec(detect_provider(first) or "", Role.ENGINE)
    [started] = engine.receive(first)
    assert (started.call_id, started.sample_rate, started.custom) == ("c9", 8000, {"k": "v"})
    assert getattr(engine, "rate_source").startswith("awaaz-legacy's default")
    # at another rate the layout says so, and the engine reads it from the message
    (first,) = LegacyAwaazCodec(Role.PROVIDER).send(CallStarted(call_id="c9", sample_rate=16000))
    assert json.loads(first)["sample_rate"] == 16000
    # the Knowlarity layouts can still be chosen for a legacy simulator
    (first,) = LegacyAwaazCodec(Role.PROVIDER, layout="verloop").send(CallStarted(call_id="c9", sample_rate=8000))
    assert detect_provider(first) == "knowlarity" and json.loads(first)["sample_rate"] == 8000


@pytest.mark.parametrize(
    "messages, provider",
    [
        (['{"event":"connected","protocol":"Call","version":"1.0.0"}'], "twilio"),
        ([json.dumps({"event": "start", "streamSid": "MZ", "start": {"streamSid": "MZ", "callSid": "CA", "accountSid": "AC"}})], "twilio"),
        (['{"event":"connected","version":"1.0.0"}'], "telnyx"),
        ([json.dumps({"event": "start", "stream_id": "s", "start": {"call_control_id": "v3:x"}})], "telnyx"),
        ([json.dumps({"event": "start", "sequenceNumber": 1, "start": {"callId": "c", "streamId": "s"}})], "plivo"),
        (['{"event":"connected"}', json.dumps({"event": "start", "stream_sid": "MZ", "start": {"stream_sid": "MZ", "call_sid": "CA", "account_sid": "AC"}})], "exotel"),
        (['{"event":"connected"}', json.dumps({"event": "start", "stream_sid": "MZ", "start": {"stream_sid": "MZ", "call_sid": "CA"}})], "awaaz"),
        (['{"event":"connected"}', json.dumps({"event": "start", "sequenceNumber": "1", "start": {"streamSid": "MZ", "callSid": "CA"}})], "twilio"),
        ([json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "uuid": "u-1"})], "vonage"),
        ([json.dumps({"content-type": "audio/l16;rate=8000", "app": "demo"})], "vonage"),
    ],
)
def test_detect_the_json_event_family(messages, provider):
    from callengine.protocols.registry import explain_provider, needs_more

    assert detect_provider(*messages) == provider
    found, why = explain_provider(messages[0])
    assert needs_more(why) == (found is None) == (len(messages) == 2)


@pytest.mark.parametrize("name", ["twilio", "exotel", "plivo", "vobiz", "smartflo", "telnyx", "vonage"])
def test_each_simulated_provider_is_detected_from_its_opening(name):
    """What each simulated provider sends first is detected as that provider, or as the
    provider whose protocol it shares (routed by path in real use)."""
    shared = {"vobiz": "plivo", "smartflo": "twilio"}
    opening = create_codec(name, Role.PROVIDER).send(CallStarted(call_id="c", stream_id="s", sample_rate=8000))
    assert detect_provider(*opening) == shared.get(name, name)
