"""Telnyx Call Control v2, as its reference documents it, against a local server."""

from __future__ import annotations

import uuid

import pytest

from callengine.control import CallIds, ControlConfigError, ProviderAPIError, TelnyxConfig, TelnyxControl
from callengine.errors import UnsupportedCommand

from .conftest import FAST
from .httpserver import FakeAPI, Reply

KEY = "KEY0123456789SECRETtelnyx"
CCID = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"
IDS = CallIds("telnyx", CCID)
HANGUP = f"/v2/calls/{CCID}/actions/hangup"
OK = Reply(200, {"data": {"result": "ok"}})


def telnyx(api: FakeAPI, connection_id: str = "1494404757140276705") -> TelnyxControl:
    return TelnyxControl(TelnyxConfig(KEY, connection_id), base_url=api.base_url, http=FAST)


def command_id(body: dict[str, str]) -> str:
    value = body["command_id"]
    uuid.UUID(value)  # a fresh UUID per operation
    return value


async def test_hangup_with_bearer_and_command_id(api: FakeAPI) -> None:
    api.route("POST", HANGUP, OK)
    async with telnyx(api) as c:
        assert await c.hangup(IDS) == "ended"
    [req] = api.requests
    assert req.target == HANGUP  # the v3: id keeps its colon, as Telnyx prints it
    assert req.headers["authorization"] == f"Bearer {KEY}"
    body = req.json()
    assert list(body) == ["command_id"] and command_id(body)


async def test_hangup_of_an_ended_call_422_90018(api: FakeAPI) -> None:
    api.route("POST", HANGUP, Reply(422, {"errors": [{"code": "90018", "title": "Call has already ended", "detail": "This call is no longer active and can't receive commands."}]}))
    async with telnyx(api) as c:
        assert await c.hangup(IDS) == "already-ended"


async def test_other_422_is_an_error(api: FakeAPI) -> None:
    api.route("POST", HANGUP, Reply(422, {"errors": [{"code": "90015", "title": "Invalid value", "detail": "bad"}]}))
    async with telnyx(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
    assert (info.value.status, info.value.code, info.value.provider_message) == (422, "90015", "Invalid value: bad")


async def test_transfer_is_retried_with_the_same_command_id(api: FakeAPI) -> None:
    path = f"/v2/calls/{CCID}/actions/transfer"
    api.route("POST", path, Reply(503, {"errors": [{"code": "10011", "title": "Service unavailable"}]}), OK)
    async with telnyx(api) as c:
        await c.transfer(IDS, "sip:agent@sip.telnyx.com")
    first, second = (r.json() for r in api.requests)
    assert first == second and first["to"] == "sip:agent@sip.telnyx.com" and command_id(first)


async def test_transfer_to_a_url_is_unsupported(api: FakeAPI) -> None:
    async with telnyx(api) as c:
        with pytest.raises(UnsupportedCommand, match="telnyx"):
            await c.transfer(IDS, "https://example.com/texml")


async def test_place_call_dials_with_a_bidirectional_rtp_stream(api: FakeAPI) -> None:
    api.route("POST", "/v2/calls", Reply(200, {"data": {"call_control_id": "v3:new", "call_leg_id": "l", "call_session_id": "s", "is_alive": False, "record_type": "call"}}))
    async with telnyx(api) as c:
        assert await c.place_call("+18005550199", "+18005550100", "wss://bot.example.com/telnyx", {"lead": "42"}) == "v3:new"
    [req] = api.requests
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json() == {
        "connection_id": "1494404757140276705",
        "to": "+18005550199",
        "from": "+18005550100",
        "stream_url": "wss://bot.example.com/telnyx?lead=42",
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
    }


async def test_place_call_needs_the_connection_id(api: FakeAPI) -> None:
    async with telnyx(api, connection_id="") as c:
        with pytest.raises(ControlConfigError, match="TELNYX_CONNECTION_ID"):
            await c.place_call("+1", "+2", "wss://x")
    assert api.requests == []


async def test_a_dial_is_not_repeated_after_a_server_error(api: FakeAPI) -> None:
    api.route("POST", "/v2/calls", Reply(500, {"errors": [{"code": "10007", "title": "Unexpected error"}]}))
    async with telnyx(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.place_call("+1", "+2", "wss://x")
    assert info.value.status == 500
    assert len(api.requests) == 1  # a second POST /v2/calls would be a second call


async def test_unauthorized(api: FakeAPI) -> None:
    api.route("POST", HANGUP, Reply(401, {"errors": [{"code": "10009", "title": "Authentication failed", "detail": "The API key looks malformed."}]}))
    async with telnyx(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
    assert info.value.status == 401 and "Authentication failed" in str(info.value) and KEY not in str(info.value)
