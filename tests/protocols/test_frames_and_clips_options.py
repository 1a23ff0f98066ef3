"""The codec options behind whole frames (Awaaz ``whole_frames`` / ``strict_frames``) and
the Knowlarity clip mode (``clips``), and the chunk checks they bring to the call config."""

from __future__ import annotations

import json

import pytest

from callengine.audio.wav import build_wav
from callengine.call.config import CallConfig
from callengine.events import CallStarted, PlayAudio, UnknownMessage
from callengine.protocols import AwaazCodec, KnowlarityCodec, Role
from callengine.protocols._common import b64encode

CALL = CallStarted(call_id="CA-1", stream_id="MZ-1", caller="", called="", sample_rate=8000, direction="inbound", custom={})


def pcm_of(num_bytes: int) -> bytes:
    return bytes((7 * i) % 251 + 1 for i in range(num_bytes))


def awaaz_pair(**provider_options) -> tuple[AwaazCodec, AwaazCodec]:
    engine, provider = AwaazCodec(Role.ENGINE), AwaazCodec(Role.PROVIDER, **provider_options)
    for message in provider.send(CALL):
        engine.receive(message)
    return engine, provider


def played(provider: AwaazCodec, messages) -> list:
    return [e for m in messages for e in provider.receive(m)]


# --- Awaaz ------------------------------------------------------------------------------


def test_whole_frames_is_on_by_default_and_declared_in_the_capabilities():
    assert AwaazCodec.capabilities.frame_ms == 20  # what the server checks pacing against
    assert AwaazCodec().capabilities.frame_ms == 20
    assert AwaazCodec(whole_frames=False).capabilities.frame_ms == 0


def test_the_codec_refuses_a_chunk_that_is_not_whole_frames():
    with pytest.raises(ValueError, match=r"chunk_ms \(30\) is not a multiple of Awaaz's 20 ms frame.*whole_frames"):
        AwaazCodec(chunk_ms=30)
    assert AwaazCodec(chunk_ms=30, whole_frames=False).capabilities.chunk_ms == 30
    assert AwaazCodec(chunk_ms=100).capabilities.chunk_ms == 100


def test_the_call_config_refuses_a_chunk_that_is_not_whole_frames():
    with pytest.raises(ValueError) as info:
        CallConfig(chunk_ms=30).pacing(AwaazCodec().capabilities, "awaaz")
    message = str(info.value)
    assert message == (
        "chunk_ms (30) on awaaz is not a whole number of the provider's 20 ms frames, which it takes "
        "every media message in (on Awaaz, the codec option whole_frames): use a multiple of 20 for "
        "--chunk-ms, or turn whole_frames off where the provider has it"
    )
    assert CallConfig(chunk_ms=40).pacing(AwaazCodec().capabilities, "awaaz").chunk_s == 0.04
    assert CallConfig(chunk_ms=30).pacing(AwaazCodec(whole_frames=False).capabilities, "awaaz").chunk_s == 0.03
    with pytest.raises(ValueError, match="whole number"):
        CallConfig(chunk_ms=10, lead_ms=100).pacing(AwaazCodec().capabilities, "awaaz")


def test_timestamps_advance_by_20_per_whole_frame_and_a_strict_peer_agrees():
    engine, provider = awaaz_pair(strict_frames=True)
    messages = [m for n in (320, 320, 640, 320) for m in engine.send(PlayAudio(pcm_of(n), 8000))]
    assert [json.loads(m)["media"]["timestamp"] for m in messages] == ["20", "40", "80", "100"]
    events = played(provider, messages)
    assert [len(e.pcm) for e in events] == [320, 320, 640, 320]
    assert (provider.media_dropped, provider.timestamp_mismatches) == (0, 0)


def test_a_strict_peer_drops_what_is_not_whole_frames_and_a_lenient_one_plays_it():
    engine, strict = awaaz_pair(strict_frames=True)
    messages = [m for n in (320, 208) for m in engine.send(PlayAudio(pcm_of(n), 8000))]
    events = played(strict, messages)
    assert isinstance(events[0], PlayAudio) and len(events[0].pcm) == 320
    assert [e.kind for e in events[1:]] == ["media dropped: 208 bytes, not whole 320-byte frames"]
    assert (strict.media_dropped, strict.timestamp_mismatches) == (1, 0)  # 104 samples are 13 ms: "33"
    _, lenient = awaaz_pair()
    assert [len(e.pcm) for e in played(lenient, messages)] == [320, 208]


