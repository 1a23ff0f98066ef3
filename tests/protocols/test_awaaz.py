import base64
import json

import pytest

from callengine.audio.wav import WAV_HEADER_SIZE, build_wav, parse_wav
from callengine.errors import CloseCode, LocalProtocolError, RemoteProtocolError, UnsupportedCommand
from callengine.events import (
    DTMF_DIGITS,
    CallerAudio,
    CallStarted,
    CallStopped,
    Clear,
    Connected,
    Dtmf,
    Hangup,
    Mark,
    MarkEchoed,
    PlayAudio,
    Transfer,
    UnknownMessage,
)
from callengine.protocols import AwaazCodec, Role
from callengine.protocols._common import b64encode, dumps

CALL = CallStarted(
    call_id="CA-1", stream_id="MZ-1", caller="+919800000001", called="+918000000002", sample_rate=8000,
    direction="outbound", custom={"FirstName": "Jane", "LastName": "Doe"},
)


def pcm_of(num_bytes: int, seed: int = 0) -> bytes:
    return bytes((seed + 7 * i) % 251 for i in range(num_bytes))


def relay(source, target, event):
    """source.send(event) -> target.receive(each message) -> all events."""
    out = []
    for message in source.send(event):
        out.extend(target.receive(message))
    return out


def started_pair(call=CALL, **options):
    engine = AwaazCodec(Role.ENGINE, **options)
    provider = AwaazCodec(Role.PROVIDER, **options)
    events = relay(provider, engine, call)
    assert [e for e in events if isinstance(e, CallStarted)] == [call]
    return engine, provider


def start_message(**overrides) -> str:
    msg = {
        "event": "start",
        "sequence_number": 1,
        "stream_sid": "MZ-top",
        "start": {
            "stream_sid": "MZ-inner",
            "call_sid": "CA-9",
            "media_format": {"encoding": "base64", "sample_rate": 8000, "bit_rate": ""},
            "custom_parameters": {"FirstName": "Jane", "LastName": "Doe"},
        },
    }
    msg.update(overrides)
    return json.dumps(msg)


def started_engine(**overrides) -> AwaazCodec:
    engine = AwaazCodec()
    engine.receive(start_message(**overrides))
    return engine


def media_message(pcm: bytes, **extra) -> str:
    return json.dumps({"event": "media", "stream_sid": "MZ-top", "media": {"payload": base64.b64encode(pcm).decode(), **extra}})


# --- start / connected ---------------------------------------------------------------


@pytest.mark.parametrize("connected_first", [True, False])
def test_start_round_trip_in_both_connected_orders(connected_first):
    engine = AwaazCodec()
    provider = AwaazCodec(Role.PROVIDER, connected_first=connected_first)
    messages = provider.send(CALL)
    assert [json.loads(m)["event"] for m in messages] == (
        ["connected", "start"] if connected_first else ["start", "connected"]
    )
    events = [e for m in messages for e in engine.receive(m)]
    expected = [Connected(), CALL] if connected_first else [CALL, Connected()]
    assert events == expected
    assert engine.started and provider.started
    assert engine.stream_sid == provider.stream_sid == "MZ-1"


def test_provider_start_has_the_exact_awaaz_layout():
    provider = AwaazCodec(Role.PROVIDER)
    call = CallStarted(call_id="CA-1", stream_id="MZ-1", sample_rate=8000, custom={"FirstName": "Jane"})
    connected, start = provider.send(call)
    assert json.loads(connected) == {"event": "connected"}
    assert json.loads(start) == {
        "event": "start",
        "sequence_number": 1,
        "stream_sid": "MZ-1",
        "start": {
            "stream_sid": "MZ-1",
            "call_sid": "CA-1",
            "media_format": {"encoding": "base64", "sample_rate": 8000, "bit_rate": ""},
            "custom_parameters": {"FirstName": "Jane"},
        },
    }


def test_provider_generates_a_stream_sid_when_none_is_given():
    provider = AwaazCodec(Role.PROVIDER)
    provider.send(CallStarted(call_id="CA-1"))
    assert provider.stream_sid.startswith("MZ") and len(provider.stream_sid) > 8
    assert AwaazCodec(Role.PROVIDER, stream_sid="MZ-opt").send(CallStarted(call_id="x"))[1].count("MZ-opt") == 2


