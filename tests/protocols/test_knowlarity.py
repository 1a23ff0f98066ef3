import base64
import json
import urllib.parse

import pytest

from callengine.audio.wav import build_wav, parse_wav
from callengine.errors import CloseCode, LocalProtocolError, RemoteProtocolError, UnsupportedCommand
from callengine.events import (
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
from callengine.protocols import KnowlarityCodec, Role, parse_metadata
from callengine.protocols.knowlarity import MAX_CLIP_PCM_BYTES, MOD_AUDIO_FORK_MAX_MESSAGE

# The Verloop help-centre examples (inbound and outbound), as sent.
VERLOOP_INBOUND = {
    "uuid": "aosi-adfad-23-ad",
    "sample_rate": 16000,
    "from": "+919800000001",
    "to": "+918000000002",
    "campaign": "",
    "metadata": {"welcome_message": "Welcome to knowlarity", "event": "websocket:connected", "call_type": "inbound"},
}
VERLOOP_OUTBOUND = {**VERLOOP_INBOUND, "campaign": "kl-camp-7", "metadata": {**VERLOOP_INBOUND["metadata"], "call_type": "outbound"}}
# The layout seen in three third-party integrations.
CALLID_LAYOUT = {
    "ivr_data": json.dumps({"client_data": "abc", "client_custom_id": "42"}),
    "callid": "3f1c-uuid",
    "virtual_number": "+918000000002",
    "customer_number": "+919800000001",
    "client_meta_id": "meta-1",
    "event_timestamp": "1718000000",
}

EXPECTED_INBOUND = CallStarted(
    call_id="aosi-adfad-23-ad", stream_id="", caller="+919800000001", called="+918000000002", sample_rate=16000,
    direction="inbound", custom={"welcome_message": "Welcome to knowlarity"},
)
EXPECTED_CALLID = CallStarted(
    call_id="3f1c-uuid", caller="+919800000001", called="+918000000002", sample_rate=16000,
    custom={"client_meta_id": "meta-1", "event_timestamp": "1718000000", "client_data": "abc", "client_custom_id": "42"},
)

CALL = CallStarted(
    call_id="call-1", caller="+919800000001", called="+918000000002", sample_rate=16000, direction="outbound",
    custom={"welcome_message": "hi", "campaign": "c-9", "lang": "hi-IN"},
)


def pcm_of(num_bytes: int, seed: int = 0) -> bytes:
    return bytes((seed + 13 * i) % 253 for i in range(num_bytes))


def relay(source, target, event):
    out = []
    for message in source.send(event):
        out.extend(target.receive(message))
    return out


def started_pair(call=CALL, layout="verloop", **options):
    engine = KnowlarityCodec(Role.ENGINE, **options)
    provider = KnowlarityCodec(Role.PROVIDER, layout=layout, **options)
    assert relay(provider, engine, call) == [call]
    return engine, provider


def started_engine(meta=VERLOOP_INBOUND, **options) -> KnowlarityCodec:
    engine = KnowlarityCodec(**options)
    engine.receive(json.dumps(meta))
    return engine


def receive_metadata(text: str) -> CallStarted:
    [started] = KnowlarityCodec().receive(text)
    return started


# --- metadata ------------------------------------------------------------------------


def test_verloop_inbound_example():
    engine = KnowlarityCodec()
    [started] = engine.receive(json.dumps(VERLOOP_INBOUND))
    assert started == EXPECTED_INBOUND
    assert started.raw == VERLOOP_INBOUND
    assert engine.started and engine.inbound_rate == 16000 and engine.outbound_rate == 16000


def test_verloop_outbound_example_keeps_the_campaign():
    started = receive_metadata(json.dumps(VERLOOP_OUTBOUND))
    assert started.direction == "outbound"
    assert started.custom == {"campaign": "kl-camp-7", "welcome_message": "Welcome to knowlarity"}


def test_callid_layout_with_ivr_data_string():
    assert receive_metadata(json.dumps(CALLID_LAYOUT)) == EXPECTED_CALLID


@pytest.mark.parametrize("layout", ["verloop", "callid"])
@pytest.mark.parametrize(
    "call",
    [
        CALL,
        CallStarted(call_id="c2", sample_rate=8000),
        CallStarted(call_id="c3", caller="1", called="2", sample_rate=16000, direction="inbound", custom={"n": [1, {"a": None}]}),
        CallStarted(call_id="c4", sample_rate=16000, custom={"client_meta_id": "m", "event_timestamp": "9"}),
    ],
)
def test_metadata_round_trip_both_layouts(layout, call):
    started_pair(call, layout=layout)


def test_provider_layouts_have_the_known_keys():
    verloop = json.loads(KnowlarityCodec(Role.PROVIDER).send(CALL)[0])
    assert list(verloop) == ["uuid", "sample_rate", "from", "to", "campaign", "metadata"]
    assert verloop["campaign"] == "c-9"
    assert verloop["metadata"] == {"welcome_message": "hi", "lang": "hi-IN", "event": "websocket:connected", "call_type": "outbound"}
    callid = json.loads(KnowlarityCodec(Role.PROVIDER, layout="callid").send(CALL)[0])
    assert list(callid) == ["ivr_data", "callid", "virtual_number", "customer_number", "client_meta_id", "event_timestamp"]
    assert isinstance(callid["ivr_data"], str)
    assert json.loads(callid["ivr_data"]) == {"welcome_message": "hi", "campaign": "c-9", "lang": "hi-IN", "call_type": "outbound"}


def test_double_encoded_json():
    assert receive_metadata(json.dumps(json.dumps(VERLOOP_INBOUND))) == EXPECTED_INBOUND
    assert receive_metadata(json.dumps(json.dumps(json.dumps(CALLID_LAYOUT)))) == EXPECTED_CALLID


def test_python_literal_dict():
    assert receive_metadata(repr(VERLOOP_INBOUND)) == EXPECTED_INBOUND
    assert receive_metadata(str(CALLID_LAYOUT)) == EXPECTED_CALLID
    started = receive_metadata("{'uuid': 'u', 'sample_rate': 8000, 'vip': True, 'note': None, 'tags': ('a', 'b'), 1: 'x'}")
    assert started.call_id == "u" and started.sample_rate == 8000
    assert started.custom == {"vip": True, "note": None, "tags": ["a", "b"], "1": "x"}


def test_python_literal_is_never_evaluated_as_code():
    with pytest.raises(RemoteProtocolError):
        receive_metadata("{'uuid': __import__('os').getcwd()}")


def test_url_encoded_whole_frame():
    assert receive_metadata(urllib.parse.quote(json.dumps(VERLOOP_INBOUND))) == EXPECTED_INBOUND
    assert receive_metadata(urllib.parse.quote_plus(json.dumps(VERLOOP_INBOUND))) == EXPECTED_INBOUND


def test_metadata_field_as_json_string_or_url_encoded():
    inner = VERLOOP_INBOUND["metadata"]
    for encoded in (json.dumps(inner), urllib.parse.quote(json.dumps(inner)), urllib.parse.quote_plus(json.dumps(inner)), repr(inner)):
        assert receive_metadata(json.dumps({**VERLOOP_INBOUND, "metadata": encoded})) == EXPECTED_INBOUND


def test_ivr_data_as_python_literal_or_object():
    ivr = {"client_data": "abc", "client_custom_id": "42"}
    for value in (repr(ivr), ivr):
        assert receive_metadata(json.dumps({**CALLID_LAYOUT, "ivr_data": value})) == EXPECTED_CALLID


def test_undecodable_nested_field_is_kept():
    started = receive_metadata(json.dumps({"uuid": "u", "metadata": "plain words", "ivr_data": [1, 2]}))
    assert started.custom == {"metadata": "plain words", "ivr_data": [1, 2]}


def test_fields_may_come_from_nested_metadata():
    started = receive_metadata(json.dumps({"metadata": {"call_id": "nested", "sample_rate": "8000", "from": "9"}}))
    assert (started.call_id, started.sample_rate, started.caller) == ("nested", 8000, "9")


def test_unknown_top_level_keys_go_to_custom():
    started = receive_metadata(json.dumps({"uuid": "u", "tenant": "t1", "priority": 3}))
    assert started.custom == {"tenant": "t1", "priority": 3}


def test_missing_call_id_is_accepted_as_empty():
    started = receive_metadata(json.dumps({"from": "+91", "sample_rate": 16000}))
    assert started.call_id == "" and started.caller == "+91"


def test_numeric_call_id_is_spelled_out():
    assert receive_metadata('{"callid": 12345}').call_id == "12345"


@pytest.mark.parametrize("rate, expected", [("8000", 8000), (8000, 8000), ("16000.0", 16000), (None, 16000), ("", 16000)])
def test_sample_rate(rate, expected):
    meta = {"uuid": "u"} if rate is None else {"uuid": "u", "sample_rate": rate}
    engine = started_engine(meta)
    assert engine.inbound_rate == expected == engine.outbound_rate
    assert engine.receive(b"\x00\x00") == [CallerAudio(b"\x00\x00", expected)]


@pytest.mark.parametrize("rate", ["fast", 0, -16000, 10**8, True, 16000.5, {"hz": 16000}])
def test_absurd_sample_rate_is_rejected(rate):
    with pytest.raises(RemoteProtocolError) as info:
        receive_metadata(json.dumps({"uuid": "u", "sample_rate": rate}))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("garbage {{{", "not JSON"),
        ("[1, 2, 3]", "a list"),
        ('"just words"', "a string"),
        (json.dumps(json.dumps("words")), "a string"),
        ("42", "a int"),
        ("null", "NoneType"),
        ("{'a': 1", "not JSON"),
        ("[" * 50000, "not JSON"),
    ],
)
def test_malformed_metadata_says_what_was_wrong(text, says):
    with pytest.raises(RemoteProtocolError) as info:
        KnowlarityCodec().receive(text)
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD
    assert says in str(info.value)