def test_a_strict_peer_reports_a_timestamp_that_does_not_advance_by_the_payload():
    _, provider = awaaz_pair(strict_frames=True)

    def media(timestamp: str | None) -> str:
        body = {"payload": b64encode(build_wav(pcm_of(320), 8000))}
        if timestamp is not None:
            body["timestamp"] = timestamp
        return json.dumps({"event": "media", "stream_sid": "MZ-1", "media": body})

    events = played(provider, [media("20"), media("50"), media(None), media("90")])
    kinds = [e.kind if isinstance(e, UnknownMessage) else "play" for e in events]
    # "50" is 30 ms after "20" for 20 ms of audio; the audio still plays; a payload without
    # a timestamp (Awaaz's Pipecat form) is not checked, but its 20 ms count
    assert kinds == ["play", "timestamp '50', expected 40", "play", "play", "play"]
    assert provider.timestamp_mismatches == 1


# --- Knowlarity -----------------------------------------------------------------------------


def test_knowlarity_clip_modes_and_their_capabilities():
    stream, utterance = KnowlarityCodec().capabilities, KnowlarityCodec(clips="utterance").capabilities
    assert (stream.chunk_ms, stream.lead_ms, stream.one_clip_in_flight) == (200, 400, False)
    assert (utterance.chunk_ms, utterance.lead_ms, utterance.one_clip_in_flight) == (5000, 5000, True)
    assert KnowlarityCodec(clips="utterance", clip_ms=8000).capabilities.chunk_ms == 8000
    assert KnowlarityCodec(clips="utterance", max_clip_ms=3000).capabilities.chunk_ms == 3000
    with pytest.raises(ValueError, match="clips is 'stream' or 'utterance'"):
        KnowlarityCodec(clips="file")
    with pytest.raises(ValueError, match="must not exceed max_clip_ms"):
        KnowlarityCodec(clips="utterance", clip_ms=12000)


def test_knowlarity_utterance_mode_refuses_a_chunk_above_the_clip_cap():
    caps = KnowlarityCodec(clips="utterance").capabilities
    with pytest.raises(ValueError, match=r"chunk_ms \(8000\) on knowlarity is above the clip cap \(5000 ms"):
        CallConfig(chunk_ms=8000, lead_ms=8000).pacing(caps, "knowlarity")
    assert CallConfig(chunk_ms=2000).pacing(caps, "knowlarity").chunk_s == 2.0
    # stream mode keeps today's rule: a long chunk is split by the codec
    assert CallConfig(chunk_ms=8000, lead_ms=8000).pacing(KnowlarityCodec().capabilities, "knowlarity").chunk_s == 8.0


def test_knowlarity_utterance_mode_sends_a_playback_as_one_playaudio():
    engine, provider = KnowlarityCodec(clips="utterance"), KnowlarityCodec(Role.PROVIDER)
    for message in provider.send(CallStarted(call_id="c", stream_id="", caller="", called="", sample_rate=16000, direction="", custom={})):
        engine.receive(message)
    messages = engine.send(PlayAudio(pcm_of(2 * 16000 * 5), 16000))  # a whole 5 s clip
    assert len(messages) == 1 and json.loads(messages[0])["type"] == "playAudio"


def test_exotel_chunk_ms_must_fit_its_smallest_and_largest_message():
    from callengine.protocols.exotel import ExotelCodec

    caps = ExotelCodec().capabilities
    with pytest.raises(ValueError, match="below the provider's smallest message"):
        CallConfig(chunk_ms=100, lead_ms=400).pacing(caps, "exotel")
    # 100 KB less the 3.2 KB a short tail may add to the last chunk: 6.05 s at 8 kHz
    with pytest.raises(ValueError, match="above the provider's largest message"):
        CallConfig(chunk_ms=6100, lead_ms=8000).pacing(caps, "exotel")
    assert CallConfig(chunk_ms=6000, lead_ms=8000).pacing(caps, "exotel").chunk_s == 6.0