def test_explicit_connected_is_not_repeated_by_start():
    provider = AwaazCodec(Role.PROVIDER)
    assert provider.send(Connected()) == ['{"event":"connected"}']
    messages = provider.send(CALL)
    assert [json.loads(m)["event"] for m in messages] == ["start"]


def test_connected_may_repeat_and_come_after_start():
    engine = AwaazCodec()
    assert engine.receive('{"event":"connected"}') == [Connected()]
    engine.receive(start_message())
    assert engine.receive('{"event":"connected","protocol":"Call"}') == [Connected()]


def test_docs_example_start():
    engine = AwaazCodec()
    [started] = engine.receive(start_message())
    assert started == CallStarted(
        call_id="CA-9", stream_id="MZ-top", sample_rate=8000, custom={"FirstName": "Jane", "LastName": "Doe"}
    )
    assert started.raw["sequence_number"] == 1


def test_stream_sid_only_top_level():
    inner = {"call_sid": "CA-9", "media_format": {"sample_rate": 8000}}
    [started] = AwaazCodec().receive(start_message(start=inner))
    assert started.stream_id == "MZ-top" and started.call_id == "CA-9"


def test_stream_sid_only_inside_start():
    msg = json.loads(start_message())
    del msg["stream_sid"]
    engine = AwaazCodec()
    [started] = engine.receive(json.dumps(msg))
    assert started.stream_id == "MZ-inner"
    assert json.loads(engine.send(Clear())[0])["stream_sid"] == "MZ-inner"


def test_call_id_falls_back_to_stream_sid():
    [started] = AwaazCodec().receive(json.dumps({"event": "start", "stream_sid": "MZ-5"}))
    assert started.call_id == "MZ-5" and started.stream_id == "MZ-5" and started.sample_rate == 8000


def test_stream_sid_option_is_the_engine_fallback():
    engine = AwaazCodec(stream_sid="MZ-fallback")
    [started] = engine.receive('{"event":"start","start":{"call_sid":"CA"}}')
    assert started.stream_id == "MZ-fallback"


@pytest.mark.parametrize("rate, expected", [(8000, 8000), ("16000", 16000), (16000.0, 16000), (None, 8000), ("", 8000)])
def test_sample_rate_int_or_numeric_string(rate, expected):
    media_format = {} if rate is None else {"sample_rate": rate}
    engine = AwaazCodec()
    [started] = engine.receive(json.dumps({"event": "start", "stream_sid": "s", "start": {"media_format": media_format}}))
    assert started.sample_rate == expected == engine.inbound_rate
    [audio] = engine.receive(media_message(b"\x01\x00" * 4))
    assert audio.sample_rate == expected


@pytest.mark.parametrize("rate", ["abc", 0, -8000, 10**9, True, 8000.5, [8000], "1e400"])
def test_absurd_sample_rate_is_invalid_payload(rate):
    msg = {"event": "start", "stream_sid": "s", "start": {"media_format": {"sample_rate": rate}}}
    with pytest.raises(RemoteProtocolError) as info:
        AwaazCodec().receive(json.dumps(msg))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_caller_and_called_from_custom_parameters():
    inner = {"call_sid": "CA", "custom_parameters": {"From": "+91111", "To": "+91222", "room_name": "r"}}
    [started] = AwaazCodec().receive(start_message(start=inner))
    assert (started.caller, started.called) == ("+91111", "+91222")
    assert started.custom == {"From": "+91111", "To": "+91222", "room_name": "r"}
    inner = {"call_sid": "CA", "custom_parameters": {"caller": "c", "called": "d"}}
    [started] = AwaazCodec().receive(start_message(start=inner))
    assert (started.caller, started.called) == ("c", "d")


def test_custom_parameters_not_an_object_is_empty():
    [started] = AwaazCodec().receive(start_message(start={"call_sid": "CA", "custom_parameters": "x"}))
    assert started.custom == {}


def test_start_body_not_an_object_is_invalid():
    with pytest.raises(RemoteProtocolError) as info:
        AwaazCodec().receive(start_message(start="nope"))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_second_start_is_ignored_and_reported():
    """Awaaz's own connector carries on after a second start: so does the engine."""
    engine = started_engine()
    [event] = engine.receive(start_message())
    assert isinstance(event, UnknownMessage) and event.kind == "second start"
    assert engine.started and engine.state == "started"