def test_parse_metadata_public_helper():
    assert parse_metadata(json.dumps(VERLOOP_INBOUND)) == VERLOOP_INBOUND
    with pytest.raises(RemoteProtocolError):
        parse_metadata(b"{}")


# --- caller audio --------------------------------------------------------------------


def test_binary_before_metadata_is_skipped_and_reported():
    engine = KnowlarityCodec()
    [event] = engine.receive(b"\x00\x01")
    assert isinstance(event, UnknownMessage) and event.kind == "binary before metadata"
    [started] = engine.receive(json.dumps(VERLOOP_INBOUND))
    assert isinstance(started, CallStarted) and engine.started


def test_empty_frame_after_audio_is_a_graceful_end():
    """mod_audio_fork's graceful shutdown: one empty binary frame, then it waits for us."""
    assert KnowlarityCodec().receive(b"") == []  # before the metadata: nothing
    engine = started_engine()
    assert engine.receive(pcm_of(640)) == [CallerAudio(pcm_of(640), 16000)]
    [stop] = engine.receive(b"")
    assert isinstance(stop, CallStopped) and "graceful" in stop.reason
    assert engine.stopped
    lenient = started_engine(empty_frame_ends=False)
    lenient.receive(pcm_of(640))
    assert lenient.receive(b"") == []


