"""The cascaded bridge (STT -> chat -> TTS) through a simulated provider, with the
in-memory seams of :mod:`callengine.testing.fake_cascade` on virtual time."""

from __future__ import annotations

import logging

import pytest
import trio

from callengine.bridges.cascade import CascadeAgent, Sentence, heard_text, split_sentences
from callengine.testing import open_simulated_call
from callengine.testing.fake_cascade import FakeChat, FakeStreamingSTT, FakeSTT, FakeTTS

from .conftest import PROVIDERS, utterance, wait_for

LONG = "The weather in Pune is sunny today. It will be warm in the afternoon. Carry some water when you go out. Have a lovely day."


def test_split_sentences():
    assert split_sentences("Hello there. How are") == (["Hello there."], "How are")
    assert split_sentences("नमस्ते। आप कैसे हैं? ") == (["नमस्ते।", "आप कैसे हैं?"], "")
    long_clause = "one two three four five six seven eight, nine ten eleven twelve thirteen fourteen fifteen sixteen and more words"
    pieces, rest = split_sentences(long_clause)
    assert pieces == ["one two three four five six seven eight,"] and rest.startswith("nine")


def test_heard_text_keeps_whole_sentences_and_cuts_the_last_at_a_word():
    s = [Sentence("One two three four.", 16000), Sentence("Five six seven eight.", 16000)]  # 1 s each at 16 kHz
    assert heard_text(s, 16000, 2000) == "One two three four. Five six seven eight."
    assert heard_text(s, 16000, 1500) == "One two three four. Five six…"
    assert heard_text(s, 16000, 999) == "One two three…"
    assert heard_text(s, 16000, 100) == ""
    # the second one's synthesis was cut after 0.5 s: its length is estimated from the first
    cut = [Sentence("One two three four.", 16000), Sentence("Five six seven eight.", 8000, complete=False)]
    assert heard_text(cut, 16000, 1500) == "One two three four. Five…"  # 500 of an estimated 1105 ms
    assert heard_text(cut, 16000, 1000) == "One two three four."


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_caller_speech_is_answered(autojump_clock, provider):
    stt, chat, tts = FakeSTT(["what is the weather"]), FakeChat(["It is sunny. Enjoy!"]), FakeTTS()
    agent = CascadeAgent(stt, chat, tts, instructions="Be brief.")
    async with open_simulated_call(agent, provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: chat.completed == 1)
        await trio.sleep(3.0)
        session = agent.calls[sim.session.call.info.call_id]
    assert not agent.calls  # none kept after the call
    [(samples, rate)] = stt.utterances
    assert rate == sim.session.call.info.sample_rate and 1.0 < samples / rate < 2.5  # the utterance, with pre-roll and tail
    assert tts.texts == ["It is sunny.", "Enjoy!"]
    assert chat.requests[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what is the weather"}]
    assert session.history[-1] == {"role": "assistant", "content": "It is sunny. Enjoy!"}
    assert sim.provider.heard_seconds() == pytest.approx(sum(tts.samples) / tts.rate, abs=0.025)
    assert sim.provider.gaps() == []  # one streaming playback per reply


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_barge_in_cuts_the_assistant_turn_to_what_the_caller_heard(autojump_clock, provider):
    stt, chat, tts = FakeSTT(["tell me the weather", "thanks"]), FakeChat([LONG, "You are welcome."]), FakeTTS()
    agent = CascadeAgent(stt, chat, tts)
    async with open_simulated_call(agent, provider, wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 3.0)  # into the second sentence
        sim.provider.say(utterance(), 8000)  # the caller talks over it
        await wait_for(lambda: len(chat.requests) == 2)
        await trio.sleep(3.0)
        session = agent.calls[sim.session.call.info.call_id]
    assert sim.report.stats.barge_ins == 1
    first_heard = sim.provider.heard[0].duration * 1000
    [reply, _] = session.replies
    pb = reply.writer.playback
    assert pb.result.interrupted and abs(pb.result.played_ms - first_heard) <= sim.session.caps.chunk_ms
    expected = heard_text(reply.sentences, tts.rate, pb.result.played_ms)
    # the history the chat model got next: the heard text, not the generated one
    assistant = chat.requests[1][-2]
    assert assistant == {"role": "assistant", "content": expected}
    assert chat.requests[1][-1] == {"role": "user", "content": "thanks"}
    assert expected.startswith("The weather in Pune is sunny today. It") and expected.endswith("…")
    assert len(expected) < len(reply.text) and expected[:-1] in LONG


async def test_the_chat_stream_is_cancelled_on_barge_in(autojump_clock):
    # the chat model streams slowly: the reply is still being generated when the caller cuts in
    stt, chat, tts = FakeSTT(["hi", "stop"]), FakeChat([LONG, "Sure."], delta_s=0.3), FakeTTS()
    agent = CascadeAgent(stt, chat, tts)
    async with open_simulated_call(agent, "awaaz", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: sim.provider.heard_seconds() > 1.5)
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: chat.cancelled == 1)
        cut_at = sim.provider.now()
        await wait_for(lambda: chat.completed == 1)
        await trio.sleep(2.0)
        session = agent.calls[sim.session.call.info.call_id]
    assert chat.cancelled == 1 and len(tts.texts) < 4
    first = session.replies[0]
    assert first.cut and first.cut.endswith("…") and first.cut[:-1] in LONG
    # nothing of the first reply played after the cut: then only the second reply
    later = [s for s in sim.provider.heard if s.start > cut_at]
    assert sum(s.duration for s in later) == pytest.approx(len("Sure.") * 0.06, abs=0.05)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_vendor_errors_are_logged_once_and_the_call_goes_on(autojump_clock, caplog, provider):
    stt, chat, tts = FakeSTT(["one", "two"], fail=2), FakeChat(["Fine."], fail=0), FakeTTS()
    agent = CascadeAgent(stt, chat, tts)
    caplog.set_level(logging.DEBUG, "callengine.bridges")
    async with open_simulated_call(agent, provider, wait=False) as sim:
        for _ in range(3):
            sim.provider.say(utterance(), 8000)
            await trio.sleep(3.0)
        await wait_for(lambda: chat.completed == 1)
        await trio.sleep(1.0)
        session = agent.calls[sim.session.call.info.call_id]
        assert not sim.session.call.ended  # the call went on
    assert session.errors == {"stt_http_500": 2}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "HTTP 500" in r.getMessage()]
    assert len(warnings) == 1
    assert sim.provider.heard_seconds() == pytest.approx(len("Fine.") * 0.06, abs=0.025)


