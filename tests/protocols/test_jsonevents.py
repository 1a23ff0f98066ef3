"""The JSON-event family (Twilio, Exotel, Plivo, Vobiz, Smartflo, Telnyx): each provider's
documented messages read right, what the engine sends has the documented shape, both roles
round-trip, and every provider is as tolerant as the real peers."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.audio.g711 import lin2ulaw, ulaw2lin
from callengine.errors import CloseCode, LocalProtocolError, RemoteProtocolError, UnsupportedCommand
from callengine.events import (
    ClearAcknowledged,
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
from callengine.protocols.base import Role
from callengine.protocols.exotel import ExotelCodec
from callengine.protocols.plivo import PlivoCodec, VobizCodec
from callengine.protocols.smartflo import SmartfloCodec
from callengine.protocols.telnyx import TelnyxCodec
from callengine.protocols.twilio import TwilioCodec

CODECS = [TwilioCodec, ExotelCodec, PlivoCodec, VobizCodec, SmartfloCodec, TelnyxCodec]
IDS = [c.name for c in CODECS]
B64 = lambda data: base64.b64encode(data).decode()  # noqa: E731


def _pair(cls, **provider_options):
    return cls(Role.ENGINE), cls(Role.PROVIDER, **provider_options)


def _start(engine, provider, **fields):
    fields.setdefault("call_id", "CA1")
    fields.setdefault("stream_id", "MZ1")
    fields.setdefault("sample_rate", 8000)
    events = []
    for message in provider.send(CallStarted(**fields)):
        events += engine.receive(message)
    return events


def _through(sender, receiver, event):
    out = []
    for message in sender.send(event):
        out += receiver.receive(message)
    return out


# --- documented messages, as each provider's reference shows them ---------------------------

TWILIO_START = {
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ18ad",
    "start": {"accountSid": "AC12", "streamSid": "MZ18ad", "callSid": "CA12", "tracks": ["inbound"],
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
              "customParameters": {"FirstName": "Jane"}},
}  # fmt: skip
EXOTEL_START = {
    "event": "start", "sequence_number": "1", "stream_sid": "MZab",
    "start": {"stream_sid": "MZab", "call_sid": "CAab", "account_sid": "ACab", "from": "+919876543210", "to": "+918047491899",
              "custom_parameters": {"key1": "value1"}, "media_format": {"encoding": "audio/x-raw", "sample_rate": "16000", "bit_rate": "16"}},
}  # fmt: skip
PLIVO_START = {
    "event": "start", "sequenceNumber": 1,
    "start": {"callId": "c-1", "streamId": "s-1", "accountId": "MA1", "tracks": ["inbound"],
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
    "extra_headers": "campaign=diwali;lang=hi",
}  # fmt: skip
TELNYX_START = {
    "event": "start", "sequence_number": "1", "stream_id": "32DE0DEA",
    "start": {"user_id": "u1", "call_control_id": "v3:abc", "from": "+13122010094", "to": "+13122010095",
              "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}},
}  # fmt: skip


def test_twilio_documented_messages():
    codec = TwilioCodec()
    assert codec.receive(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == [Connected()]
    (start,) = codec.receive(json.dumps(TWILIO_START))
    assert (start.call_id, start.stream_id, start.sample_rate, start.custom) == ("CA12", "MZ18ad", 8000, {"FirstName": "Jane"})
    assert codec.call_ids == {"account_sid": "AC12", "call_sid": "CA12", "stream_sid": "MZ18ad"}
    pcm = ulaw2lin(bytes(range(160)))
    media = {"event": "media", "sequenceNumber": "4", "streamSid": "MZ18ad", "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": B64(bytes(range(160)))}}
    assert codec.receive(json.dumps(media)) == [CallerAudio(pcm=pcm, sample_rate=8000)]
    dtmf = {"event": "dtmf", "streamSid": "MZ18ad", "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}}
    assert codec.receive(json.dumps(dtmf)) == [Dtmf("1")]
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ18ad", "mark": {"name": "my label"}}
    assert codec.receive(json.dumps(mark)) == [MarkEchoed("my label")]
    (stop,) = codec.receive(json.dumps({"event": "stop", "sequenceNumber": "5", "streamSid": "MZ18ad", "stop": {"accountSid": "AC12", "callSid": "CA12"}}))
    assert isinstance(stop, CallStopped)


def test_twilio_engine_messages_have_the_documented_shape():
    codec = TwilioCodec()
    codec.receive(json.dumps(TWILIO_START))
    pcm = b"\x10\x00" * 160
    (media,) = codec.send(PlayAudio(pcm=pcm, sample_rate=8000))
    assert json.loads(media) == {"event": "media", "streamSid": "MZ18ad", "media": {"payload": B64(lin2ulaw(pcm))}}
    assert json.loads(codec.send(Mark("x"))[0]) == {"event": "mark", "streamSid": "MZ18ad", "mark": {"name": "x"}}
    assert json.loads(codec.send(Clear())[0]) == {"event": "clear", "streamSid": "MZ18ad"}
    assert codec.send(Hangup()) == []  # REST or close
    with pytest.raises(UnsupportedCommand, match="twilio: transfer .* REST API"):
        codec.send(Transfer("+91"))


def test_exotel_documented_messages_and_rate():
    codec = ExotelCodec()
    (start,) = codec.receive(json.dumps(EXOTEL_START))
    assert (start.call_id, start.caller, start.called, start.sample_rate) == ("CAab", "+919876543210", "+918047491899", 16000)
    assert (codec.inbound_rate, codec.outbound_rate, codec.account_sid) == (16000, 16000, "ACab")
    pcm = b"\x01\x02" * 1600
    media = {"event": "media", "sequence_number": "3", "stream_sid": "MZab", "media": {"chunk": "2", "timestamp": "200", "payload": B64(pcm)}}
    assert codec.receive(json.dumps(media)) == [CallerAudio(pcm=pcm, sample_rate=16000)]
    dtmf = {"event": "dtmf", "sequence_number": "7", "stream_sid": "MZab", "dtmf": {"digit": "5", "duration": "100"}}
    assert codec.receive(json.dumps(dtmf)) == [Dtmf("5")]
    out = pcm[:3200]
    assert json.loads(codec.send(PlayAudio(pcm=out, sample_rate=16000))[0]) == {"event": "media", "stream_sid": "MZab", "media": {"payload": B64(out)}}
    assert json.loads(codec.send(Clear())[0]) == {"event": "clear", "stream_sid": "MZab"}
    stop = {"event": "stop", "sequence_number": "9", "stream_sid": "MZab", "stop": {"call_sid": "CAab", "account_sid": "ACab", "reason": "callended"}}
    assert codec.receive(json.dumps(stop)) == [CallStopped(reason="callended")]


@pytest.mark.parametrize("cls", [PlivoCodec, VobizCodec])
def test_plivo_documented_messages(cls):
    codec = cls()
    (start,) = codec.receive(json.dumps(PLIVO_START))
    assert (start.call_id, start.stream_id, start.custom) == ("c-1", "s-1", {"campaign": "diwali", "lang": "hi"})
    assert codec.encoding == "mulaw"
    played = {"event": "playedStream", "streamId": "s-1", "name": "customer greeting audio"}
    assert codec.receive(json.dumps(played)) == [MarkEchoed("customer greeting audio")]
    assert codec.receive(json.dumps({"event": "played", "streamId": "s-1", "name": "old"})) == [MarkEchoed("old")]
    assert codec.receive(json.dumps({"event": "clearedAudio", "streamId": "s-1"})) == []  # an ack, not odd
    pcm = b"\x00\x08" * 160
    (play,) = codec.send(PlayAudio(pcm=pcm, sample_rate=8000))
    assert json.loads(play) == {"event": "playAudio", "streamId": "s-1", "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": B64(lin2ulaw(pcm))}}
    assert json.loads(codec.send(Mark("greeting"))[0]) == {"event": "checkpoint", "streamId": "s-1", "name": "greeting"}
    assert json.loads(codec.send(Clear())[0]) == {"event": "clearAudio", "streamId": "s-1"}


@pytest.mark.parametrize("cls", [PlivoCodec, VobizCodec])
def test_plivo_simulator_speaks_the_documented_names(cls):
    """The simulated Plivo echoes a checkpoint as playedStream (not the older "played",
    which the engine still reads) and acknowledges a clear with clearedAudio."""
    engine, provider = _pair(cls)
    _start(engine, provider)
    assert cls.capabilities.clear_ack
    (echo,) = provider.send(MarkEchoed("greeting"))
    assert json.loads(echo) == {"event": "playedStream", "streamId": provider.stream_sid, "sequenceNumber": 2, "name": "greeting"}
    (ack,) = provider.send(ClearAcknowledged())
    assert json.loads(ack) == {"event": "clearedAudio", "streamId": provider.stream_sid, "sequenceNumber": 3}
    assert engine.receive(ack) == []


def test_plivo_l16_at_16k():
    codec = PlivoCodec()
    start = dict(PLIVO_START, start=dict(PLIVO_START["start"], mediaFormat={"encoding": "audio/x-l16", "sampleRate": 16000}))
    codec.receive(json.dumps(start))
    pcm = b"\x01\x00" * 320
    assert json.loads(codec.send(PlayAudio(pcm=pcm, sample_rate=16000))[0])["media"] == {"contentType": "audio/x-l16", "sampleRate": 16000, "payload": B64(pcm)}


def test_smartflo_counts_chunks_and_can_end_the_call_with_a_message():
    codec = SmartfloCodec(hangup="end")
    codec.receive(json.dumps(TWILIO_START))
    first, second = (json.loads(codec.send(PlayAudio(pcm=b"\x00\x00" * 160, sample_rate=8000))[0]) for _ in range(2))
    assert (first["media"]["chunk"], second["media"]["chunk"]) == (1, 2)
    assert json.loads(codec.send(Hangup())[0]) == {"event": "end", "streamSid": "MZ18ad"}
    assert codec.capabilities.hangup_message and not SmartfloCodec().capabilities.hangup_message
    with pytest.raises(ValueError, match="'close' or 'end'"):
        SmartfloCodec(hangup="drop")


def test_telnyx_documented_messages_and_codecs():
    codec = TelnyxCodec()
    (start,) = codec.receive(json.dumps(TELNYX_START))
    assert (start.call_id, start.stream_id, start.caller, codec.encoding) == ("v3:abc", "32DE0DEA", "+13122010094", "alaw")
    (media,) = codec.send(PlayAudio(pcm=b"\x00\x01" * 160, sample_rate=8000))
    assert set(json.loads(media)) == {"event", "media"}  # no stream id on what we send
    assert json.loads(codec.send(Clear())[0]) == {"event": "clear"}
    assert codec.receive(json.dumps({"event": "dtmf", "stream_id": "32DE0DEA", "payload": {"digit": "7"}})) == [Dtmf("7")]
    (error,) = codec.receive(json.dumps({"event": "error", "payload": {"code": 100002, "title": "Unknown error"}}))
    assert isinstance(error, UnknownMessage) and error.kind == "error"
    l16 = TelnyxCodec()
    l16.receive(json.dumps(dict(TELNYX_START, start=dict(TELNYX_START["start"], media_format={"encoding": "L16", "sample_rate": 16000}))))
    media = {"event": "media", "stream_id": "32DE0DEA", "media": {"payload": B64(b"\x01\x02\x03\x04")}}
    assert l16.receive(json.dumps(media)) == [CallerAudio(pcm=b"\x02\x01\x04\x03", sample_rate=16000)]  # RTP L16 is big-endian
    g722 = dict(TELNYX_START, start=dict(TELNYX_START["start"], media_format={"encoding": "G722"}))
    with pytest.raises(RemoteProtocolError, match="G722.*not supported") as err:
        TelnyxCodec().receive(json.dumps(g722))
    assert err.value.close_code == CloseCode.INVALID_PAYLOAD


# --- every provider: round trip and tolerance ------------------------------------------------


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_round_trip_both_roles(cls):
    engine, provider = _pair(cls)
    (started,) = [e for e in _start(engine, provider, caller="+911", called="+912", custom={"k": "v"}) if isinstance(e, CallStarted)]
    assert started.call_id == "CA1" and started.custom["k"] == "v"
    assert engine.started and provider.started
    pcm = b"\x00\x04\xf0\xff" * 80  # survives mu-law and A-law only approximately: compare lengths
    (audio,) = _through(provider, engine, CallerAudio(pcm=pcm, sample_rate=8000))
    assert len(audio.pcm) == len(pcm) and audio.sample_rate == 8000
    assert _through(provider, engine, Dtmf("5")) == [Dtmf("5")]
    assert _through(provider, engine, MarkEchoed("m1")) == [MarkEchoed("m1")]
    out = pcm * 10  # 200 ms: whole frames, and at least Exotel's smallest message
    (play,) = _through(engine, provider, PlayAudio(pcm=out, sample_rate=8000))
    assert len(play.pcm) == len(out)
    assert _through(engine, provider, Mark("m2")) == [Mark("m2")]
    assert _through(engine, provider, Clear()) == [Clear()]
    stop = _through(provider, engine, CallStopped(reason="done"))
    assert stop == [] or isinstance(stop[0], CallStopped)  # Plivo and Vobiz end by closing


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_the_simulator_refuses_audio_that_breaks_the_providers_chunk_rules(cls):
    engine, provider = _pair(cls)
    _start(engine, provider)
    caps = cls.capabilities
    frame = 2 * 8000 * caps.frame_ms // 1000
    smallest = max(caps.min_chunk_bytes, frame, 2)
    bad = []
    if frame:
        bad.append(smallest + frame // 2)  # not whole frames (Twilio, Smartflo, Exotel...)
    if caps.min_chunk_bytes > frame:
        bad.append(caps.min_chunk_bytes - max(frame, 2))  # below the smallest (Exotel, Telnyx)
    if caps.max_chunk_bytes:
        bad.append(caps.max_chunk_bytes + frame)  # above the largest (Exotel)
    for size in bad:
        # the engine's own codec sends what it is given (its playout keeps to the rules)
        for message in engine.send(PlayAudio(pcm=bytes(size), sample_rate=8000)):
            with pytest.raises(RemoteProtocolError) as excinfo:
                provider.receive(message)
            assert excinfo.value.close_code == CloseCode.INVALID_PAYLOAD
    (good,) = _through(engine, provider, PlayAudio(pcm=bytes(smallest), sample_rate=8000))
    assert len(good.pcm) == smallest
    if cls.__name__ in ("TwilioCodec", "SmartfloCodec", "ExotelCodec"):
        assert bad  # the rules the issue names are enforced, not vacuous


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_odd_messages_are_skipped_and_counted_never_fatal(cls):
    engine, provider = _pair(cls)
    sid = cls.sid_key
    early = engine.receive(json.dumps({"event": "media", sid: "MZ1", "media": {"payload": B64(b"\x00" * 160)}}))
    assert [type(e) for e in early] == [UnknownMessage] and early[0].kind == "media before start"
    start_messages = provider.send(CallStarted(call_id="CA1", stream_id="MZ1", sample_rate=8000))
    for m in start_messages:
        engine.receive(m)
    (again,) = engine.receive(start_messages[-1])
    assert again.kind == "second start"
    payload = base64.encodebytes(bytes(range(256)) * 2).decode()  # line breaks every 76 characters
    (audio,) = engine.receive(json.dumps({"event": "media", sid: "MZ1", "media": {"payload": payload}}))
    assert isinstance(audio, CallerAudio)
    (audio,) = engine.receive(json.dumps({"event": "media", sid: "MZ1", "media": {"payload": B64(b"\x00\x00")}}).encode())
    assert isinstance(audio, CallerAudio)  # JSON in a binary frame
    (audio,) = engine.receive("\ufeff" + json.dumps({"event": "media", sid: "MZ1", "media": {"payload": B64(b"\x00\x00")}}))
    assert isinstance(audio, CallerAudio)  # a BOM
    for odd in ({"event": "media", sid: "MZ1"}, {"event": "media", sid: "MZ1", "media": {}}):
        (skipped,) = engine.receive(json.dumps(odd))
        assert skipped.kind == "media without payload"
    (unknown,) = engine.receive(json.dumps({"event": "something-new", sid: "MZ1"}))
    assert unknown.kind == "something-new"
    (bad_digit,) = engine.receive(json.dumps({"event": "dtmf", sid: "MZ1", "dtmf": {"digit": "Z"}}))
    assert bad_digit.kind == "dtmf"


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_what_makes_the_call_impossible_is_an_error_with_the_right_close_code(cls):
    engine = cls()
    for message, code in [
        (b"\x00\x01\x02", CloseCode.UNSUPPORTED_DATA),
        ("not json", CloseCode.INVALID_PAYLOAD),
        ("[1, 2]", CloseCode.INVALID_PAYLOAD),
        (json.dumps({"no": "event"}), CloseCode.INVALID_PAYLOAD),
    ]:
        with pytest.raises(RemoteProtocolError) as err:
            engine.receive(message)
        assert err.value.close_code == code, message
    with pytest.raises(LocalProtocolError, match="before start"):
        engine.send(PlayAudio(pcm=b"\x00\x00", sample_rate=8000))


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_dtmf_keys_the_provider_does_not_carry_are_not_sent_by_its_simulator(cls):
    engine, provider = _pair(cls)
    _start(engine, provider)
    sent = provider.send(Dtmf("A"))
    assert (sent != []) == ("A" in cls.capabilities.dtmf_keys)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.dictionaries(st.sampled_from(["event", "media", "start", "dtmf", "mark", "name", "streamSid", "stream_sid", "stream_id"]), st.one_of(st.text(max_size=20), st.integers(), st.none(), st.dictionaries(st.sampled_from(["payload", "digit", "name", "mediaFormat", "media_format", "encoding", "sampleRate"]), st.one_of(st.text(max_size=20), st.integers())))).map(json.dumps)))
def test_arbitrary_input_is_read_or_refused_with_a_protocol_error(message):
    for cls in CODECS:
        engine = cls()
        for attempt in (json.dumps(TWILIO_START), message, message):
            try:
                engine.receive(attempt)
            except RemoteProtocolError:
                pass