# --- caller audio --------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 320, 1000])
def test_caller_audio_round_trip(size):
    engine, provider = started_pair()
    audio = CallerAudio(pcm_of(size), 8000)
    assert relay(provider, engine, audio) == [audio]


def test_provider_media_counters():
    engine, provider = started_pair()
    first, second = (json.loads(provider.send(CallerAudio(pcm_of(320), 8000))[0]) for _ in range(2))
    assert first["sequence_number"] == 2 and second["sequence_number"] == 3  # start was 1
    assert (first["media"]["chunk"], first["media"]["timestamp"]) == (1, "20")
    assert (second["media"]["chunk"], second["media"]["timestamp"]) == (2, "40")
    assert first["stream_sid"] == "MZ-1"


def test_caller_audio_at_announced_16k_rate():
    call = CallStarted(call_id="c", stream_id="s", sample_rate=16000)
    engine, provider = started_pair(call)
    audio = CallerAudio(pcm_of(640), 16000)
    assert relay(provider, engine, audio) == [audio]
    with pytest.raises(LocalProtocolError):
        provider.send(CallerAudio(pcm_of(320), 8000))


def test_media_odd_length_is_invalid_payload():
    engine = started_engine()
    with pytest.raises(RemoteProtocolError) as info:
        engine.receive(media_message(b"\x01\x02\x03"))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize("media", [{"payload": "not base64!"}, {"payload": "QUJD="}, {"payload": 5}])
def test_media_bad_payload_is_invalid_payload(media):
    engine = started_engine()
    with pytest.raises(RemoteProtocolError) as info:
        engine.receive(json.dumps({"event": "media", "media": media}))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize("media", [{}, None, "x", {"payload": None}])
def test_media_without_payload_is_skipped_and_reported(media):
    engine = started_engine()
    [event] = engine.receive(json.dumps({"event": "media", "media": media}))
    assert isinstance(event, UnknownMessage) and event.kind == "media without payload"
    assert engine.receive(media_message(b"\x01\x00")) == [CallerAudio(b"\x01\x00", 8000)]  # the call goes on


def test_base64_with_line_breaks_is_decoded():
    pcm = pcm_of(320, seed=4)
    wrapped = base64.encodebytes(pcm).decode()  # a newline every 76 characters
    assert "\n" in wrapped
    engine = started_engine()
    assert engine.receive(json.dumps({"event": "media", "media": {"payload": wrapped}})) == [CallerAudio(pcm, 8000)]


def test_json_in_a_binary_frame_and_a_bom_are_read():
    engine = AwaazCodec()
    [started] = engine.receive(b"\xef\xbb\xbf" + start_message().encode())
    assert isinstance(started, CallStarted)
    assert engine.receive(media_message(b"\x02\x00").encode()) == [CallerAudio(b"\x02\x00", 8000)]
    assert engine.receive("\ufeff" + media_message(b"\x03\x00")) == [CallerAudio(b"\x03\x00", 8000)]
    with pytest.raises(RemoteProtocolError) as info:
        engine.receive(b"\x00\x01\x02")  # binary that is not JSON text: still not the protocol
    assert info.value.close_code == CloseCode.UNSUPPORTED_DATA


def test_string_mark_echo_is_accepted():
    engine = started_engine()
    assert engine.receive('{"event":"mark","mark":"turn-1"}') == [MarkEchoed("turn-1")]


def test_media_empty_payload_yields_nothing():
    assert started_engine().receive(media_message(b"")) == []


def test_media_dtmf_and_mark_before_start_are_skipped_and_reported():
    """Awaaz's own connector tolerates them; the engine skips them until start."""
    engine = AwaazCodec()
    for message, kind in [
        (media_message(b"\x00\x00"), "media before start"),
        ('{"event":"dtmf","dtmf":{"digit":"1"}}', "dtmf before start"),
        ('{"event":"mark","mark":{"name":"m"}}', "mark before start"),
    ]:
        [event] = engine.receive(message)
        assert isinstance(event, UnknownMessage) and event.kind == kind
    assert not engine.started
    [started] = engine.receive(start_message())
    assert isinstance(started, CallStarted)


