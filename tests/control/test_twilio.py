"""Twilio's Calls resource, as the REST reference documents it, against a local server."""

from __future__ import annotations

import base64

import pytest

from callengine.control import CallIds, ProviderAPIError, TwilioConfig, TwilioControl

from .conftest import FAST
from .httpserver import FakeAPI, Reply

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "tw-auth-token-SECRET-1234"
CALL = "CA11112222333344445555666677778888"
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
CALL_PATH = f"/2010-04-01/Accounts/{SID}/Calls/{CALL}.json"
IDS = CallIds("twilio", CALL, SID)


def control(api: FakeAPI) -> TwilioControl:
    return TwilioControl(TwilioConfig(SID, TOKEN), base_url=api.base_url, http=FAST)


async def test_hangup_posts_status_completed(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(200, {"sid": CALL, "status": "completed"}))
    async with control(api) as c:
        assert await c.hangup(IDS) == "ended"
    [req] = api.requests
    assert (req.method, req.target) == ("POST", CALL_PATH)
    assert req.headers["authorization"] == BASIC
    assert req.form() == {"Status": "completed"}


async def test_hangup_of_an_ended_call_is_already_ended(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(404, {"code": 20404, "message": f"The requested resource {CALL_PATH} was not found", "status": 404}))
    async with control(api) as c:
        assert await c.hangup(IDS) == "already-ended"
    assert len(api.requests) == 1  # a 404 is an answer, not retried


async def test_transfer_to_a_number_and_to_sip(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(200, {"sid": CALL}))
    async with control(api) as c:
        await c.transfer(IDS, "+919800000009")
        await c.transfer(IDS, "sip:desk@example.com?x=1&y=2")
        await c.transfer(IDS, "https://example.com/twiml/agent")
    forms = [r.form() for r in api.requests]
    assert forms[0] == {"Twiml": "<Response><Dial>+919800000009</Dial></Response>"}
    assert forms[1] == {"Twiml": "<Response><Dial><Sip>sip:desk@example.com?x=1&amp;y=2</Sip></Dial></Response>"}
    assert forms[2] == {"Url": "https://example.com/twiml/agent"}


async def test_place_call_connects_a_stream_with_parameters(api: FakeAPI) -> None:
    api.route("POST", f"/2010-04-01/Accounts/{SID}/Calls.json", Reply(201, {"sid": "CAnew", "status": "queued"}))
    async with control(api) as c:
        sid = await c.place_call("+919800000001", "+14155550100", "wss://bot.example.com/twilio?a=1&b=2", {"lead": "42", "name": 'A "B" <C>'})
    assert sid == "CAnew"
    [req] = api.requests
    assert req.headers["authorization"] == BASIC
    assert req.form() == {
        "To": "+919800000001",
        "From": "+14155550100",
        "Twiml": (
            '<Response><Connect><Stream url="wss://bot.example.com/twilio?a=1&amp;b=2">'
            '<Parameter name="lead" value="42"/><Parameter name="name" value=\'A "B" &lt;C&gt;\'/>'
            "</Stream></Connect></Response>"
        ),
    }


async def test_bad_credentials_raise_with_status_and_message(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(401, {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}))
    async with control(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
    err = info.value
    assert (err.provider, err.operation, err.status, err.code, err.provider_message) == ("twilio", "hangup", 401, "20003", "Authenticate")
    assert TOKEN not in str(err)
    assert len(api.requests) == 1  # a 401 is not retried


async def test_subaccount_from_the_start_message_is_the_path(api: FakeAPI) -> None:
    sub = "ACsub0000000000000000000000000000"
    api.route("POST", f"/2010-04-01/Accounts/{sub}/Calls/{CALL}.json", Reply(200, {"sid": CALL}))
    api.route("POST", CALL_PATH, Reply(200, {"sid": CALL}))
    async with control(api) as c:
        assert await c.hangup(CallIds("twilio", CALL, sub)) == "ended"
        assert await c.hangup(CallIds("twilio", CALL)) == "ended"
    assert api.requests[0].path == f"/2010-04-01/Accounts/{sub}/Calls/{CALL}.json"
    assert api.requests[1].path == CALL_PATH  # no account in the ids: the configured one


async def test_ids_of_another_provider_are_refused(api: FakeAPI) -> None:
    async with control(api) as c:
        with pytest.raises(ValueError, match="plivo"):
            await c.hangup(CallIds("plivo", "x"))
    assert api.requests == []


async def test_an_accepted_call_without_a_sid_says_it_may_exist(api: FakeAPI) -> None:
    api.route("POST", f"/2010-04-01/Accounts/{SID}/Calls.json", Reply(201, {"status": "queued"}))
    async with control(api) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.place_call("+1", "+2", "wss://bot")
    assert info.value.status == 201 and "may have been placed" in str(info.value)
    assert len(api.requests) == 1
