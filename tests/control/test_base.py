"""What every control shares: trio, timeouts, retries only where safe, one error type, no
credential in any log line or message, credentials from the environment."""

from __future__ import annotations

import gc
import logging
import socket

import pytest
import sniffio
import trio

from callengine.control import (
    ENV_VARS,
    PROVIDERS,
    CallIds,
    ControlConfigError,
    HttpSettings,
    PlivoConfig,
    PlivoControl,
    ProviderAPIError,
    TelnyxConfig,
    TelnyxControl,
    TwilioConfig,
    TwilioControl,
    from_env,
    ids_from_start,
    missing_credentials,
)

from callengine.events import CallStarted

from .conftest import FAST
from .httpserver import FakeAPI, Reply

SID, TOKEN = "AC00000000000000000000000000000000", "twilio-SECRET-token-abcdef"
CALL = "CA99"
CALL_PATH = f"/2010-04-01/Accounts/{SID}/Calls/{CALL}.json"
IDS = CallIds("twilio", CALL, SID)
PLIVO_ID = "MAplivoAUTHID0001"  # Plivo's Basic-auth user name, also in its paths


def twilio(base_url: str, http: HttpSettings = FAST) -> TwilioControl:
    return TwilioControl(TwilioConfig(SID, TOKEN), base_url=base_url, http=http)


async def test_httpx_runs_on_trio(api: FakeAPI) -> None:
    assert sniffio.current_async_library() == "trio"
    api.route("POST", CALL_PATH, Reply(200, {"sid": CALL}))
    async with twilio(api.base_url) as c:
        assert await c.hangup(IDS) == "ended"
        assert await c.hangup(IDS) == "ended"
    assert len(api.requests) == 2


def test_a_plain_trio_run_with_no_test_plugin() -> None:
    """The way the CLI and the engine run it: trio.run, server and client in one loop."""

    async def main() -> tuple[str, int]:
        async with trio.open_nursery() as nursery:
            fake = FakeAPI()
            await fake.start(nursery)
            fake.route("POST", CALL_PATH, Reply(404, {"code": 20404, "message": "not found"}))
            async with twilio(fake.base_url) as c:
                outcome = await c.hangup(IDS)
            nursery.cancel_scope.cancel()
        return outcome, len(fake.requests)

    assert trio.run(main) == ("already-ended", 1)


# the first run's client is dropped unclosed, as its loop is gone: its socket warns when collected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_one_control_in_two_trio_runs() -> None:
    """A control kept across trio.run calls without aclose() makes a new client in the new
    loop instead of reusing the old loop's connections (which would fail)."""
    control = twilio("http://127.0.0.1:1")

    async def once() -> str:
        async with trio.open_nursery() as nursery:
            fake = FakeAPI()
            await fake.start(nursery)
            fake.route("POST", CALL_PATH, Reply(200, {"sid": CALL}))
            control.base_url = fake.base_url
            outcome = await control.hangup(IDS)
            nursery.cancel_scope.cancel()
        return outcome

    assert trio.run(once) == "ended"
    assert trio.run(once) == "ended"
    trio.run(control.aclose)
    gc.collect()  # the dropped client's socket warns here, under this test's filters


async def test_idempotent_hangup_is_retried_after_a_dropped_connection_and_503(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(drop=True), Reply(503, {"message": "busy"}, headers=(("retry-after", "0"),)), Reply(200, {"sid": CALL}))
    async with twilio(api.base_url) as c:
        assert await c.hangup(IDS) == "ended"
    assert len(api.requests) == 3


async def test_retries_stop_at_the_limit(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(502, {"message": "bad gateway"}))
    async with twilio(api.base_url) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
    assert info.value.status == 502 and len(api.requests) == 1 + FAST.retries


async def test_a_long_retry_after_is_not_waited_for(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(429, {"message": "Too many requests"}, headers=(("retry-after", "120"),)))
    async with twilio(api.base_url) as c:
        with trio.fail_after(2):
            with pytest.raises(ProviderAPIError) as info:
                await c.hangup(IDS)
    assert info.value.status == 429 and len(api.requests) == 1


async def test_a_transfer_that_may_have_arrived_is_not_repeated(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(drop=True))
    async with twilio(api.base_url) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.transfer(IDS, "+15550001111")
    assert info.value.status is None and "no answer" in str(info.value)
    assert len(api.requests) == 1  # a second update could dial twice


async def test_a_refused_connection_is_retried_even_for_place_call(caplog: pytest.LogCaptureFixture) -> None:
    # a port nobody listens on: the request never leaves, so trying again is harmless
    caplog.set_level(logging.INFO, logger="callengine.control")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with twilio(f"http://127.0.0.1:{port}") as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.place_call("+1", "+2", "wss://x")
    assert info.value.status is None and "could not connect" in str(info.value)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == FAST.retries


async def test_a_slow_answer_times_out_within_the_deadline(api: FakeAPI) -> None:
    api.route("POST", CALL_PATH, Reply(200, {"sid": CALL}, delay_s=3.0))
    http = HttpSettings(timeout_s=0.3, deadline_s=1.0, retries=5, backoff_s=0.01)
    async with twilio(api.base_url, http) as c:
        started = trio.current_time()
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
        elapsed = trio.current_time() - started
    assert info.value.status is None
    assert elapsed < 1.5  # the deadline holds over every attempt