# --- dtmf, mark, stop, unknown -------------------------------------------------------


def test_dtmf_round_trip_every_key():
    engine, provider = started_pair()
    for digit in DTMF_DIGITS:
        assert relay(provider, engine, Dtmf(digit)) == [Dtmf(digit)]


@pytest.mark.parametrize("body, expected", [({"digit": "a"}, "A"), ({"digit": 5}, "5"), ({"digit": " 7 "}, "7")])
def test_dtmf_lenient_digits(body, expected):
    assert started_engine().receive(json.dumps({"event": "dtmf", "dtmf": body})) == [Dtmf(expected)]


@pytest.mark.parametrize("body", [{"digit": "x"}, {"digit": "12"}, {"digit": ""}, {}, None, {"digit": True}, {"digit": 10}])
def test_invalid_dtmf_is_reported_not_fatal(body):
    [event] = started_engine().receive(json.dumps({"event": "dtmf", "dtmf": body}))
    assert isinstance(event, UnknownMessage) and event.kind == "dtmf"


def test_mark_echo_round_trip():
    engine, provider = started_pair()
    assert relay(provider, engine, MarkEchoed("turn-3")) == [MarkEchoed("turn-3")]
    assert json.loads(provider.send(MarkEchoed("m"))[0])["mark"] == {"name": "m"}


def test_mark_echo_shapes():
    engine = started_engine()
    assert engine.receive('{"event":"mark","name":"top"}') == [MarkEchoed("top")]
    [event] = engine.receive('{"event":"mark","mark":{}}')
    assert isinstance(event, UnknownMessage) and event.kind == "mark"


@pytest.mark.parametrize("reason", ["", "callended"])
def test_stop_round_trip(reason):
    engine, provider = started_pair()
    [stopped] = relay(provider, engine, CallStopped(reason=reason))
    assert stopped == CallStopped(reason=reason)
    assert engine.stopped and provider.stopped
    assert stopped.raw["stop"]["call_sid"] == "CA-1"


def test_messages_after_stop_are_reported_as_unknown():
    engine = started_engine()
    engine.receive('{"event":"stop","stop":{"reason":"x"}}')
    [late] = engine.receive(media_message(b"\x01\x02"))
    assert isinstance(late, UnknownMessage) and late.kind == "media"
    [late] = engine.receive('{"event":"stop"}')
    assert isinstance(late, UnknownMessage) and late.kind == "stop"
    with pytest.raises(RemoteProtocolError):
        engine.receive(start_message())
    with pytest.raises(RemoteProtocolError):
        engine.receive("not json")


def test_stop_before_start_is_reported():
    engine = AwaazCodec()
    assert engine.receive('{"event":"stop"}') == [CallStopped()]
    assert not engine.started and engine.stopped


def test_unknown_event_is_reported():
    engine = AwaazCodec()
    [event] = engine.receive('{"event":"heartbeat","x":1}')
    assert event == UnknownMessage(kind="heartbeat") and event.raw == {"event": "heartbeat", "x": 1}


def test_injected_raw_message_from_provider():
    engine, provider = started_pair()
    [msg] = provider.send(UnknownMessage(kind="custom", raw={"event": "custom", "a": 1}))
    assert engine.receive(msg) == [UnknownMessage(kind="custom")]


# --- malformed frames ----------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ENGINE, Role.PROVIDER])
@pytest.mark.parametrize(
    "message, code",
    [
        (b"\x00\x01", CloseCode.UNSUPPORTED_DATA),
        (b"", CloseCode.UNSUPPORTED_DATA),
        ("{not json", CloseCode.INVALID_PAYLOAD),
        ("", CloseCode.INVALID_PAYLOAD),
        ("[1, 2]", CloseCode.INVALID_PAYLOAD),
        ('"start"', CloseCode.INVALID_PAYLOAD),
        ("{}", CloseCode.INVALID_PAYLOAD),
        ('{"event": 5}', CloseCode.INVALID_PAYLOAD),
        ('{"event": ""}', CloseCode.INVALID_PAYLOAD),
        ("[" * 100000, CloseCode.INVALID_PAYLOAD),
    ],
)
def test_malformed_frames(role, message, code):
    codec = AwaazCodec(role)
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive(message)
    assert info.value.close_code == code


