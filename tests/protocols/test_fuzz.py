"""Property tests: hostile input never escapes as anything but RemoteProtocolError, and
what one role sends the other role reads back unchanged."""

import base64
import json
import os
import struct
import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callengine.audio.wav import build_wav
from callengine.errors import RemoteProtocolError
from callengine.events import DTMF_DIGITS, CallerAudio, CallStarted, Dtmf, Event, MarkEchoed, PlayAudio
from callengine.protocols import AwaazCodec, KnowlarityCodec, Role, detect_provider

# CALLENGINE_FUZZ_EXAMPLES=5000 digs deeper; the default keeps the suite quick.
EXAMPLES = int(os.environ.get("CALLENGINE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=150, deadline=None)

EVENT_NAMES = [
    "connected", "start", "media", "dtmf", "mark", "stop", "clear",
    "playAudio", "killAudio", "websocket:dtmf", "websocket:connected", "hangup", "",
]
FIELD_NAMES = [
    "event", "type", "start", "media", "dtmf", "mark", "stop", "data", "stream_sid", "call_sid",
    "payload", "media_format", "sample_rate", "custom_parameters", "digit", "name", "reason",
    "uuid", "callid", "metadata", "ivr_data", "from", "to", "audioContentType", "audioContent",
    "textContent", "sampleRate",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["8000", "16000", "None", "wave", "raw", "asr_disconnect=true", "RIFF", "AAAA", "AA=="])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5),
    max_leaves=15,
)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
# RIFF/WAVE files whose header fields are random: the parser must reject or decode them.
wav_like = st.builds(
    lambda size, tag, channels, rate, align, bits, data_size, body: struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", size, b"WAVE", b"fmt ", 16, tag, channels, rate, rate, align, bits,
        b"data", data_size,
    )
    + body,
    u32, st.sampled_from([1, 3, 0xFFFE]) | u16, st.integers(0, 9) | u16, st.sampled_from([8000, 16000]) | u32,
    u16, st.sampled_from([8, 16, 24, 32]) | u16, st.sampled_from([0, 0xFFFFFFFF]) | u32, st.binary(max_size=64),
)
b64_audio = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=100).map(lambda b: build_wav(b[: len(b) // 2 * 2], 8000)),
    st.binary(max_size=60).map(lambda b: b"RIFF" + b),
    wav_like,
).map(lambda b: base64.b64encode(b).decode())
realistic_bodies = st.fixed_dictionaries(
    {},
    optional={
        "payload": b64_audio | json_values,
        "digit": st.sampled_from(list(DTMF_DIGITS) + ["x", "", "12"]) | json_values,
        "name": st.text(max_size=10) | json_values,
        "sample_rate": json_values,
        "media_format": st.fixed_dictionaries({}, optional={"sample_rate": json_values}) | json_values,
        "stream_sid": st.text(max_size=10) | json_values,
        "audioContentType": st.sampled_from(["wave", "wav", "raw", "mp3"]) | json_values,
        "audioContent": b64_audio | st.just("None") | json_values,
        "textContent": st.sampled_from(["asr_disconnect=true", "asr_disconnect=true,parameter1=x", "a=b"]) | json_values,
        "sampleRate": st.sampled_from([8000, "16000", 0, "x"]) | json_values,
    },
)


@st.composite
def event_dicts(draw):
    """Messages shaped like the real ones (event/type names, nested bodies), values random."""
    name = draw(st.sampled_from(EVENT_NAMES))
    body = draw(realistic_bodies | realistic_bodies | json_values)
    # Awaaz reads "event", Knowlarity's commands "type": set both, so each codec gets a
    # real name most of the time, and sometimes the other one's.
    msg = {"event": name, "type": draw(st.sampled_from(EVENT_NAMES)), name or "body": body}
    for key in draw(st.sets(st.sampled_from(["event", "type"]), max_size=1)):
        del msg[key]
    if draw(st.booleans()):
        msg["stream_sid"] = draw(st.just("s") | json_values)
    if draw(st.booleans()):
        msg["data"] = body
    extra_keys = st.sampled_from([f for f in FIELD_NAMES if f not in ("event", "type")])
    msg.update(draw(st.dictionaries(extra_keys, json_values, max_size=2)))
    return msg


def encodings(value):
    """Ways a peer might put a structure on the wire, well-formed or not."""
    return st.sampled_from(
        [
            json.dumps(value),
            repr(value),
            json.dumps(json.dumps(value)),
            urllib.parse.quote(json.dumps(value)),
        ]
    )


structured = event_dicts().map(json.dumps)
# Messages that get past the framing checks and into each decoder.
targeted = st.one_of(
    st.builds(lambda p, sid: {"event": "media", "media": {"payload": p}, **sid}, b64_audio, st.sampled_from([{}, {"stream_sid": "s"}])),
    st.builds(
        lambda top, start: {"event": "start", **top, "start": start},
        st.fixed_dictionaries({}, optional={"stream_sid": json_values, "sequence_number": json_values}),
        st.fixed_dictionaries(
            {},
            optional={
                "stream_sid": json_values,
                "call_sid": json_values,
                "media_format": st.fixed_dictionaries({}, optional={"sample_rate": json_values}) | json_values,
                "custom_parameters": json_values,
            },
        )
        | json_values,
    ),
    st.builds(lambda d: {"event": "dtmf", "dtmf": {"digit": d}}, json_values),
    st.builds(lambda n: {"event": "mark", "mark": {"name": n}}, json_values),
    st.builds(lambda d: {"type": "playAudio", "data": d}, realistic_bodies),
).map(json.dumps)
messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    json_values.flatmap(encodings),
    event_dicts().flatmap(encodings),
    structured,
    targeted,
    targeted,
)

CALL = CallStarted(call_id="c", stream_id="s", sample_rate=8000)


def started(codec_class, role, **options):
    """A fresh codec of ``role`` that has been through its call start."""
    codec = codec_class(role, **options)
    if role is Role.ENGINE:
        for message in codec_class(Role.PROVIDER).send(CALL):
            codec.receive(message)
    else:
        codec.send(CALL)
    return codec


def check_receive(codec, batch):
    for message in batch:
        try:
            events = codec.receive(message)
        except RemoteProtocolError:
            return  # the connection would be closed here
        assert isinstance(events, list)
        assert all(isinstance(e, Event) for e in events)


def fuzz_test(codec_class, role, after_start):
    @FUZZ
    @given(st.lists(messages, min_size=1, max_size=5))
    def test(batch):
        codec = started(codec_class, role) if after_start else codec_class(role)
        check_receive(codec, batch)

    return test


test_awaaz_engine_before_start = fuzz_test(AwaazCodec, Role.ENGINE, False)
test_awaaz_engine_after_start = fuzz_test(AwaazCodec, Role.ENGINE, True)
test_awaaz_provider_before_start = fuzz_test(AwaazCodec, Role.PROVIDER, False)
test_awaaz_provider_after_start = fuzz_test(AwaazCodec, Role.PROVIDER, True)
test_knowlarity_engine_before_start = fuzz_test(KnowlarityCodec, Role.ENGINE, False)
test_knowlarity_engine_after_start = fuzz_test(KnowlarityCodec, Role.ENGINE, True)
test_knowlarity_provider_before_start = fuzz_test(KnowlarityCodec, Role.PROVIDER, False)
test_knowlarity_provider_after_start = fuzz_test(KnowlarityCodec, Role.PROVIDER, True)


@FUZZ
@given(messages)
def test_detect_provider_never_raises(message):
    assert detect_provider(message) in (None, "awaaz", "knowlarity")


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values, max_size=8).flatmap(encodings))
def test_knowlarity_metadata_is_a_call_or_a_remote_error(text):
    codec = KnowlarityCodec()
    try:
        [event] = codec.receive(text)
    except RemoteProtocolError:
        return
    assert isinstance(event, CallStarted) and codec.started