async def test_a_failing_chat_model_gives_no_answer_and_the_next_turn_works(autojump_clock):
    stt, chat, tts = FakeSTT(["one", "two"]), FakeChat(["Second."], fail=1), FakeTTS()
    agent = CascadeAgent(stt, chat, tts, instructions="")
    async with open_simulated_call(agent, "knowlarity", wait=False) as sim:
        sim.provider.say(utterance(), 8000)
        await trio.sleep(3.0)
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: chat.completed == 1)
        await trio.sleep(1.0)
        session = agent.calls[sim.session.call.info.call_id]
    assert session.errors == {"chat_http_500": 1}
    assert session.history == [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}, {"role": "assistant", "content": "Second."}]


class Partials(CascadeAgent):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[float, str]] = []

    async def on_partial(self, call, text: str) -> None:
        self.seen.append((trio.current_time(), text))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_streaming_stt_gets_the_audio_while_the_caller_speaks(autojump_clock, provider):
    stt, chat, tts = FakeStreamingSTT(["when do you open today"], partial_s=0.3), FakeChat(["At nine."]), FakeTTS()
    agent = Partials(stt, chat, tts)
    async with open_simulated_call(agent, provider, wait=False) as sim:
        start = trio.current_time()
        sim.provider.say(utterance(), 8000)
        await wait_for(lambda: chat.completed == 1)
        await trio.sleep(1.5)
        session = agent.calls[sim.session.call.info.call_id]
        assert session.history[-2:] == [{"role": "user", "content": "when do you open today"}, {"role": "assistant", "content": "At nine."}]
    assert [t for _, t in agent.seen][:2] == ["when", "when do"]
    assert agent.seen[0][0] - start < 1.5  # partials while the caller still speaks (1.5 s)
    [(samples, rate)] = stt.utterances
    assert 1.5 < samples / rate < 3.0  # pre-roll, the speech, the VAD's hangover
    assert sim.provider.heard_seconds() == pytest.approx(len("At nine.") * 0.06, abs=0.025)