def test_bom_and_joined_json_texts_and_drachtio_dtmf():
    engine = KnowlarityCodec()
    joined = "\ufeff" + json.dumps(VERLOOP_INBOUND) + json.dumps({"event": "dtmf", "dtmf": {"digit": "4"}})
    [started, key] = engine.receive(joined)
    assert isinstance(started, CallStarted) and key == Dtmf("4")
    assert engine.receive(json.dumps({"dtmf": "5", "duration": 100, "source": "rfc2833"})) == [Dtmf("5")]
    both = json.dumps({"dtmf": "6"}) + "\n" + json.dumps({"event": "stop"})
    [six, stop] = engine.receive(both)
    assert six == Dtmf("6") and isinstance(stop, CallStopped)


def test_empty_binary_frames_are_ignored_with_empty_frame_ends_off():
    engine = KnowlarityCodec(empty_frame_ends=False)
    assert engine.receive(b"") == []
    engine.receive(json.dumps(VERLOOP_INBOUND))
    assert engine.receive(b"") == []


@pytest.mark.parametrize("sizes", [[640, 640], [3, 1, 0, 5, 7, 2, 0, 1, 1], [1], [1, 1], [8191, 1, 8192]])
def test_odd_bytes_are_carried_exactly(sizes):
    engine = started_engine(empty_frame_ends=False)  # empty frames amid the audio are ignored
    data = pcm_of(sum(sizes))
    out, offset = [], 0
    for size in sizes:
        events = engine.receive(data[offset : offset + size])
        offset += size
        assert all(isinstance(e, CallerAudio) and e.sample_rate == 16000 and e.pcm for e in events)
        out.extend(e.pcm for e in events)
    assert b"".join(out) == data[: len(data) // 2 * 2]


def test_caller_audio_round_trip():
    engine, provider = started_pair()
    audio = CallerAudio(pcm_of(640), 16000)
    assert provider.send(audio) == [audio.pcm]
    assert relay(provider, engine, audio) == [audio]
    assert provider.send(CallerAudio(b"", 16000)) == []
    with pytest.raises(LocalProtocolError):
        provider.send(CallerAudio(pcm_of(320), 8000))


def test_stop_is_the_flush_frame_and_the_engine_reads_it_as_the_end():
    engine, provider = started_pair()
    assert provider.send(CallStopped()) == [b""]
    assert relay(KnowlarityCodec(Role.PROVIDER), KnowlarityCodec(), CallStopped()) == []  # not started yet
    [stop] = engine.receive(b"")
    assert isinstance(stop, CallStopped)
    with pytest.raises(LocalProtocolError):
        provider.send(CALL)


# --- text after the metadata ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"event":"dtmf","digit":"5"}', Dtmf("5")),
        ('{"event":"websocket:dtmf","dtmf":{"digit":"#"}}', Dtmf("#")),
        ('{"type":"dtmf","data":{"digit":"b"}}', Dtmf("B")),
        ('{"event":"dtmf","dtmf":7}', Dtmf("7")),
        ('{"event":"stop","reason":"caller hung up"}', CallStopped(reason="caller hung up")),
        ('{"event":"websocket:disconnected"}', CallStopped()),
        ("{'type': 'hangup'}", CallStopped()),
        ('{"event":"dtmf","digit":"x"}', UnknownMessage(kind="dtmf")),
        ('{"event":"transcription","text":"hi"}', UnknownMessage(kind="transcription")),
        ('{"a":1}', UnknownMessage(kind="text")),
        ("hello there", UnknownMessage(kind="text")),
        ("", UnknownMessage(kind="text")),
        ("[1,2]", UnknownMessage(kind="text")),
        (json.dumps(VERLOOP_INBOUND), UnknownMessage(kind="text")),
    ],
)
def test_text_after_metadata_is_never_fatal(text, expected):
    assert started_engine().receive(text) == [expected]