async def test_no_credential_in_any_log_line_or_message(api: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # a provider that quotes what it was sent must not make us quote the secret
    api.route("POST", CALL_PATH, Reply(401, {"code": 20003, "message": f"bad token {TOKEN}"}))
    api.route("DELETE", f"/v1/Account/{PLIVO_ID}/Call/u1/", Reply(503, {"error": f"down for {PLIVO_ID}"}))
    api.route("POST", "/v2/calls/c1/actions/hangup", Reply(drop=True))
    secrets = [TOKEN, "plivo-SECRET-zz", "telnyx-SECRET-key", PLIVO_ID]
    errors: list[str] = []
    async with twilio(api.base_url) as c:
        with pytest.raises(ProviderAPIError) as info:
            await c.hangup(IDS)
        errors.append(str(info.value))
        assert "***" in info.value.provider_message
    async with PlivoControl(PlivoConfig(PLIVO_ID, secrets[1]), base_url=api.base_url, http=FAST) as p:
        with pytest.raises(ProviderAPIError) as info:
            await p.hangup(CallIds("plivo", "u1"))
        errors.append(str(info.value))
    async with TelnyxControl(TelnyxConfig(secrets[2]), base_url=api.base_url, http=FAST) as t:
        with pytest.raises(ProviderAPIError) as info:
            await t.hangup(CallIds("telnyx", "c1"))
        errors.append(str(info.value))
    logged = [r.getMessage() for r in caplog.records]
    assert any("retrying" in line for line in logged) and any("failed" in line for line in logged)
    assert any(line.startswith("HTTP Request: DELETE") and "/Account/***/Call/u1/" in line for line in logged)  # httpx's own line
    for text in logged + errors:
        for secret in secrets:
            assert secret not in text, text
    # the http libraries' own debug logging must not carry the Authorization header either
    for record in caplog.records:
        assert "authorization" not in record.getMessage().lower() or "***" in record.getMessage()


def test_from_env_and_missing_credentials() -> None:
    assert from_env("twilio", {}) is None
    assert from_env("awaaz", {"TWILIO_ACCOUNT_SID": "x"}) is None  # no REST control for it
    assert missing_credentials("twilio", {"TWILIO_ACCOUNT_SID": "AC1"}) == ["TWILIO_AUTH_TOKEN"]
    assert missing_credentials("vonage", {}) == ["VONAGE_APPLICATION_ID", "VONAGE_PRIVATE_KEY or VONAGE_PRIVATE_KEY_PATH"]
    assert set(PROVIDERS) == set(ENV_VARS) == {"twilio", "plivo", "vobiz", "telnyx", "vonage", "exotel"}
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
    control = from_env("twilio", env, base_url="http://127.0.0.1:9")
    assert isinstance(control, TwilioControl) and control.base_url == "http://127.0.0.1:9"
    assert TOKEN not in repr(control.config)
    exotel = from_env("exotel", {"EXOTEL_API_KEY": "k", "EXOTEL_API_TOKEN": "t", "EXOTEL_SID": "s", "EXOTEL_SUBDOMAIN": "api.in.exotel.com"})
    assert exotel is not None and exotel.base_url == "https://api.in.exotel.com"
    telnyx = from_env("telnyx", {"TELNYX_API_KEY": "k", "TELNYX_CONNECTION_ID": "123"})
    assert isinstance(telnyx, TelnyxControl) and telnyx.config.connection_id == "123"


def test_ids_from_the_start_messages() -> None:
    twilio_start = {"event": "start", "start": {"accountSid": "AC1", "callSid": "CA1", "streamSid": "MZ1"}}
    assert ids_from_start("twilio", twilio_start) == CallIds("twilio", "CA1", "AC1")
    started = CallStarted(call_id="CA1", raw=twilio_start)  # what the engine holds: a FrozenDict
    assert ids_from_start("twilio", started.raw) == CallIds("twilio", "CA1", "AC1")
    assert ids_from_start("plivo", {"event": "start", "start": {"callId": "u-1", "streamId": "s"}}) == CallIds("plivo", "u-1")
    assert ids_from_start("vobiz", {"event": "start", "start": {"callId": "u-2"}}) == CallIds("vobiz", "u-2")
    assert ids_from_start("telnyx", {"event": "start", "stream_id": "x", "start": {"call_control_id": "v3:c"}}) == CallIds("telnyx", "v3:c")
    assert ids_from_start("exotel", {"start": {"call_sid": "CA2", "account_sid": "acc"}}) == CallIds("exotel", "CA2", "acc")
    assert ids_from_start("vonage", {"event": "websocket:connected", "call_uuid": "uu"}) == CallIds("vonage", "uu")
    assert ids_from_start("vonage", {"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}) is None
    assert ids_from_start("twilio", {"start": {"callSid": 7}}) is None
    assert ids_from_start("awaaz", {"start": {"call_sid": "x"}}) is None
    with pytest.raises(ValueError):
        CallIds("twilio", "")


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        HttpSettings(timeout_s=0)
    with pytest.raises(ValueError):
        HttpSettings(deadline_s=float("inf"))
    with pytest.raises(ValueError):
        HttpSettings(retries=-1)


async def test_place_call_for_code(api: FakeAPI) -> None:
    import callengine.control

    api.route("POST", f"/2010-04-01/Accounts/{SID}/Calls.json", Reply(201, {"sid": "CAcode"}))
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
    sid = await callengine.control.place_call(
        "twilio", to="+919800000001", from_="+14155550100", stream_url="wss://bot/twilio", custom={"k": "v"}, environ=env, base_url=api.base_url
    )
    assert sid == "CAcode" and api.requests[0].form()["To"] == "+919800000001"
    with pytest.raises(ControlConfigError, match="set TWILIO_AUTH_TOKEN"):
        await callengine.control.place_call("twilio", to="1", from_="2", stream_url="wss://b", environ={"TWILIO_ACCOUNT_SID": SID})
    with pytest.raises(ControlConfigError, match="no outbound-call API"):
        await callengine.control.place_call("knowlarity", to="1", from_="2", stream_url="wss://b", environ={})
