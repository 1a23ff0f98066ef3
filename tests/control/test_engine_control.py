"""The engine hangs up and transfers through the provider's API where the socket cannot:
a real server, a simulated provider over a real socket, and the provider's REST API played
by a local HTTP server that checks each request."""

from __future__ import annotations

import logging

import pytest
import trio

from callengine.audio.generate import tone
from callengine.control import TelnyxConfig, TelnyxControl, TwilioConfig, TwilioControl
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import open_dialed_call
from callengine.testing.provider import default_start

from .conftest import FAST
from .httpserver import FakeAPI, Reply

SIM_ACCOUNT = "AC" + "0" * 32  # what the simulated Twilio announces in its start
CALL = "CA-engine-1"


async def _serve(nursery, agent, **options) -> CallServer:
    server = CallServer(agent, ServerConfig(port=0, loop_watchdog_s=None, **options))
    await nursery.start(server.serve)
    return server


async def _wait_ended(server: CallServer, n: int = 1) -> None:
    with trio.fail_after(10):
        while len(server.reports) < n:
            await trio.sleep(0.02)


async def test_twilio_hangup_goes_through_the_rest_api_after_the_audio(nursery, api: FakeAPI):
    path = f"/2010-04-01/Accounts/{SIM_ACCOUNT}/Calls/{CALL}.json"
    api.route("POST", path, Reply(200, {"sid": CALL, "status": "completed"}))

    async def agent(call):
        await call.play(tone(440, 0.3, 16000))
        await call.hangup()

    control = TwilioControl(TwilioConfig(SIM_ACCOUNT, "token-xyz"), base_url=api.base_url, http=FAST)
    server = await _serve(nursery, agent, provider_controls={"twilio": control})
    start = default_start("twilio", call_id=CALL)
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/twilio", "twilio", start=start) as sim:
        with trio.fail_after(10):
            await sim.closed.wait()
    await _wait_ended(server)
    [request] = api.requests
    assert (request.method, request.path, request.form()) == ("POST", path, {"Status": "completed"})
    assert sim.heard_seconds() == pytest.approx(0.3, abs=0.02)  # the audio played first
    report = server.reports[0]
    assert (report.end_cause, report.close_code, report.close_reason) == ("hangup", 1000, "hangup (API: ended)")


async def test_telnyx_transfer_goes_through_call_control(nursery, api: FakeAPI):
    api.route("POST", f"/v2/calls/{CALL}/actions/transfer", Reply(200, {"data": {"result": "ok"}}))

    async def agent(call):
        await call.transfer("+919800000009")

    control = TelnyxControl(TelnyxConfig("KEY-secret"), base_url=api.base_url, http=FAST)
    server = await _serve(nursery, agent, provider_controls={"telnyx": control})
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/telnyx", "telnyx", start=default_start("telnyx", call_id=CALL)) as sim:
        with trio.fail_after(10):
            await sim.closed.wait()
    await _wait_ended(server)
    [request] = api.requests
    assert request.path == f"/v2/calls/{CALL}/actions/transfer" and request.json()["to"] == "+919800000009"
    assert request.headers["authorization"] == "Bearer KEY-secret"
    assert server.reports[0].close_reason == "transfer (API: transferred)"


async def test_an_api_that_fails_still_ends_the_call_by_closing_the_socket(nursery, api: FakeAPI):
    path = f"/2010-04-01/Accounts/{SIM_ACCOUNT}/Calls/{CALL}.json"
    api.route("POST", path, Reply(401, {"code": 20003, "message": "Authenticate"}))

    async def agent(call):
        await call.hangup()

    control = TwilioControl(TwilioConfig(SIM_ACCOUNT, "bad-token"), base_url=api.base_url, http=FAST)
    server = await _serve(nursery, agent, provider_controls={"twilio": control})
    async with open_dialed_call(f"ws://127.0.0.1:{server.port}/twilio", "twilio", start=default_start("twilio", call_id=CALL)) as sim:
        with trio.fail_after(10):
            await sim.closed.wait()
    await _wait_ended(server)
    assert sim.closed_code == 1000
    assert server.reports[0].close_reason == "hangup (API failed: ProviderAPIError)"


async def test_without_credentials_a_hangup_closes_the_socket_and_says_so_once(nursery, monkeypatch, caplog):
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    async def agent(call):
        await call.hangup()

    server = await _serve(nursery, agent)
    caplog.set_level(logging.INFO, logger="callengine.server")
    for _ in range(2):
        async with open_dialed_call(f"ws://127.0.0.1:{server.port}/twilio", "twilio") as sim:
            with trio.fail_after(10):
                await sim.closed.wait()
        assert sim.closed_code == 1000
    await _wait_ended(server, 2)
    said = [r.getMessage() for r in caplog.records if "no API credentials" in r.getMessage()]
    assert said == ["twilio: no API credentials (set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN): a hang-up closes the socket, and a transfer is not possible"]
    assert [r.close_reason for r in server.reports] == ["hangup", "hangup"]
