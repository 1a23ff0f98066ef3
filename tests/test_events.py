"""Events are frozen all the way down: the mappings they hold cannot be changed and hash."""

from __future__ import annotations

import copy
import json
import pickle

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callengine.events import CallStarted, CallStopped, Connected, FrozenDict, FrozenList, UnknownMessage
from callengine.protocols import AwaazCodec, KnowlarityCodec, Role

NESTED = {"vip": True, "tags": ["a", "b"], "who": {"name": "Jane", "phones": ["+91", {"k": [1, 2]}]}, "n": None}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=5), json_values, max_size=5)


# --- the bug: "frozen" events held plain dicts ------------------------------------------


def test_call_started_is_hashable():
    """Regression: CallStarted.custom was a plain dict, so hash(CallStarted(...)) raised TypeError."""
    a = CallStarted("CA-1", custom=NESTED, raw={"start": NESTED})
    b = CallStarted("CA-1", custom=json.loads(json.dumps(NESTED)))
    assert hash(a) == hash(b) and a == b
    assert len({a, b, CallStarted("CA-2")}) == 2


@pytest.mark.parametrize(
    "event, field",
    [
        (CallStarted("CA-1", custom=NESTED), "custom"),
        (CallStarted("CA-1", raw=NESTED), "raw"),
        (Connected(raw=NESTED), "raw"),
        (CallStopped("hangup", raw=NESTED), "raw"),
        (UnknownMessage("x", raw=NESTED), "raw"),
    ],
)
def test_event_mappings_cannot_be_mutated(event, field):
    """Regression: an agent could change an event's custom / raw dict (and so every other
    holder's view of the call), at the top level or anywhere inside."""
    value = getattr(event, field)
    mutations = [
        lambda m: m.__setitem__("vip", False),
        lambda m: m.__delitem__("vip"),
        lambda m: m.update(x=1),
        lambda m: m.setdefault("x", 1),
        lambda m: m.pop("vip"),
        lambda m: m.popitem(),
        lambda m: m.clear(),
        lambda m: m.__ior__({"x": 1}),
        lambda m: m["who"].__setitem__("name", "Mallory"),
        lambda m: m["who"]["phones"][1].clear(),
    ]
    for mutate in mutations:
        with pytest.raises(TypeError, match="immutable"):
            mutate(value)
    with pytest.raises(AttributeError):  # lists became tuples: no append
        value["tags"].append("c")
    value.__init__(x=1)  # re-running the constructor must not smuggle items in
    assert value == NESTED
    # the caller's own dict was copied, not adopted: changing it later changes no event
    source = {"a": {"b": 1}}
    started = CallStarted("CA-1", custom=source)
    source["a"]["b"] = 2
    assert started.custom == {"a": {"b": 1}}


def test_frozen_dict_equality_with_dicts_and_lists():
    f = FrozenDict(NESTED)
    assert f == NESTED and NESTED == f and not (f != NESTED)
    assert f != {**NESTED, "tags": ["a"]} and f != {**NESTED, "extra": 1}
    assert f["tags"] == ["a", "b"] and ["a", "b"] == f["tags"] and f["tags"] == ("a", "b")
    assert not (f["tags"] != ["a", "b"]) and f["tags"] != ["b", "a"]
    assert isinstance(f["who"], FrozenDict) and isinstance(f["tags"], FrozenList) and isinstance(f["tags"], tuple)
    assert FrozenDict(a=1) == FrozenDict({"a": 1}) == FrozenDict([("a", 1)])
    assert FrozenDict.fromkeys("ab", 0) == {"a": 0, "b": 0}
    assert isinstance(FrozenDict.fromkeys("ab"), FrozenDict)


def test_frozen_dict_repr_looks_like_a_dict():
    assert repr(FrozenDict({"a": 1, "b": "x"})) == "{'a': 1, 'b': 'x'}"
    assert repr(FrozenDict()) == "{}"
    assert "custom={'FirstName': 'Jane'}" in repr(CallStarted("CA-1", custom={"FirstName": "Jane"}))


