"""Exotel's Connect Voice AI API, and what it cannot do, against a local server."""

from __future__ import annotations

import base64

import pytest

from callengine.control import CallIds, ControlConfigError, ExotelConfig, ExotelControl, ProviderAPIError
from callengine.errors import UnsupportedCommand

from .conftest import FAST
from .httpserver import FakeAPI, Reply

KEY, TOKEN, SID = "exokey123", "exo-token-SECRET-999", "myaccount1"
BASIC = "Basic " + base64.b64encode(f"{KEY}:{TOKEN}".encode()).decode()
PATH = f"/v1/Accounts/{SID}/Calls/connect.json"


def exotel(api: FakeAPI) -> ExotelControl:
    return ExotelControl(ExotelConfig(KEY, TOKEN, SID), base_url=api.base_url, http=FAST)


async def test_place_call_streams_to_the_bot(api: FakeAPI) -> None:
    api.route("POST", PATH, Reply(200, {"Call": {"Sid": "b6cfaf0e1e12", "Status": "in-progress", "Direction": "outbound-api"}}))
    async with exotel(api) as c:
        sid = await c.place_call("+919876543210", "08047491899", "wss://bot.example.com/exotel?sample-rate=16000", {"lead": "42"})
    assert sid == "b6cfaf0e1e12"
    [req] = api.requests
    assert req.headers["authorization"] == BASIC
    assert req.form() == {
        "From": "+919876543210",  # Exotel's From is the number dialled
        "CallerId": "08047491899",
        "StreamUrl": "wss://bot.example.com/exotel?sample-rate=16000&lead=42",
        "StreamType": "bidirectional",
    }


async def test_lowercase_answer_of_the_guide(api: FakeAPI) -> None:
    api.route("POST", PATH, Reply(200, {"call": {"sid": "a1b2c3d4e5f6", "status": "in-progress"}}))
    async with exotel(api) as c:
        assert await c.place_call("+91", "080", "wss://bot") == "a1b2c3d4e5f6"


async def test_hangup_and_transfer_say_to_close_the_socket(api: FakeAPI) -> None:
    async with exotel(api) as c:
        with pytest.raises(UnsupportedCommand, match="exotel cannot hang up.*close the WebSocket"):
            await c.hangup(CallIds("exotel", "CA1"))
        with pytest.raises(UnsupportedCommand, match="exotel cannot transfer.*Connect applet"):
            await c.transfer(CallIds("exotel", "CA1"), "+919800000009")
    assert api.requests == []


async def test_limits_are_checked_before_sending(api: FakeAPI) -> None:
    async with exotel(api) as c:
        with pytest.raises(ControlConfigError, match="at most 3"):
            await c.place_call("+91", "080", "wss://bot", {"a": "1", "b": "2", "c": "3", "d": "4"})
        with pytest.raises(ControlConfigError, match="600"):
            await c.place_call("+91", "080", "wss://bot/" + "x" * 600)
    assert api.requests == []


async def test_rest_exception_is_mapped(api: FakeAPI) -> None:
    api.route("POST", PATH, Reply(403, {"RestException": {"Status": 403, "Message": "Not allowed to call this number"}}))
    async with exotel(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.place_call("+91", "080", "wss://bot")
    assert (info.value.status, info.value.provider_message) == (403, "Not allowed to call this number")


def test_subdomain_sets_the_host() -> None:
    c = ExotelControl(ExotelConfig(KEY, TOKEN, SID, "api.in.exotel.com"))
    assert c.base_url == "https://api.in.exotel.com"
    assert TOKEN not in repr(c.config)
