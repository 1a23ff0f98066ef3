"""The Vonage Voice API WebSocket codec, both roles: the documented wire messages, a round
trip ENGINE <-> PROVIDER, tolerance, errors and their close codes, 20 ms framing, rates,
and a property test that hostile input only ever raises RemoteProtocolError."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callengine.errors import CloseCode, LocalProtocolError, RemoteProtocolError, UnsupportedCommand
from callengine.events import (
    DTMF_DIGITS,
    CallerAudio,
    ClearAcknowledged,
    CallStarted,
    CallStopped,
    Clear,
    Connected,
    Dtmf,
    Event,
    Hangup,
    Mark,
    MarkEchoed,
    PlayAudio,
    Transfer,
    UnknownMessage,
)
from callengine.protocols.base import Codec, Role
from callengine.protocols.vonage import (
    FRAME_MS,
    VONAGE_BUFFER_MESSAGES,
    VONAGE_RATES,
    VonageCodec,
    looks_like_vonage,
    parse_content_type,
)

# --- golden messages, as Vonage's documentation shows them ------------------------------

# [V21] the developer-portal websockets guide: the first message of the current shape.
DOC_FIRST = '{"event":"websocket:connected","content-type":"audio/l16;rate=16000","language":"en-GB","caller-id":"447700900123"}'
# [N16] the Nexmo-era guide: no "event" key, headers and content-type only.
NEXMO_FIRST = '{\n     "app": "demo",\n     "content-type":"audio/l16;rate=16000"\n}'
DOC_DTMF = '{"event":"websocket:dtmf","digit":"5","duration":260}'
DOC_CLEARED = '{"event":"websocket:cleared"}'
DOC_CLEAR = {"action": "clear"}
DOC_NOTIFY = {"action": "notify", "payload": {"name": "m1"}}
# What the NCCO should pass so that the codec knows the call's uuid.
WITH_UUID = {
    "event": "websocket:connected",
    "content-type": "audio/l16;rate=16000",
    "call_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "from": "447700900123",
    "to": "447700900000",
    "lang": "en",
}

CALL = CallStarted(call_id="uuid-1", caller="447700900123", called="447700900000", sample_rate=16000, custom={"lang": "en"})


def engine(first=DOC_FIRST, **options) -> VonageCodec:
    codec = VonageCodec(Role.ENGINE, **options)
    if first is not None:
        codec.receive(first)
    return codec


def provider(call=CALL, **options) -> VonageCodec:
    codec = VonageCodec(Role.PROVIDER, **options)
    if call is not None:
        codec.send(call)
    return codec


def pcm(ms: int, rate: int = 16000, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (rate * ms // 1000)


def remote_error(codec: Codec, message, code: int) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive(message)
    assert info.value.close_code == code
    return info.value


# --- the class surface ----------------------------------------------------------------


def test_names_and_capabilities():
    assert VonageCodec.name == "vonage"
    assert VonageCodec.family == "l16-binary"
    caps = VonageCodec.capabilities
    assert (caps.clear, caps.mark_echo, caps.transfer, caps.hangup_message, caps.dtmf_events) == (True, True, False, False, True)
    assert (caps.inbound_rate, caps.outbound_rate, caps.chunk_ms, caps.lead_ms) == (16000, 16000, 20, 100)
    assert caps.dtmf_keys == frozenset("0123456789*#") and caps.frame_ms == 20
    assert (caps.one_clip_in_flight, caps.min_chunk_bytes) == (False, 0)
    assert FRAME_MS == 20 and VONAGE_RATES == (8000, 16000, 24000) and VONAGE_BUFFER_MESSAGES == 3072


def test_not_started_until_the_first_message():
    codec = VonageCodec()
    assert not codec.started and codec.state == "idle"
    assert (codec.inbound_rate, codec.outbound_rate) == (16000, 16000)
    codec.receive(DOC_FIRST)
    assert codec.started and codec.state == "started" and not codec.stopped


def test_options_are_checked():
    for bad in ({"default_rate": 0}, {"default_rate": "x"}, {"dtmf_shape": "flat"}, {"dtmf_duration_ms": -1},
                {"headers": ["a"]}, {"uuid_header": 3}, {"dtmf_duration_ms": True}):
        with pytest.raises(ValueError):
            VonageCodec(Role.PROVIDER, **bad)


def test_default_rate_shadows_the_class_capabilities():
    codec = VonageCodec(default_rate=8000)
    assert (codec.capabilities.inbound_rate, codec.capabilities.outbound_rate) == (8000, 8000)
    assert VonageCodec.capabilities.inbound_rate == 16000
    assert VonageCodec().capabilities is VonageCodec.capabilities


@pytest.mark.parametrize(
    "message,expected",
    [
        (DOC_FIRST, True),
        (NEXMO_FIRST, True),
        (json.dumps(WITH_UUID), True),
        ("\ufeff" + DOC_FIRST, True),
        ('{"event":"websocket:connected"}', True),
        ('{"Content-Type":"audio/L16;rate=8000"}', True),
        # Knowlarity (Verloop): websocket:connected nested in metadata, no content-type
        (json.dumps({"uuid": "u", "sample_rate": 16000, "metadata": {"event": "websocket:connected"}}), False),
        ('{"event":"connected","protocol":"Call","version":"1.0.0"}', False),  # Twilio/Awaaz
        ('{"content-type":"application/json"}', False),
        ('{"content-type":16000}', False),
        ("not json", False),
        ("[1]", False),
        (DOC_FIRST.encode(), False),  # a binary frame is never the first message
        (pcm(20), False),
    ],
)
def test_looks_like_vonage(message, expected):
    assert looks_like_vonage(message) is expected


# --- ENGINE: receiving the documented messages -------------------------------------------


def test_engine_reads_the_documented_first_message():
    codec = VonageCodec()
    [started] = codec.receive(DOC_FIRST)
    # the guide's own "caller-id" header names the caller
    assert started == CallStarted(call_id="", caller="447700900123", sample_rate=16000, custom={"language": "en-GB"})
    assert started.raw == json.loads(DOC_FIRST)
    assert codec.content_type == "audio/l16;rate=16000"
    assert codec.rate_source == "the first message's content-type"
    assert codec.call_id == ""  # Vonage does not put the uuid in the first frame by itself


def test_engine_reads_the_nexmo_era_first_message():
    [started] = VonageCodec().receive(NEXMO_FIRST)
    assert started == CallStarted(call_id="", sample_rate=16000, custom={"app": "demo"})


def test_engine_reads_the_call_ids_the_ncco_passes():
    codec = VonageCodec()
    [started] = codec.receive(json.dumps(WITH_UUID))
    assert started == CallStarted(
        call_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab", caller="447700900123", called="447700900000", sample_rate=16000,
        custom={"conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "lang": "en"},
    )
    assert codec.call_id == "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    assert codec.conversation_uuid == "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


@pytest.mark.parametrize("key", ["call_uuid", "uuid", "callUuid", "call-uuid", "call_id", "callId"])
def test_engine_call_uuid_header_names(key):
    [started] = VonageCodec().receive(json.dumps({"content-type": "audio/l16;rate=8000", key: "u-9", "other": 1}))
    assert started.call_id == "u-9" and started.custom == {"other": 1}


def test_engine_call_uuid_order_of_preference():
    [started] = VonageCodec().receive(json.dumps({"uuid": "second", "call_uuid": "first"}))
    assert started.call_id == "first" and started.custom == {"uuid": "second"}


def test_engine_caller_audio_is_binary_pcm():
    codec = engine()
    frame = pcm(20)
    assert len(frame) == 640
    assert codec.receive(frame) == [CallerAudio(frame, 16000)]
    assert codec.receive(bytearray(frame)) == [CallerAudio(frame, 16000)]
    assert codec.receive(memoryview(frame)) == [CallerAudio(frame, 16000)]
    assert codec.receive(b"") == []  # an empty frame says nothing
    assert codec.receive(pcm(7)) == [CallerAudio(pcm(7), 16000)]  # any even length is audio


def test_engine_dtmf_documented_shape():
    assert engine().receive(DOC_DTMF) == [Dtmf("5")]


@pytest.mark.parametrize(
    "message",
    [
        {"event": "websocket:dtmf", "digit": "#", "duration": 260},
        {"event": "websocket:dtmf", "dtmf": {"digit": "#", "duration": 260}},
        {"event": "websocket:dtmf", "dtmf": "#"},
        {"event": "websocket:dtmf", "digit": " # "},
    ],
)
def test_engine_dtmf_shapes(message):
    assert engine().receive(json.dumps(message)) == [Dtmf("#")]


def test_engine_dtmf_numeric_and_letters():
    codec = engine()
    assert codec.receive('{"event":"websocket:dtmf","digit":7}') == [Dtmf("7")]
    assert codec.receive('{"event":"websocket:dtmf","digit":"a"}') == [Dtmf("A")]


@pytest.mark.parametrize("digit", ["", "x", "12", None, True, 10, {"digit": "55"}])
def test_engine_dtmf_without_a_valid_digit_is_unknown(digit):
    [event] = engine().receive(json.dumps({"event": "websocket:dtmf", "digit": digit}))
    assert event == UnknownMessage("websocket:dtmf")


def test_engine_notify_echo_is_a_mark_echo():
    codec = engine()
    assert codec.receive('{"event":"websocket:notify","payload":{"name":"m1"}}') == [MarkEchoed("m1")]
    assert codec.receive('{"event":"websocket:notify","payload":{"mark":"m2"}}') == [MarkEchoed("m2")]


@pytest.mark.parametrize(
    "message",
    [
        {"event": "websocket:notify"},
        {"event": "websocket:notify", "payload": {}},
        {"event": "websocket:notify", "payload": {"customKey": "customValue"}},  # the AsyncAPI example
        {"event": "websocket:notify", "payload": {"name": ""}},
        {"event": "websocket:notify", "payload": {"name": 5}},
        {"event": "websocket:notify", "payload": "m1"},
    ],
)
def test_engine_notify_without_a_name_is_unknown(message):
    [event] = engine().receive(json.dumps(message))
    assert event == UnknownMessage("websocket:notify")
    assert event.raw == message


def test_engine_reads_the_cleared_ack_as_known_and_needs_nothing_from_it():
    assert engine().receive(DOC_CLEARED) == []


# --- ENGINE: sending --------------------------------------------------------------------


def test_engine_sends_documented_commands():
    codec = engine()
    assert [json.loads(m) for m in codec.send(Clear())] == [DOC_CLEAR]
    assert [json.loads(m) for m in codec.send(Mark("m1"))] == [DOC_NOTIFY]
    assert codec.send(Hangup()) == []  # the engine closes the socket


def test_engine_transfer_is_unsupported():
    with pytest.raises(UnsupportedCommand, match="REST|PUT /v1/calls"):
        engine().send(Transfer("+447700900001"))


def test_engine_cannot_send_provider_events():
    with pytest.raises(LocalProtocolError):
        engine().send(Dtmf("1"))


def test_engine_commands_before_the_first_message():
    codec = VonageCodec()
    for command in (PlayAudio(pcm(20), 16000), Mark("m"), Clear()):
        with pytest.raises(LocalProtocolError):
            codec.send(command)
    assert codec.send(Hangup()) == []  # closing the socket works in any state


def test_engine_play_audio_must_be_at_the_call_rate():
    with pytest.raises(LocalProtocolError, match="resample"):
        engine().send(PlayAudio(pcm(20, 8000), 8000))


def test_engine_one_frame_per_20_ms():
    codec = engine()
    assert codec.frame_bytes == 640
    assert codec.send(PlayAudio(pcm(20), 16000)) == [pcm(20)]
    frames = codec.send(PlayAudio(pcm(100), 16000))
    assert frames == [pcm(20)] * 5
    assert all(isinstance(f, bytes) for f in frames)
    assert codec.send(PlayAudio(b"", 16000)) == []


def test_engine_short_tail_is_padded_with_silence():
    codec = engine()
    frames = codec.send(PlayAudio(pcm(50, value=3), 16000))
    assert [len(f) for f in frames] == [640, 640, 640]
    assert frames[2] == pcm(10, value=3) + bytes(320)
    [only] = codec.send(PlayAudio(b"\x05\x00", 16000))  # one sample
    assert only == b"\x05\x00" + bytes(638)


@pytest.mark.parametrize("rate,frame", [(8000, 320), (16000, 640), (24000, 960)])
def test_rates(rate, frame):
    codec = engine(json.dumps({"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}"}))
    assert (codec.inbound_rate, codec.outbound_rate, codec.frame_bytes) == (rate, rate, frame)
    assert codec.receive(pcm(20, rate)) == [CallerAudio(pcm(20, rate), rate)]
    assert codec.send(PlayAudio(pcm(30, rate), rate)) == [pcm(20, rate), pcm(10, rate) + bytes(frame // 2)]
    # and the simulated provider frames and checks at the same rate
    sim = provider(CallStarted(call_id="c", sample_rate=rate))
    assert sim.send(CallerAudio(pcm(40, rate), rate)) == [pcm(20, rate)] * 2
    assert sim.receive(pcm(40, rate)) == [PlayAudio(pcm(40, rate), rate)]
    remote_error(sim, pcm(10, rate), CloseCode.INVALID_PAYLOAD)


def test_content_type_without_rate_uses_default_rate():
    codec = engine('{"content-type":"audio/l16"}', default_rate=8000)
    assert codec.inbound_rate == 8000 and codec.rate_source == "vonage's default (default_rate)"
    assert engine('{"event":"websocket:connected"}').inbound_rate == 16000


@pytest.mark.parametrize(
    "value,rate",
    [
        ("audio/l16;rate=16000", 16000),
        ("audio/L16; rate=8000", 8000),
        ("AUDIO/L16;channels=1;rate=24000", 24000),
        ('audio/l16;rate="16000"', 16000),
        ("audio/l16", 12345),
    ],
)
def test_parse_content_type(value, rate):
    assert parse_content_type(value, 12345)[0] == rate


def test_content_type_key_spellings():
    assert engine('{"Content-Type":"audio/l16;rate=8000"}').inbound_rate == 8000
    assert engine('{"content_type":"audio/l16;rate=24000"}').inbound_rate == 24000


# --- ENGINE: tolerance ----------------------------------------------------------------


def test_audio_before_the_first_message_is_skipped():
    codec = VonageCodec()
    assert codec.receive(pcm(20)) == [UnknownMessage("binary before metadata")]
    assert codec.receive(b"\x01") == [UnknownMessage("binary before metadata")]  # even odd: it is skipped
    assert not codec.started
    [started] = codec.receive(DOC_FIRST)
    assert isinstance(started, CallStarted)


def test_events_before_the_first_message_are_skipped():
    codec = VonageCodec()
    assert codec.receive(DOC_DTMF) == [UnknownMessage("websocket:dtmf before metadata")]
    assert not codec.started


def test_second_first_message_is_reported():
    codec = engine()
    assert codec.receive(DOC_FIRST) == [UnknownMessage("second metadata")]
    assert codec.receive(NEXMO_FIRST) == [UnknownMessage("second metadata")]
    assert codec.inbound_rate == 16000
    codec.receive('{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}')
    assert codec.inbound_rate == 16000  # the first one holds


def test_unknown_events_and_text_are_reported():
    codec = engine()
    assert codec.receive('{"event":"websocket:something-new","x":1}') == [UnknownMessage("websocket:something-new")]
    assert codec.receive('{"hello":"there"}') == [UnknownMessage("text")]
    assert codec.receive("not json") == [UnknownMessage("text")]
    assert codec.receive("[1, 2]") == [UnknownMessage("text")]
    assert codec.receive("") == [UnknownMessage("text")]
    assert codec.receive('{"event": 5}') == [UnknownMessage("text")]
    assert codec.started and not codec.stopped


def test_bom_is_dropped():
    codec = VonageCodec()
    [started] = codec.receive("\ufeff" + DOC_FIRST)
    assert isinstance(started, CallStarted)
    assert codec.receive("\ufeff" + DOC_DTMF) == [Dtmf("5")]


def test_joined_json_texts_are_read_one_by_one():
    codec = VonageCodec()
    events = codec.receive(DOC_FIRST + DOC_DTMF + "\n" + '{"event":"websocket:notify","payload":{"name":"m"}}')
    assert [type(e) for e in events] == [CallStarted, Dtmf, MarkEchoed]
    assert codec.receive(DOC_CLEARED + " " + DOC_DTMF) == [Dtmf("5")]


# --- ENGINE: errors and their close codes -----------------------------------------------


@pytest.mark.parametrize("text", ["hello", "", "{oops", "[1]", '"a string"', "42"])
def test_first_message_must_be_a_json_object(text):
    remote_error(VonageCodec(), text, CloseCode.INVALID_PAYLOAD)


@pytest.mark.parametrize(
    "content_type",
    ["audio/l16;rate=0", "audio/l16;rate=1000000", "audio/l16;rate=abc", "audio/l16;rate=16000.5", "audio/pcmu;rate=8000", 16000, ["audio/l16"]],
)
def test_absurd_content_type_is_fatal(content_type):
    err = remote_error(VonageCodec(), json.dumps({"event": "websocket:connected", "content-type": content_type}), CloseCode.INVALID_PAYLOAD)
    assert "vonage" in str(err)


def test_odd_length_caller_audio_is_fatal():
    err = remote_error(engine(), b"\x00" * 641, CloseCode.INVALID_PAYLOAD)
    assert "641 bytes" in str(err)


# --- PROVIDER role ---------------------------------------------------------------------


def test_provider_first_message():
    sim = VonageCodec(Role.PROVIDER)
    [first] = sim.send(CALL)
    assert json.loads(first) == {
        "event": "websocket:connected", "content-type": "audio/l16;rate=16000", "lang": "en",
        "call_uuid": "uuid-1", "from": "447700900123", "to": "447700900000",
    }
    assert list(json.loads(first))[:2] == ["event", "content-type"]
    assert sim.started and sim.call_id == "uuid-1"


def test_provider_first_message_options():
    sim = VonageCodec(Role.PROVIDER, connected_event=False, uuid_header="", headers={"app": "demo", "lang": "fr"})
    [first] = sim.send(CALL)
    # the Nexmo-era shape, no uuid announced; the call's custom wins over the option's headers
    assert json.loads(first) == {"content-type": "audio/l16;rate=16000", "app": "demo", "lang": "en", "from": "447700900123", "to": "447700900000"}
    [first] = VonageCodec(Role.PROVIDER, uuid_header="uuid").send(CALL)
    assert json.loads(first)["uuid"] == "uuid-1"


def test_provider_custom_cannot_override_event_or_content_type():
    [first] = VonageCodec(Role.PROVIDER).send(CallStarted(call_id="c", sample_rate=8000, custom={"content-type": "x", "event": "y"}))
    assert json.loads(first) == {"event": "websocket:connected", "content-type": "audio/l16;rate=8000", "call_uuid": "c"}


def test_provider_caller_audio_is_whole_20_ms_frames():
    sim = provider()
    assert sim.send(CallerAudio(pcm(50), 16000)) == [pcm(20), pcm(20)]  # 10 ms held back
    assert sim.send(CallerAudio(pcm(10), 16000)) == [pcm(20)]
    assert sim.send(CallerAudio(pcm(5), 16000)) == []
    with pytest.raises(LocalProtocolError):
        sim.send(CallerAudio(pcm(20, 8000), 8000))


def test_provider_dtmf_shapes():
    assert [json.loads(m) for m in provider().send(Dtmf("5"))] == [json.loads(DOC_DTMF)]
    nested = provider(dtmf_shape="nested", dtmf_duration_ms=100).send(Dtmf("#"))
    assert [json.loads(m) for m in nested] == [{"event": "websocket:dtmf", "dtmf": {"digit": "#", "duration": 100}}]
    assert provider().send(Dtmf("A")) == []  # Vonage documents 0-9 * # only


def test_provider_mark_echo_clear_ack_and_stop():
    sim = provider()
    assert [json.loads(m) for m in sim.send(MarkEchoed("m1"))] == [{"event": "websocket:notify", "payload": {"name": "m1"}}]
    assert sim.send(ClearAcknowledged()) == ['{"event":"websocket:cleared"}']
    assert sim.send(UnknownMessage("x", raw=b"\x00\x01")) == [b"\x00\x01"]
    assert sim.send(UnknownMessage("raw text", raw="hi")) == ["hi"]
    assert sim.send(UnknownMessage("websocket:foo")) == ['{"event":"websocket:foo"}']
    assert sim.send(CallStopped()) == []  # Vonage ends the leg by closing the socket
    assert sim.stopped


def test_provider_refuses_what_vonage_has_not():
    with pytest.raises(UnsupportedCommand):
        VonageCodec(Role.PROVIDER).send(Connected())
    with pytest.raises(LocalProtocolError):
        provider().send(PlayAudio(pcm(20), 16000))
    with pytest.raises(LocalProtocolError):
        VonageCodec(Role.PROVIDER).send(Dtmf("1"))  # before the first message
    with pytest.raises(LocalProtocolError):
        provider().send(CALL)  # a second first message


def test_provider_reads_documented_commands():
    sim = provider()
    assert sim.receive(json.dumps(DOC_CLEAR)) == [Clear()]
    assert sim.receive(json.dumps(DOC_NOTIFY)) == [Mark("m1")]
    assert sim.receive("\ufeff" + json.dumps(DOC_CLEAR)) == [Clear()]
    [custom] = sim.receive('{"action":"notify","payload":{"customKey":"customValue"}}')
    assert custom == UnknownMessage("notify")
    assert sim.receive('{"action":"dance"}') == [UnknownMessage("dance")]
    assert sim.receive(pcm(20)) == [PlayAudio(pcm(20), 16000)]
    assert sim.receive(pcm(60)) == [PlayAudio(pcm(60), 16000)]  # a whole number of frames
    assert sim.receive(b"") == []


@pytest.mark.parametrize("size", [638, 642, 320, 1000, 1])
def test_provider_refuses_audio_that_is_not_whole_20_ms_frames(size):
    err = remote_error(provider(), b"\x00" * size, CloseCode.INVALID_PAYLOAD)
    assert "20 ms" in str(err) and "640 bytes" in str(err)


def test_provider_catches_a_wrong_engine_rate():
    # an engine that believes the call is 8 kHz sends 320-byte frames to a 16 kHz call
    wrong = engine('{"content-type":"audio/l16;rate=8000"}')
    [frame] = wrong.send(PlayAudio(pcm(20, 8000), 8000))
    remote_error(provider(), frame, CloseCode.INVALID_PAYLOAD)


@pytest.mark.parametrize(
    "message,code",
    [
        ("not json", CloseCode.INVALID_PAYLOAD),
        ("[]", CloseCode.INVALID_PAYLOAD),
        ('{"payload":{}}', CloseCode.INVALID_PAYLOAD),
        ('{"action":""}', CloseCode.INVALID_PAYLOAD),
        ('{"action":"notify"}', CloseCode.INVALID_PAYLOAD),
        ('{"action":"notify","payload":"m1"}', CloseCode.INVALID_PAYLOAD),
    ],
)
def test_provider_errors(message, code):
    remote_error(provider(), message, code)


def test_provider_refuses_commands_before_the_first_message():
    remote_error(VonageCodec(Role.PROVIDER), pcm(20), CloseCode.PROTOCOL_ERROR)
    remote_error(VonageCodec(Role.PROVIDER), json.dumps(DOC_CLEAR), CloseCode.PROTOCOL_ERROR)
    remote_error(VonageCodec(Role.PROVIDER), json.dumps(DOC_NOTIFY), CloseCode.PROTOCOL_ERROR)
    assert VonageCodec(Role.PROVIDER).receive('{"action":"dance"}') == [UnknownMessage("dance")]


# --- round trip ENGINE <-> PROVIDER ---------------------------------------------------


def relay(sender: Codec, receiver: Codec, event: Event) -> list[Event]:
    out: list[Event] = []
    for message in sender.send(event):
        out.extend(receiver.receive(message))
    return out


@pytest.mark.parametrize("rate", VONAGE_RATES)
def test_round_trip(rate):
    sim, eng = VonageCodec(Role.PROVIDER), VonageCodec(Role.ENGINE)
    call = CallStarted(call_id="uuid-7", caller="+441", called="+442", sample_rate=rate, direction="inbound", custom={"lang": "en", "n": 3})
    assert relay(sim, eng, call) == [call]
    assert eng.call_id == "uuid-7" and eng.inbound_rate == eng.outbound_rate == rate
    # caller audio, 20 ms frames
    audio = pcm(60, rate, value=9)
    assert relay(sim, eng, CallerAudio(audio, rate)) == [CallerAudio(pcm(20, rate, value=9), rate)] * 3
    # agent audio, 20 ms frames, the tail padded
    played = relay(eng, sim, PlayAudio(pcm(30, rate, value=4), rate))
    frame = rate * FRAME_MS // 1000 * 2
    assert b"".join(p.pcm for p in played if isinstance(p, PlayAudio)) == pcm(30, rate, value=4) + bytes(frame // 2)
    # DTMF
    assert relay(sim, eng, Dtmf("9")) == [Dtmf("9")]
    # a mark via notify, echoed
    [mark] = relay(eng, sim, Mark("greeting-done"))
    assert mark == Mark("greeting-done")
    assert relay(sim, eng, MarkEchoed(mark.name)) == [MarkEchoed("greeting-done")]
    # clear, acknowledged
    assert relay(eng, sim, Clear()) == [Clear()]
    assert relay(sim, eng, ClearAcknowledged()) == []  # an acknowledgement: nothing follows
    # stop by close: nothing on the wire either way
    assert eng.send(Hangup()) == []
    assert sim.send(CallStopped()) == []
    assert sim.stopped and not eng.stopped  # the engine learns of the end from the socket closing


def test_round_trip_nested_dtmf():
    sim, eng = VonageCodec(Role.PROVIDER, dtmf_shape="nested"), VonageCodec()
    relay(sim, eng, CALL)
    assert [relay(sim, eng, Dtmf(d)) for d in "0123456789*#"] == [[Dtmf(d)] for d in "0123456789*#"]


# --- property tests -------------------------------------------------------------------

EXAMPLES = int(os.environ.get("CALLENGINE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["audio/l16;rate=16000", "audio/l16;rate=8000", "audio/l16;rate=x", "audio/l16", "audio/pcmu", "5", "m1"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "mark", "digit", "duration", "payload"]) | st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)
vonage_objects = st.builds(
    lambda head, body: {**head, **body},
    st.fixed_dictionaries(
        {},
        optional={
            "event": st.sampled_from(["websocket:connected", "websocket:dtmf", "websocket:notify", "websocket:cleared", "x"]) | json_values,
            "action": st.sampled_from(["clear", "notify", "x"]) | json_values,
            "content-type": scalars,
        },
    ),
    st.dictionaries(st.sampled_from(["digit", "dtmf", "payload", "call_uuid", "from", "to", "uuid"]), json_values, max_size=3),
).map(json.dumps)
wire = st.one_of(
    st.binary(max_size=700),
    st.binary(max_size=20).map(lambda b: b * 32),
    st.text(max_size=80),
    json_values.map(json.dumps),
    vonage_objects,
    vonage_objects,
    st.lists(vonage_objects, min_size=2, max_size=3).map("".join),
    vonage_objects.map(lambda t: "\ufeff" + t),
)


def check(codec: VonageCodec, batch) -> None:
    for message in batch:
        try:
            events = codec.receive(message)
        except RemoteProtocolError as exc:
            assert exc.close_code in (CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_PAYLOAD)
            return  # the connection would be closed here
        assert isinstance(events, list) and all(isinstance(e, Event) for e in events)


@pytest.mark.parametrize("role", [Role.ENGINE, Role.PROVIDER])
@pytest.mark.parametrize("after_start", [False, True])
def test_hostile_input_only_raises_remote_protocol_errors(role, after_start):
    @FUZZ
    @given(st.lists(wire, min_size=1, max_size=6))
    def run(batch):
        if role is Role.ENGINE:
            codec = engine(DOC_FIRST if after_start else None)
        else:
            codec = provider(CALL if after_start else None)
        check(codec, batch)

    run()


digits = st.sampled_from("0123456789*#")
provider_events = st.one_of(
    st.binary(max_size=200).map(lambda b: CallerAudio(b[: len(b) // 2 * 2], 16000)),
    digits.map(Dtmf),
    st.text(min_size=1, max_size=10).map(MarkEchoed),
)
engine_commands = st.one_of(
    st.binary(max_size=2000).map(lambda b: PlayAudio(b[: len(b) // 2 * 2], 16000)),
    st.text(min_size=1, max_size=10).map(Mark),
    st.just(Clear()),
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["lang", "app", "n", "conversation_uuid"]),
        json_values.filter(lambda v: "Infinity" not in json.dumps(v) and "NaN" not in json.dumps(v)),
        max_size=3,
    ),
    st.text(max_size=12),
    st.lists(provider_events, max_size=8),
    st.lists(engine_commands, max_size=8),
    st.sampled_from(VONAGE_RATES),
)
def test_what_one_role_sends_the_other_reads_back(custom, call_id, events, commands, rate):
    sim, eng = VonageCodec(Role.PROVIDER), VonageCodec()
    call = CallStarted(call_id=call_id, caller="+441", called="+442", sample_rate=rate, custom=custom)
    assert relay(sim, eng, call) == [call]
    heard = b""
    sent = b""
    for event in events:
        if isinstance(event, CallerAudio):
            event = CallerAudio(event.pcm, rate)
            sent += event.pcm
            for got in relay(sim, eng, event):
                assert isinstance(got, CallerAudio) and len(got.pcm) == rate * FRAME_MS // 1000 * 2
                heard += got.pcm
        else:
            assert relay(sim, eng, event) == [event]
    assert sent.startswith(heard) and len(sent) - len(heard) < rate * FRAME_MS // 1000 * 2
    for command in commands:
        if isinstance(command, PlayAudio):
            command = PlayAudio(command.pcm, rate)
            got = relay(eng, sim, command)
            played = b"".join(p.pcm for p in got if isinstance(p, PlayAudio))
            assert played[: len(command.pcm)] == command.pcm and not any(played[len(command.pcm) :])
            assert len(played) % (rate * FRAME_MS // 1000 * 2) == 0
        else:
            assert relay(eng, sim, command) == [command]


def test_all_sixteen_keys_are_read():
    codec = engine()
    for digit in DTMF_DIGITS:
        assert codec.receive(json.dumps({"event": "websocket:dtmf", "digit": digit})) == [Dtmf(digit)]


# --- end to end: the engine's session and the simulated provider, in virtual time --------
# (trio appears only here, in the test: the codec stays sans-I/O)


async def run_call(agent, start=CALL, caller=None, **provider_options):
    """Run one call of ``agent`` through CallSession against SimulatedProvider, both on
    VonageCodec instances (the codec is not registered); ``caller(sim)`` runs beside."""
    import trio

    from callengine.call.session import CallSession
    from callengine.call.transport import memory_transport_pair
    from callengine.testing.provider import SimulatedProvider

    engine_end, provider_end = memory_transport_pair()
    session = CallSession(engine_end, agent, VonageCodec(Role.ENGINE))
    sim = SimulatedProvider(provider_end, VonageCodec(Role.PROVIDER), start=start, **provider_options)
    with trio.fail_after(60):  # virtual time: a stuck call fails at once instead of spinning
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sim.run)
            if caller is not None:
                nursery.start_soon(caller, sim)
            report = await session.run()
    return sim, report


@pytest.mark.parametrize("rate", VONAGE_RATES)
async def test_end_to_end_play_mark_dtmf_hangup(autojump_clock, rate):
    import trio

    from callengine.audio.generate import tone
    from callengine.call.ledger import MarkState

    seen = {}

    async def agent(call):
        seen["info"] = call.info
        pb = await call.play(tone(440, 0.51, 16000), 16000)  # not a multiple of 20 ms: the tail is padded
        mark = await call.mark("greeting")
        seen["played"] = await pb.wait()
        seen["mark"] = await mark.wait()
        async for event in call:
            if isinstance(event, Dtmf):
                seen["digit"] = event.digit
                break
        await call.hangup()

    async def caller(sim):
        await trio.sleep(1.0)
        await sim.press("7")

    start = CallStarted(call_id="uuid-e2e", caller="+441", called="+442", sample_rate=rate, direction="inbound")
    sim, report = await run_call(agent, start, caller)
    assert seen["info"].call_id == "uuid-e2e" and seen["info"].wire_rate == rate
    assert seen["digit"] == "7"
    assert seen["mark"] is MarkState.REACHED and not seen["played"].interrupted
    # every audio message was one whole 20 ms frame; the mark came back by notify once the
    # audio, its tail padded to a frame, had played
    assert sim.protocol_errors == []
    assert all(len(cmd.pcm) == rate // 50 * 2 for _, cmd in sim.received if isinstance(cmd, PlayAudio))
    assert sim.heard_seconds() == pytest.approx(0.52, abs=1e-6)
    assert [name for _, name in sim.marks_received] == ["greeting"] == [name for _, name in sim.marks_echoed]
    assert sim.marks_echoed[0][0] == pytest.approx(0.52, abs=1e-6)
    assert report.stats.mark_echoes == 1 and report.stats.mark_fallbacks == 0
    # hang-up is the engine closing the socket, normally; no message
    assert report.end_cause == "hangup" and sim.closed_code == 1000
    assert not any(isinstance(cmd, Hangup) for _, cmd in sim.received)


async def test_end_to_end_clear_on_barge_in_by_the_agent(autojump_clock):
    import trio

    from callengine.audio.generate import tone

    results = {}

    async def agent(call):
        pb = await call.play(tone(440, 2.0, 16000), 16000)
        await trio.sleep(0.5)
        results["cut"] = await call.clear()
        results["played"] = await pb.wait()

    sim, report = await run_call(agent)
    assert results["played"].interrupted and results["played"].played_ms == pytest.approx(500, abs=20)
    assert len(sim.clears) == 1
    assert sim.heard_seconds() == pytest.approx(0.5, abs=0.03)
    assert json.loads(next(m for _, m in sim.control_messages if isinstance(m, str))) == {"action": "clear"}
    assert report.end_cause == "agent_returned"


async def test_end_to_end_caller_hangs_up_by_closing(autojump_clock):
    import trio

    async def agent(call):
        async for _ in call:
            pass

    async def caller(sim):
        await trio.sleep(0.5)
        await sim.stop()

    sim, report = await run_call(agent, caller=caller)
    assert report.call_id == "uuid-1" and report.caller == "447700900123"
    assert report.stats.unknown_messages == 0 and report.stats.audio_in_s == pytest.approx(0.5, abs=0.03)
    assert report.end_cause in ("provider_stop", "disconnected")


def test_engine_refuses_a_chunk_that_is_not_whole_frames():
    from callengine.call.config import CallConfig

    assert CallConfig(chunk_ms=40).pacing(VonageCodec.capabilities, "vonage").chunk_s == pytest.approx(0.04)
    with pytest.raises(ValueError, match="20 ms frames"):
        CallConfig(chunk_ms=30).pacing(VonageCodec.capabilities, "vonage")


@FUZZ
@given(wire)
def test_looks_like_vonage_never_raises(message):
    assert looks_like_vonage(message) in (True, False)
