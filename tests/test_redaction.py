"""The shared token, right or wrong, never reaches a log line or a call summary."""

from __future__ import annotations

import json
import logging
import signal

import pytest
import trio

from callengine.redact import redact_headers, redact_path, redact_text
from callengine.server import CallServer, ServerConfig
from callengine.testing.dial import DialError, open_dialed_call

from .serve_process import start_serve

SECRET = "s3cretTOKEN42"
WRONG = "wr0ngTOKEN99"


def test_redact_path():
    assert redact_path(f"/{SECRET}/awaaz", SECRET) == "/***/awaaz"
    assert redact_path(f"/vaani/{SECRET}/knowlarity/setup?x=1", SECRET) == "/vaani/***/knowlarity/setup?x=1"
    assert redact_path(f"/awaaz?token={WRONG}&call=7", SECRET) == "/awaaz?token=***&call=7"
    assert redact_path(f"/awaaz?other={SECRET}", SECRET) == "/awaaz?other=***"
    assert redact_path(f"/awaaz?{SECRET}", SECRET) == "/awaaz?***"
    assert redact_path("/s3cret%54OKEN42/awaaz", SECRET) == "/***/awaaz"  # percent-encoded
    # no token found: any segment may be a wrong one, so only the known ones are shown
    assert redact_path(f"/{WRONG}/vaani/knowlarity", SECRET, keep=["knowlarity"], unknown_segments=True) == "/***/***/knowlarity"
    assert redact_path("/awaaz?token=abc") == "/awaaz?token=***"  # even without a token configured


def test_redact_headers_and_text():
    headers = [(b"Authorization", f"Bearer {SECRET}".encode()), (b"X-Callengine-Token", WRONG.encode()), (b"User-Agent", b"awaaz/1")]
    assert redact_headers(headers, SECRET) == [("authorization", "***"), ("x-callengine-token", "***"), ("user-agent", "awaaz/1")]
    assert redact_text(f"GET /{SECRET}/awaaz failed", SECRET) == "GET /***/awaaz failed"


async def _dial(url: str, headers=None) -> None:
    async with open_dialed_call(url, "awaaz", extra_headers=headers):
        await trio.sleep(0.05)


async def test_the_token_is_never_logged(nursery, caplog):
    caplog.set_level(logging.DEBUG)
    server = CallServer(lambda call: trio.sleep(0.01), ServerConfig(port=0, loop_watchdog_s=None, token=SECRET))
    await nursery.start(server.serve)
    base = f"ws://127.0.0.1:{server.port}"
    # accepted: the token in the path, the query, each header
    await _dial(f"{base}/{SECRET}/awaaz")
    await _dial(f"{base}/awaaz?token={SECRET}&campaign=7")
    await _dial(f"{base}/awaaz", [(b"authorization", f"Bearer {SECRET}".encode())])
    await _dial(f"{base}/awaaz", [(b"x-callengine-token", SECRET.encode())])
    # rejected: 401 (none, or a wrong one in the path), 403 (wrong in query or header), 404
    for url, headers, status in [
        (f"{base}/awaaz", None, "401"),
        (f"{base}/{WRONG}/awaaz", None, "401"),
        (f"{base}/awaaz?token={WRONG}", None, "403"),
        (f"{base}/awaaz", [(b"authorization", f"Bearer {WRONG}".encode())], "403"),
        (f"{base}/{SECRET}/nope", None, "404"),
    ]:
        with pytest.raises(DialError, match=status):
            await _dial(url, headers)
    with trio.fail_after(10):
        while server.counters["calls_ended"] < 4:
            await trio.sleep(0.02)
    assert server.rejections == {"401": 2, "403": 2, "404": 1}
    lines = [r.getMessage() for r in caplog.records] + [caplog.text]
    for secret in (SECRET, WRONG):
        assert not [line for line in lines if secret in line], secret
    reports = json.dumps([r.as_dict() for r in server.reports], default=str)
    assert SECRET not in reports and WRONG not in reports
    summaries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "callengine.calls"]
    assert sorted(s["path"] for s in summaries) == ["/***/awaaz", "/awaaz", "/awaaz", "/awaaz?token=***&campaign=7"]
    rejected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
    assert any("/***/awaaz: 401" in line for line in rejected) and any("403 wrong token" in line for line in rejected)


async def test_the_token_is_not_in_the_served_process_output(nursery):
    sp = await start_serve(nursery, ["echo", "--port", "0", "--token", SECRET, "--log-format", "json", "--log-level", "debug", "--drain-grace", "0.5"])
    base = f"ws://127.0.0.1:{sp.port}"
    await _dial(f"{base}/{SECRET}/awaaz")
    with pytest.raises(DialError, match="401"):
        await _dial(f"{base}/{WRONG}/awaaz")
    with pytest.raises(DialError, match="403"):
        await _dial(f"{base}/awaaz?token={WRONG}")
    await sp.wait_for(rb'"path": "/\*\*\*/awaaz"')
    sp.proc.send_signal(signal.SIGTERM)
    assert await sp.wait() == 0
    output = sp.stderr_text + sp.stdout_text
    assert SECRET not in output and WRONG not in output
    assert "wrong token" in output  # that a token was wrong is logged, not its value