def test_non_message_type_is_a_type_error():
    with pytest.raises(TypeError):
        AwaazCodec().receive(123)


# --- engine -> provider --------------------------------------------------------------


def test_each_play_audio_is_one_wav_wrapped_media_message():
    """The engine's playout plan chunks; the codec sends each PlayAudio as it is."""
    engine, provider = started_pair()
    chunks = [pcm_of(320, seed=i) for i in range(3)] + [pcm_of(100, seed=9)]
    messages = [m for chunk in chunks for m in engine.send(PlayAudio(chunk, 8000))]
    assert len(messages) == 4
    decoded = [json.loads(m) for m in messages]
    first = decoded[0]
    assert set(first) == {"event", "sequence_number", "stream_sid", "media"}
    assert first["event"] == "media" and first["stream_sid"] == "MZ-1"
    assert [d["sequence_number"] for d in decoded] == [1, 2, 3, 4]
    assert [d["media"]["chunk"] for d in decoded] == [1, 2, 3, 4]
    assert [d["media"]["timestamp"] for d in decoded] == ["20", "40", "60", "66"]
    payloads = [base64.b64decode(d["media"]["payload"]) for d in decoded]
    assert [len(p) for p in payloads] == [364, 364, 364, 144]
    assert payloads[0] == build_wav(chunks[0], 8000)
    assert b"".join(parse_wav(p).pcm for p in payloads) == b"".join(chunks)
    assert engine.send(PlayAudio(b"", 8000)) == []


def test_play_audio_round_trip_wrapped_and_raw():
    for wav_wrap in (True, False):
        engine, provider = started_pair(wav_wrap=wav_wrap)
        pcm = pcm_of(2000, seed=3)
        events = relay(engine, provider, PlayAudio(pcm, 8000))
        assert all(e.sample_rate == 8000 for e in events)
        assert b"".join(e.pcm for e in events) == pcm
        if not wav_wrap:
            payload = base64.b64decode(json.loads(engine.send(PlayAudio(pcm[:320], 8000))[0])["media"]["payload"])
            assert payload == pcm[:320]


def test_counters_continue_across_clear_and_calls():
    engine, _ = started_pair()
    engine.send(PlayAudio(pcm_of(320), 8000))
    engine.send(PlayAudio(pcm_of(320), 8000))
    engine.send(Clear())
    engine.send(Mark("m"))
    [msg] = engine.send(PlayAudio(pcm_of(320), 8000))
    media = json.loads(msg)
    assert media["sequence_number"] == 3 and media["media"]["chunk"] == 3 and media["media"]["timestamp"] == "60"


def test_chunk_ms_option():
    engine, _ = started_pair(chunk_ms=100)
    assert engine.capabilities.chunk_ms == 100 and AwaazCodec.capabilities.chunk_ms == 20
    messages = engine.send(PlayAudio(pcm_of(1600), 8000))
    assert len(messages) == 1
    assert len(base64.b64decode(json.loads(messages[0])["media"]["payload"])) == 1600 + WAV_HEADER_SIZE
    with pytest.raises(ValueError):
        AwaazCodec(chunk_ms=0)


def test_play_audio_must_be_8k():
    engine, _ = started_pair()
    with pytest.raises(LocalProtocolError):
        engine.send(PlayAudio(pcm_of(640), 16000))
    assert engine.send(PlayAudio(b"", 8000)) == []


def test_mark_and_clear_exact_and_round_trip():
    engine, provider = started_pair()
    [mark] = engine.send(Mark("turn-3"))
    assert json.loads(mark) == {"event": "mark", "stream_sid": "MZ-1", "mark": {"name": "turn-3"}}
    assert provider.receive(mark) == [Mark("turn-3")]
    [clear] = engine.send(Clear())
    assert json.loads(clear) == {"event": "clear", "stream_sid": "MZ-1"}
    assert provider.receive(clear) == [Clear()]


def test_hangup_is_closing_the_socket():
    engine, _ = started_pair()
    assert engine.send(Hangup()) == []
    assert engine.capabilities.hangup_message is False


def test_transfer_is_unsupported():
    engine, _ = started_pair()
    with pytest.raises(UnsupportedCommand, match="transfer"):
        engine.send(Transfer("sales"))
    with pytest.raises(UnsupportedCommand):
        AwaazCodec().send(Transfer())