@settings(max_examples=200, deadline=None)
@given(json_objects)
def test_frozen_dict_hash_and_json_round_trip(obj):
    f = FrozenDict(obj)
    assert f == obj
    assert hash(f) == hash(FrozenDict(json.loads(json.dumps(obj))))  # equal values, equal hashes
    assert json.loads(json.dumps(f)) == obj  # a dict subclass: json encodes it, nested values too
    assert json.loads(json.dumps(dict(f))) == obj  # what the codecs do
    assert pickle.loads(pickle.dumps(f)) == f
    assert copy.deepcopy(f) == f and copy.copy(f) == f


def test_frozen_dict_copies():
    f = FrozenDict(NESTED)
    g = pickle.loads(pickle.dumps(f))
    assert type(g) is FrozenDict and type(g["who"]) is FrozenDict and type(g["tags"]) is FrozenList
    thawed = dict(f)  # a shallow, mutable copy
    thawed["vip"] = False
    assert f["vip"] is True
    assert f.copy() is f and FrozenDict(f) == f
    assert type(f | {"x": 1}) is dict  # | builds a new plain dict, as for any dict subclass


def test_freezing_survives_json_nested_as_deep_as_json_accepts():
    text = '{"a":' * 900 + "1" + "}" * 900
    nested = json.loads(text)
    f = FrozenDict(nested)
    assert json.dumps(f, separators=(",", ":")) == text
    deep_list = json.loads("[" * 900 + "]" * 900)
    raw = UnknownMessage("x", raw={"v": deep_list}).raw
    assert isinstance(raw["v"], FrozenList) and json.dumps(raw["v"]) == json.dumps(deep_list)


def test_sets_freeze_to_frozensets():
    f = FrozenDict({"s": {1, 2}, "t": (1, [2])})
    assert f["s"] == frozenset({1, 2}) and isinstance(f["s"], frozenset)
    assert f["t"] == (1, [2]) and isinstance(f["t"][1], FrozenList)
    hash(f)


def test_converter_keeps_frozen_values_and_defaults():
    f = FrozenDict(NESTED)
    assert CallStarted("CA-1", custom=f).custom is f  # no copy of what is already frozen
    for value in (None, {}):
        started = CallStarted("CA-1", custom=value, raw=value)
        assert started.custom == {} and isinstance(started.custom, FrozenDict)
        assert isinstance(started.raw, FrozenDict)
    assert isinstance(Connected().raw, FrozenDict) and isinstance(CallStopped().raw, FrozenDict)
    evolved = attrs.evolve(CallStarted("CA-1", custom=NESTED), call_id="CA-2")
    assert evolved.custom == NESTED and isinstance(evolved.custom, FrozenDict)


def test_unknown_message_raw_keeps_text_and_bytes():
    assert UnknownMessage("x", raw="text").raw == "text"
    assert UnknownMessage("x", raw=b"\x01\x02").raw == b"\x01\x02"
    assert UnknownMessage("x", raw=bytearray(b"\x01")).raw == b"\x01"  # a bytes copy, not the buffer
    assert type(UnknownMessage("x", raw=bytearray(b"\x01")).raw) is bytes
    assert UnknownMessage("x").raw is None
    assert UnknownMessage("x", raw=[1, {"a": 2}]).raw == [1, {"a": 2}]
    hash(UnknownMessage("x", raw=NESTED))


@pytest.mark.parametrize("codec", [AwaazCodec, KnowlarityCodec])
def test_codecs_send_and_receive_frozen_nested_custom(codec):
    """The provider side JSON-encodes custom (and UnknownMessage.raw) after dict(): nested
    FrozenDicts and FrozenLists must still serialise, and come back equal."""
    call = CallStarted("CA-1", stream_id="MZ-1", caller="+911", called="+912", custom={"who": {"tags": ["a", "b"]}})
    provider, engine = codec(Role.PROVIDER), codec(Role.ENGINE)
    events = [e for m in provider.send(call) for e in engine.receive(m)]
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    assert started.custom["who"] == {"tags": ["a", "b"]}
    assert isinstance(started.custom["who"], FrozenDict)
    (message,) = provider.send(UnknownMessage("heartbeat", raw={"event": "heartbeat", "x": {"y": [1]}}))
    assert json.loads(message) == {"event": "heartbeat", "x": {"y": [1]}}
