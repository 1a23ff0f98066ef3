"""``callengine call`` against the local fake API: in-process main() in a worker thread
(its own trio.run) and once as a real subprocess."""

from __future__ import annotations

import base64
import os
import sys

import pytest
import trio

from callengine.cli import main

from .httpserver import FakeAPI, Reply

SID, TOKEN = "ACcli0000000000000000000000000000", "cli-SECRET-token-0001"
CALLS = f"/2010-04-01/Accounts/{SID}/Calls.json"
TWILIO_ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}


def clear_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from callengine.control import ENV_VARS, OPTIONAL_ENV_VARS

    for groups in ENV_VARS.values():
        for names in groups:
            for name in names:
                monkeypatch.delenv(name, raising=False)
    for names in OPTIONAL_ENV_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)


async def run_main(argv: list[str]) -> int:
    # main() runs its own trio.run: give it a thread, as a separate program would have
    return await trio.to_thread.run_sync(main, argv)


async def test_places_a_twilio_call_and_prints_its_sid(api: FakeAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clear_credentials(monkeypatch)
    for k, v in TWILIO_ENV.items():
        monkeypatch.setenv(k, v)
    api.route("POST", CALLS, Reply(201, {"sid": "CAplaced", "status": "queued"}))
    argv = ["call", "--provider", "twilio", "--to", "+919800000001", "--from", "+14155550100",
            "--url", "wss://bot.example.com/twilio", "--param", "lead=42", "--param", "note=a=b", "--api-base", api.base_url]
    assert await run_main(argv) == 0
    out, err = capsys.readouterr()
    assert out == "CAplaced\n" and err == ""
    [req] = api.requests
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    form = req.form()
    assert (form["To"], form["From"]) == ("+919800000001", "+14155550100")
    assert '<Parameter name="lead" value="42"/><Parameter name="note" value="a=b"/>' in form["Twiml"]


async def test_missing_credentials_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clear_credentials(monkeypatch)
    monkeypatch.setenv("EXOTEL_API_KEY", "k")
    code = await run_main(["call", "--provider", "exotel", "--to", "+91", "--from", "080", "--url", "wss://bot"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == "callengine call: exotel needs EXOTEL_API_TOKEN, EXOTEL_SID in the environment\n"


async def test_a_setting_missing_for_this_operation_is_also_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clear_credentials(monkeypatch)
    monkeypatch.setenv("TELNYX_API_KEY", "telnyx-SECRET")
    code = await run_main(["call", "--provider", "telnyx", "--to", "+1", "--from", "+2", "--url", "wss://bot"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "TELNYX_CONNECTION_ID" in err and "telnyx-SECRET" not in err


async def test_provider_refusal_exit_1_with_its_message(api: FakeAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clear_credentials(monkeypatch)
    for k, v in TWILIO_ENV.items():
        monkeypatch.setenv(k, v)
    api.route("POST", CALLS, Reply(400, {"code": 21211, "message": "The 'To' number +1 is not a valid phone number.", "status": 400}))
    code = await run_main(["call", "--provider", "twilio", "--to", "+1", "--from", "+2", "--url", "wss://bot", "--api-base", api.base_url])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == "callengine call: twilio place-call failed: HTTP 400 (code 21211): The 'To' number +1 is not a valid phone number.\n"
    assert len(api.requests) == 1  # never a second call


async def test_a_bad_param_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clear_credentials(monkeypatch)
    code = await run_main(["call", "--provider", "twilio", "--to", "+1", "--from", "+2", "--url", "wss://b", "--param", "novalue"])
    assert code == 2 and "KEY=VALUE" in capsys.readouterr().err


async def test_the_installed_command_as_a_subprocess(api: FakeAPI) -> None:
    api.route("POST", "/v2/calls", Reply(200, {"data": {"call_control_id": "v3:sub"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "PLIVO_", "VOBIZ_", "TELNYX_", "VONAGE_", "EXOTEL_"))}
    env.update(TELNYX_API_KEY="telnyx-SECRET-sub", TELNYX_CONNECTION_ID="555")
    argv = [sys.executable, "-m", "callengine", "call", "--provider", "telnyx", "--to", "+18005550199", "--from", "+18005550100",
            "--url", "wss://bot.example.com/telnyx", "--api-base", api.base_url, "--timeout", "10"]
    with trio.fail_after(30):
        result = await trio.run_process(argv, env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"v3:sub\n", b"")
    assert api.requests[0].json()["connection_id"] == "555"
    assert api.requests[0].headers["authorization"] == "Bearer telnyx-SECRET-sub"