@pytest.mark.parametrize("command", [PlayAudio(b"\x00\x00", 8000), Mark("m"), Clear(), Hangup()])
def test_commands_before_start_are_local_errors(command):
    with pytest.raises(LocalProtocolError):
        AwaazCodec().send(command)


def test_commands_after_stop_are_still_encoded():
    engine = started_engine()
    engine.receive('{"event":"stop"}')
    assert len(engine.send(PlayAudio(pcm_of(320), 8000))) == 1


def test_wrong_direction_is_a_local_error():
    engine, provider = started_pair()
    with pytest.raises(LocalProtocolError):
        engine.send(Dtmf("1"))
    with pytest.raises(LocalProtocolError):
        provider.send(PlayAudio(pcm_of(2), 8000))


def test_provider_audio_before_start_is_a_local_error():
    provider = AwaazCodec(Role.PROVIDER)
    for event in (CallerAudio(pcm_of(2), 8000), Dtmf("1"), MarkEchoed("m")):
        with pytest.raises(LocalProtocolError):
            provider.send(event)


def test_provider_second_start_is_a_local_error():
    _, provider = started_pair()
    with pytest.raises(LocalProtocolError):
        provider.send(CALL)


# --- provider receive ----------------------------------------------------------------


def test_provider_receive_before_start_is_a_protocol_error():
    provider = AwaazCodec(Role.PROVIDER)
    with pytest.raises(RemoteProtocolError) as info:
        provider.receive('{"event":"clear"}')
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


def test_provider_rejects_a_foreign_stream_sid():
    _, provider = started_pair()
    with pytest.raises(RemoteProtocolError):
        provider.receive('{"event":"clear","stream_sid":"MZ-other"}')
    assert provider.receive('{"event":"clear"}') == [Clear()]


def test_provider_receive_malformed_commands():
    _, provider = started_pair()
    for bad in (
        '{"event":"mark","mark":{}}',
        '{"event":"media","media":{"payload":"***"}}',
        '{"event":"media"}',
        json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEjunk").decode()}}),
        json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\x01\x02\x03").decode()}}),
    ):
        with pytest.raises(RemoteProtocolError):
            provider.receive(bad)
    [event] = provider.receive('{"event":"dance"}')
    assert event == UnknownMessage(kind="dance")


def test_provider_reports_wav_rate():
    _, provider = started_pair()
    payload = base64.b64encode(build_wav(pcm_of(640), 16000)).decode()
    assert provider.receive(json.dumps({"event": "media", "media": {"payload": payload}})) == [
        PlayAudio(pcm_of(640), 16000)
    ]


def test_capabilities():
    caps = AwaazCodec.capabilities
    assert (caps.clear, caps.mark_echo, caps.transfer, caps.hangup_message, caps.dtmf_events) == (
        True, True, False, False, True,
    )
    assert (caps.inbound_rate, caps.outbound_rate, caps.chunk_ms) == (8000, 8000, 20)
    assert 100 <= caps.lead_ms <= 200
    codec = AwaazCodec()
    assert codec.outbound_rate == 8000 and codec.inbound_rate == 8000 and not codec.started
    assert AwaazCodec(role="provider").role is Role.PROVIDER


@pytest.mark.parametrize("sid", ["MZ123", 'odd "sid"\\ with \u00e9 and \n', ""])
def test_media_message_template_matches_json_dumps(sid):
    # the engine formats media messages from a template; the bytes must be dumps' bytes
    codec = AwaazCodec(Role.ENGINE)
    codec.receive(json.dumps({"event": "start", "stream_sid": sid, "start": {"call_sid": "c"}}))
    pcm = bytes(range(256)) * 2
    (msg,) = codec.send(PlayAudio(pcm[:320], 8000))
    (msg2,) = codec.send(PlayAudio(pcm[:160], 8000))
    assert msg == dumps({"event": "media", "sequence_number": 1, "stream_sid": sid,
                         "media": {"chunk": 1, "timestamp": "20", "payload": b64encode(build_wav(pcm[:320], 8000))}})
    assert json.loads(msg2)["media"] == {"chunk": 2, "timestamp": "30", "payload": b64encode(build_wav(pcm[:160], 8000))}
    assert json.loads(msg2)["sequence_number"] == 2