def test_messages_after_a_stop_are_unknown():
    engine = started_engine()
    assert engine.receive('{"event":"stop"}') == [CallStopped()]
    assert engine.stopped
    [late] = engine.receive(b"\x01\x02")
    assert late == UnknownMessage(kind="binary") and late.raw == b"\x01\x02"
    assert engine.receive('{"event":"dtmf","digit":"1"}') == [UnknownMessage(kind="dtmf")]
    assert engine.receive("words") == [UnknownMessage(kind="text")]
    # the writer may race the reader: commands are still encoded
    assert len(engine.send(Hangup())) == 1


# --- engine -> provider --------------------------------------------------------------


def play_data(message: str) -> dict:
    msg = json.loads(message)
    assert msg["type"] == "playAudio" and set(msg) == {"type", "data"}
    return msg["data"]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_play_audio_is_one_wav_file(rate):
    engine, provider = started_pair()
    pcm = pcm_of(rate // 5 * 2)  # 200 ms
    [message] = engine.send(PlayAudio(pcm, rate))
    data = play_data(message)
    assert set(data) == {"audioContentType", "audioContent"} and data["audioContentType"] == "wave"
    wav = parse_wav(base64.b64decode(data["audioContent"]))
    assert (wav.pcm, wav.sample_rate) == (pcm, rate)
    assert provider.receive(message) == [PlayAudio(pcm, rate)]


def test_long_audio_is_split_at_max_clip_ms():
    engine, provider = started_pair(max_clip_ms=1000)
    pcm = pcm_of(16000 * 2 * 5 // 2)  # 2.5 s at 16 kHz
    messages = engine.send(PlayAudio(pcm, 16000))
    events = [e for m in messages for e in provider.receive(m)]
    assert [e.duration for e in events] == [1.0, 1.0, 0.5]
    assert b"".join(e.pcm for e in events) == pcm


def test_size_bound_of_a_ten_second_clip():
    engine, _ = started_pair()
    pcm = pcm_of(16000 * 2 * 10)
    [message] = engine.send(PlayAudio(pcm, 16000))
    assert 420_000 < len(message) < 430_000  # base64 of a 10 s 16 kHz WAV is ~427 KB
    assert len(message) < MOD_AUDIO_FORK_MAX_MESSAGE
    # Rates that would overflow the frame limit within max_clip_ms are split by bytes.
    loud = pcm_of(48000 * 2 * 10)
    messages = engine.send(PlayAudio(loud, 48000))
    assert len(messages) == 2 and all(len(m) < MOD_AUDIO_FORK_MAX_MESSAGE for m in messages)
    assert len(base64.b64decode(play_data(messages[0])["audioContent"])) == MAX_CLIP_PCM_BYTES + 44


def test_max_clip_ms_must_fit_the_frame_limit():
    KnowlarityCodec(max_clip_ms=15000)
    with pytest.raises(ValueError, match="message limit"):
        KnowlarityCodec(max_clip_ms=16000)
    with pytest.raises(ValueError):
        KnowlarityCodec(clip_ms=500, max_clip_ms=400)
    with pytest.raises(ValueError):
        KnowlarityCodec(clip_ms=0)
    with pytest.raises(ValueError):
        KnowlarityCodec(layout="twilio")


def test_empty_play_audio_sends_nothing():
    engine, _ = started_pair()
    assert engine.send(PlayAudio(b"", 16000)) == []


def test_hangup_exact_json():
    engine, provider = started_pair()
    [message] = engine.send(Hangup())
    assert json.loads(message) == {
        "type": "playAudio",
        "data": {"audioContentType": "wave", "audioContent": "None", "textContent": "asr_disconnect=true"},
    }
    assert provider.receive(message) == [Hangup()]


@pytest.mark.parametrize("target", ["default", "sales", "agent_2"])
def test_transfer_exact_json(target):
    engine, provider = started_pair()
    [message] = engine.send(Transfer(target))
    assert json.loads(message) == {
        "type": "playAudio",
        "data": {
            "audioContentType": "wave",
            "audioContent": "None",
            "textContent": f"asr_disconnect=true,parameter1={target}",
        },
    }
    assert provider.receive(message) == [Transfer(target)]


def test_default_transfer_target():
    engine, _ = started_pair()
    assert json.loads(engine.send(Transfer())[0])["data"]["textContent"] == "asr_disconnect=true,parameter1=default"


@pytest.mark.parametrize("target", ["a,b", "a=b", "line\nbreak", "cr\r", "", "tab\t"])
def test_transfer_target_is_validated(target):
    engine, _ = started_pair()
    with pytest.raises(LocalProtocolError):
        engine.send(Transfer(target))


def test_clear_is_kill_audio_and_configurable():
    engine, provider = started_pair()
    [message] = engine.send(Clear())
    assert json.loads(message) == {"type": "killAudio"}
    assert provider.receive(message) == [Clear()]
    quiet, _ = started_pair(kill_audio=False)
    assert quiet.send(Clear()) == []
    assert quiet.capabilities.clear is False and engine.capabilities.clear is True
    assert KnowlarityCodec.capabilities.clear is True


def test_mark_sends_nothing():
    engine, _ = started_pair()
    assert engine.send(Mark("m")) == []


def test_engine_never_sends_binary():
    engine, _ = started_pair()
    out = []
    for command in (PlayAudio(pcm_of(6400), 16000), Clear(), Mark("m"), Transfer("x"), Hangup()):
        out.extend(engine.send(command))
    assert out and all(isinstance(m, str) for m in out)


@pytest.mark.parametrize("command", [PlayAudio(b"\x00\x00", 16000), Clear(), Mark("m"), Hangup(), Transfer()])
def test_commands_before_metadata_are_local_errors(command):
    with pytest.raises(LocalProtocolError):
        KnowlarityCodec().send(command)


def test_wrong_direction_is_a_local_error():
    engine, provider = started_pair()
    with pytest.raises(LocalProtocolError):
        engine.send(CallerAudio(b"\x00\x00", 16000))
    with pytest.raises(LocalProtocolError):
        provider.send(Hangup())


@pytest.mark.parametrize("event", [Dtmf("5"), MarkEchoed("m"), Connected()])
def test_provider_cannot_send_what_knowlarity_lacks(event):
    _, provider = started_pair()
    with pytest.raises(UnsupportedCommand):
        provider.send(event)


def test_provider_audio_before_metadata_is_a_local_error():
    with pytest.raises(LocalProtocolError):
        KnowlarityCodec(Role.PROVIDER).send(CallerAudio(b"\x00\x00", 16000))


def test_provider_injects_raw_frames():
    engine, provider = started_pair()
    assert provider.send(UnknownMessage(kind="x", raw='{"event":"dtmf","digit":"9"}')) == ['{"event":"dtmf","digit":"9"}']
    assert relay(provider, engine, UnknownMessage(kind="x", raw={"event": "dtmf", "digit": "9"})) == [Dtmf("9")]


# --- provider receive ----------------------------------------------------------------


def test_provider_accepts_raw_audio_with_sample_rate():
    _, provider = started_pair()
    pcm = pcm_of(320)
    message = json.dumps({"type": "playAudio", "data": {"audioContentType": "raw", "sampleRate": "8000", "audioContent": base64.b64encode(pcm).decode()}})
    assert provider.receive(message) == [PlayAudio(pcm, 8000)]


def test_provider_audio_then_disconnect_in_one_message():
    _, provider = started_pair()
    pcm = pcm_of(320)
    message = json.dumps({"type": "playAudio", "data": {"audioContentType": "wav", "audioContent": base64.b64encode(build_wav(pcm, 16000)).decode(), "textContent": "asr_disconnect=true"}})
    assert provider.receive(message) == [PlayAudio(pcm, 16000), Hangup()]


@pytest.mark.parametrize(
    "message, code",
    [
        (b"\x00\x00", CloseCode.UNSUPPORTED_DATA),
        ("not json", CloseCode.INVALID_PAYLOAD),
        ('{"data":{}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio"}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContentType":"mp3","audioContent":"AAAA"}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContentType":"raw","audioContent":"AAAA"}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":8000,"audioContent":"AA=="}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContentType":"wave","audioContent":"AAAA"}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContentType":"wave","audioContent":"%%%"}}', CloseCode.INVALID_PAYLOAD),
        ('{"type":"playAudio","data":{"audioContent":"None","textContent":5}}', CloseCode.INVALID_PAYLOAD),
    ],
)
def test_provider_rejects_malformed_commands(message, code):
    _, provider = started_pair()
    with pytest.raises(RemoteProtocolError) as info:
        provider.receive(message)
    assert info.value.close_code == code


def test_provider_reports_unknown_commands():
    _, provider = started_pair()
    assert provider.receive('{"type":"mark","data":{"name":"x"}}') == [UnknownMessage(kind="mark")]
    assert provider.receive('{"type":"playAudio","data":{"audioContent":"None","textContent":"hello=1"}}') == [
        UnknownMessage(kind="playAudio")
    ]


def test_provider_receive_before_metadata_is_a_protocol_error():
    provider = KnowlarityCodec(Role.PROVIDER)
    with pytest.raises(RemoteProtocolError) as info:
        provider.receive('{"type":"killAudio"}')
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


def test_capabilities():
    caps = KnowlarityCodec.capabilities
    assert (caps.clear, caps.mark_echo, caps.transfer, caps.hangup_message, caps.dtmf_events) == (
        True, False, True, True, False,
    )
    assert (caps.inbound_rate, caps.outbound_rate, caps.chunk_ms, caps.lead_ms) == (16000, 16000, 200, 400)
    assert KnowlarityCodec(clip_ms=500).capabilities.chunk_ms == 500


def test_default_rate_applies_only_when_the_metadata_has_none():
    meta = {k: v for k, v in VERLOOP_INBOUND.items() if k != "sample_rate"}
    [started] = KnowlarityCodec(default_rate=8000).receive(json.dumps(meta))
    assert started.sample_rate == 8000
    [started] = KnowlarityCodec(default_rate=8000).receive(json.dumps(VERLOOP_INBOUND))
    assert started.sample_rate == VERLOOP_INBOUND["sample_rate"]
    with pytest.raises(ValueError):
        KnowlarityCodec(default_rate=5)
