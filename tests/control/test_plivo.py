"""Plivo's and Vobiz's call API, as their references document it, against a local server."""

from __future__ import annotations

import base64

import pytest

from callengine.control import CallIds, ControlConfigError, PlivoConfig, PlivoControl, ProviderAPIError, VobizControl
from callengine.errors import UnsupportedCommand

from .conftest import FAST
from .httpserver import FakeAPI, Reply

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TOKEN = "plivo-auth-token-SECRET-5678"
CALL = "3a9b5c2e-1111-2222-3333-444455556666"
BASIC = "Basic " + base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
CALL_PATH = f"/v1/Account/{AUTH_ID}/Call/{CALL}/"


def plivo(api: FakeAPI) -> PlivoControl:
    return PlivoControl(PlivoConfig(AUTH_ID, TOKEN), base_url=api.base_url, http=FAST)


async def test_hangup_deletes_the_call(api: FakeAPI) -> None:
    api.route("DELETE", CALL_PATH, Reply(204))
    async with plivo(api) as c:
        assert await c.hangup(CallIds("plivo", CALL)) == "ended"
    [req] = api.requests
    assert (req.method, req.target, req.body) == ("DELETE", CALL_PATH, b"")
    assert req.headers["authorization"] == BASIC


async def test_hangup_of_an_ended_call_answers_404_and_counts_as_done(api: FakeAPI) -> None:
    api.route("DELETE", CALL_PATH, Reply(404, {"api_id": "x", "error": "not found"}))
    async with plivo(api) as c:
        assert await c.hangup(CallIds("plivo", CALL)) == "already-ended"
    assert len(api.requests) == 1


async def test_transfer_posts_the_aleg_url(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(202, {"message": "call transferred", "api_id": "y"}))
    async with plivo(api) as c:
        await c.transfer(CallIds("plivo", CALL), "https://example.com/plivo/dial-agent.xml")
    [req] = api.requests
    assert req.headers["authorization"] == BASIC
    assert req.json() == {"legs": "aleg", "aleg_url": "https://example.com/plivo/dial-agent.xml", "aleg_method": "POST"}


async def test_transfer_to_a_bare_number_is_unsupported_and_says_how(api: FakeAPI) -> None:
    async with plivo(api) as c:
        with pytest.raises(UnsupportedCommand, match=r"plivo cannot transfer.*Plivo XML"):
            await c.transfer(CallIds("plivo", CALL), "+919800000009")
    assert api.requests == []


async def test_place_call_with_the_answer_url_and_custom_values(api: FakeAPI) -> None:
    api.route("POST", f"/v1/Account/{AUTH_ID}/Call/", Reply(201, {"message": "call fired", "request_uuid": "req-1", "api_id": "z"}))
    async with plivo(api) as c:
        call_id = await c.place_call("+919800000001", "+918000000002", "https://bot.example.com/plivo/answer?v=1", {"lead": "42", "x y": "a&b"})
    assert call_id == "req-1"
    [req] = api.requests
    assert req.headers["authorization"] == BASIC
    assert req.json() == {
        "from": "+918000000002",
        "to": "+919800000001",
        "answer_url": "https://bot.example.com/plivo/answer?v=1&lead=42&x+y=a%26b",
        "answer_method": "POST",
    }


async def test_place_call_refuses_a_websocket_url(api: FakeAPI) -> None:
    async with plivo(api) as c:
        with pytest.raises(ControlConfigError, match="answer URL"):
            await c.place_call("+1", "+2", "wss://bot.example.com/plivo")
    assert api.requests == []


async def test_unauthorized_carries_plivos_error_text(api: FakeAPI) -> None:
    api.route("DELETE", CALL_PATH, Reply(401, {"api_id": "q", "error": "authentication failed"}))
    async with plivo(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(CallIds("plivo", CALL))
    assert (info.value.status, info.value.provider_message) == (401, "authentication failed")
    assert TOKEN not in str(info.value)


async def test_vobiz_uses_header_auth_under_api(api: FakeAPI) -> None:
    api.route("DELETE", f"/api/v1/Account/{AUTH_ID}/Call/{CALL}/", Reply(204))
    api.route("POST", f"/api/v1/Account/{AUTH_ID}/Call/", Reply(201, {"api_id": "a", "request_uuid": "vob-1", "message": "Call fired"}))
    async with VobizControl(PlivoConfig(AUTH_ID, TOKEN), base_url=api.base_url + "/api", http=FAST) as c:
        assert await c.hangup(CallIds("vobiz", CALL)) == "ended"
        assert await c.place_call("+919800000001", "14155551234", "https://bot.example.com/answer") == "vob-1"
    for req in api.requests:
        assert req.headers["x-auth-id"] == AUTH_ID
        assert req.headers["x-auth-token"] == TOKEN
        assert "authorization" not in req.headers
    assert api.requests[1].json() == {"from": "14155551234", "to": "+919800000001", "answer_url": "https://bot.example.com/answer", "answer_method": "POST"}