# --- round trips ---------------------------------------------------------------------

even_pcm = st.binary(max_size=4000).map(lambda b: b[: len(b) // 2 * 2])


@ROUND_TRIP
@given(pcm=even_pcm, chunk_ms=st.sampled_from([10, 20, 40, 100]), wav_wrap=st.booleans())
def test_awaaz_play_audio_round_trip(pcm, chunk_ms, wav_wrap):
    # a 10 ms chunk is not a whole 20 ms frame: only allowed with whole_frames off
    engine = AwaazCodec(chunk_ms=chunk_ms, wav_wrap=wav_wrap, whole_frames=chunk_ms % 20 == 0)
    provider = AwaazCodec(Role.PROVIDER)
    for message in provider.send(CALL):
        engine.receive(message)
    if not wav_wrap and pcm[:4] == b"RIFF":
        pcm = b"\x00\x00" + pcm  # raw PCM that happens to spell a RIFF header is ambiguous
    out = [e for m in engine.send(PlayAudio(pcm, 8000)) for e in provider.receive(m)]
    assert b"".join(e.pcm for e in out) == pcm
    assert all(isinstance(e, PlayAudio) and e.sample_rate == 8000 for e in out)


@ROUND_TRIP
@given(
    st.lists(
        st.one_of(
            even_pcm.filter(bool).map(lambda b: CallerAudio(b, 8000)),
            st.sampled_from(DTMF_DIGITS).map(Dtmf),
            st.text(max_size=10).map(MarkEchoed),
        ),
        max_size=6,
    )
)
def test_awaaz_provider_events_round_trip(events):
    engine, provider = AwaazCodec(), AwaazCodec(Role.PROVIDER)
    for message in provider.send(CALL):
        engine.receive(message)
    for event in events:
        assert [e for m in provider.send(event) for e in engine.receive(m)] == [event]


@ROUND_TRIP
@given(pcm=even_pcm, rate=st.sampled_from([8000, 16000, 24000]), max_clip_ms=st.sampled_from([10, 50, 1000]))
def test_knowlarity_play_audio_round_trip(pcm, rate, max_clip_ms):
    engine, provider = KnowlarityCodec(max_clip_ms=max_clip_ms, clip_ms=10), KnowlarityCodec(Role.PROVIDER)
    for message in provider.send(CALL):
        engine.receive(message)
    out = [e for m in engine.send(PlayAudio(pcm, rate)) for e in provider.receive(m)]
    assert b"".join(e.pcm for e in out) == pcm
    assert all(e.sample_rate == rate and e.duration <= max_clip_ms / 1000 for e in out)


@ROUND_TRIP
@given(st.lists(st.binary(max_size=50), max_size=12))
def test_knowlarity_odd_bytes_are_carried(frames):
    engine = started(KnowlarityCodec, Role.ENGINE, empty_frame_ends=False)
    out = [e.pcm for frame in frames for e in engine.receive(frame)]
    data = b"".join(frames)
    assert b"".join(out) == data[: len(data) // 2 * 2]
    assert all(pcm and len(pcm) % 2 == 0 for pcm in out)
