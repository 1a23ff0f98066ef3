"""The Vonage Voice API with its application JWT, verified with the public key."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callengine.control import CallIds, ControlConfigError, ProviderAPIError, VonageConfig, VonageControl, from_env

from .conftest import FAST
from .httpserver import FakeAPI, Reply

APP = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"
IDS = CallIds("vonage", UUID)


@pytest.fixture(scope="module")
def keypair() -> tuple[str, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return pem, key.public_key()


def vonage(api: FakeAPI, pem: str) -> VonageControl:
    return VonageControl(VonageConfig(APP, pem), base_url=api.base_url, http=FAST)


def verified_claims(header: str, public: rsa.RSAPublicKey) -> dict[str, object]:
    scheme, _, token = header.partition(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"])  # raises unless signed by our key
    assert claims["application_id"] == APP
    now = time.time()
    assert now - 60 <= claims["iat"] <= now + 1 and claims["nbf"] == claims["iat"]
    assert claims["iat"] < claims["exp"] <= now + 3600
    uuid.UUID(str(claims["jti"]))
    return claims


async def test_hangup_puts_action_hangup_with_a_signed_jwt(api: FakeAPI, keypair: tuple[str, rsa.RSAPublicKey]) -> None:
    pem, public = keypair
    api.route("PUT", f"/v1/calls/{UUID}", Reply(204))
    async with vonage(api, pem) as c:
        assert await c.hangup(IDS) == "ended"
        assert await c.hangup(IDS) == "ended"
    first, second = api.requests
    assert first.json() == {"action": "hangup"}
    a, b = verified_claims(first.headers["authorization"], public), verified_claims(second.headers["authorization"], public)
    assert a["jti"] != b["jti"]  # a fresh token per request


async def test_transfer_to_a_number_sip_and_ncco_url(api: FakeAPI, keypair: tuple[str, rsa.RSAPublicKey]) -> None:
    pem, public = keypair
    api.route("PUT", f"/v1/calls/{UUID}", Reply(204))
    async with vonage(api, pem) as c:
        await c.transfer(IDS, "+447700900000")
        await c.transfer(IDS, "sip:agent@example.com")
        await c.transfer(IDS, "https://example.com/ncco.json")
    bodies = [r.json() for r in api.requests]
    assert bodies[0] == {"action": "transfer", "destination": {"type": "ncco", "ncco": [{"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}]}]}}
    assert bodies[1] == {"action": "transfer", "destination": {"type": "ncco", "ncco": [{"action": "connect", "endpoint": [{"type": "sip", "uri": "sip:agent@example.com"}]}]}}
    assert bodies[2] == {"action": "transfer", "destination": {"type": "ncco", "url": ["https://example.com/ncco.json"]}}
    for r in api.requests:
        verified_claims(r.headers["authorization"], public)


async def test_place_call_connects_a_websocket_with_headers(api: FakeAPI, keypair: tuple[str, rsa.RSAPublicKey]) -> None:
    pem, public = keypair
    api.route("POST", "/v1/calls", Reply(201, {"uuid": "new-uuid", "status": "started", "direction": "outbound", "conversation_uuid": "CON-1"}))
    async with vonage(api, pem) as c:
        assert await c.place_call("+447700900001", "447700900000", "wss://bot.example.com/vonage", {"lead": "42"}) == "new-uuid"
    [req] = api.requests
    verified_claims(req.headers["authorization"], public)
    assert req.json() == {
        "to": [{"type": "phone", "number": "447700900001"}],
        "from": {"type": "phone", "number": "447700900000"},
        "ncco": [{"action": "connect", "endpoint": [{"type": "websocket", "uri": "wss://bot.example.com/vonage", "content-type": "audio/l16;rate=16000", "headers": {"lead": "42"}}]}],
    }


async def test_errors_and_already_ended(api: FakeAPI, keypair: tuple[str, rsa.RSAPublicKey]) -> None:
    pem, _ = keypair
    api.route("PUT", f"/v1/calls/{UUID}", Reply(404, {"type": "https://developer.nexmo.com/api-errors#not-found", "title": "Not Found", "detail": "Call not found"}))
    api.route("POST", "/v1/calls", Reply(401, {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Invalid credentials supplied", "detail": "You did not provide correct credentials."}))
    async with vonage(api, pem) as c:
        assert await c.hangup(IDS) == "already-ended"
        with pytest.raises(ProviderAPIError) as info:
            await c.place_call("+1", "+2", "wss://x")
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert info.value.provider_message == "Invalid credentials supplied: You did not provide correct credentials."
    assert "PRIVATE KEY" not in str(info.value)


async def test_an_unreadable_key_is_a_config_error_that_quotes_nothing(api: FakeAPI) -> None:
    bad = "-----BEGIN PRIVATE KEY-----\nnot-a-key-SECRETSTUFF\n-----END PRIVATE KEY-----\n"
    async with vonage(api, bad) as c:
        with pytest.raises(ControlConfigError) as info:
            await c.hangup(IDS)
    assert "SECRETSTUFF" not in str(info.value) and info.value.__cause__ is None
    assert api.requests == []


def test_from_env_reads_the_key_text_or_file(tmp_path: object, keypair: tuple[str, rsa.RSAPublicKey]) -> None:
    import pathlib

    pem, public = keypair
    c1 = from_env("vonage", {"VONAGE_APPLICATION_ID": APP, "VONAGE_PRIVATE_KEY": pem.replace("\n", "\\n")})
    assert isinstance(c1, VonageControl) and c1.config.private_key == pem
    path = pathlib.Path(str(tmp_path)) / "private.key"
    path.write_text(pem)
    c2 = from_env("vonage", {"VONAGE_APPLICATION_ID": APP, "VONAGE_PRIVATE_KEY_PATH": str(path)})
    assert isinstance(c2, VonageControl)
    verified_claims("Bearer " + c2.token(), public)
    assert from_env("vonage", {"VONAGE_APPLICATION_ID": APP}) is None
    with pytest.raises(ControlConfigError, match="VONAGE_PRIVATE_KEY_PATH"):
        from_env("vonage", {"VONAGE_APPLICATION_ID": APP, "VONAGE_PRIVATE_KEY_PATH": str(path) + ".missing"})
    assert pem not in repr(c2.config) and "PRIVATE" not in repr(c2.config)
