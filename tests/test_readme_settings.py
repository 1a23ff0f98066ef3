"""Every setting the README's "not fully documented" table names is reachable the three ways
the README says: a serve flag, the config classes, and a route; each reaches the call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callengine.call.config import CALL_SETTINGS
from callengine.cli import _option, build_parser, server_config_from_args
from callengine.protocols.base import Role
from callengine.protocols.registry import CODECS, create_codec
from callengine.server import ServerConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def _table_settings() -> list[tuple[str, str, object]]:
    text = README.read_text()
    section = text[text.index("## How the engine behaves where providers are not fully documented") :]
    section = section[: section.index("\n## ", 10)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| question")]
    found = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3, row
        for provider, name, value in re.findall(r"`([a-z-]+|P)\.([a-z_]+)=([^`]+)`", cells[2]):
            for p in CODECS if provider == "P" else [provider]:
                found.append((p, name, _option(f"{name}={value}", "README")[1]))
        assert found or cells[2] == "none needed" or "none until" in cells[2], row
    return found


SETTINGS = _table_settings()


def test_the_table_names_settings():
    names = {name for _, name, _ in SETTINGS}
    assert {"wav_wrap", "whole_frames", "mark_echo", "mark_shape", "clips", "kill_audio", "inband_dtmf"} <= names
    assert {"default_rate", "empty_frame_ends", "idle_timeout_s", "keepalive_s", "chunk_ms", "lead_ms"} <= names


def _reaches_the_call(config: ServerConfig, provider: str, name: str, value: object, via=None) -> None:
    if name in CALL_SETTINGS:
        got = getattr(config.call_for(provider, via), name)
        want = None if isinstance(value, str) and value.lower() in ("none", "auto") else value
        assert got == want, (provider, name)
        return
    options = config.options_for(provider, via)
    assert options[name] == value
    codec = create_codec(provider, Role.ENGINE, **options)
    default = create_codec(provider, Role.ENGINE)
    # the option changed what the codec is: an attribute of that name, or its capabilities
    for holder in (codec, codec.capabilities):
        if hasattr(holder, name):
            assert getattr(holder, name) == value
            break
    else:
        assert codec.__dict__ != default.__dict__, (provider, name)


@pytest.mark.parametrize("provider,name,value", SETTINGS, ids=[f"{p}.{n}" for p, n, _ in SETTINGS])
def test_each_setting_is_a_flag_a_config_field_and_a_route_setting(provider, name, value):
    text = value if not isinstance(value, bool) else ("on" if value else "off")
    flag = server_config_from_args(build_parser().parse_args(["serve", "echo", "--codec-option", f"{provider}.{name}={text}"]))
    _reaches_the_call(flag, provider, name, value)

    kind = "call_options" if name in CALL_SETTINGS else "codec_options"
    in_code = ServerConfig(**{kind: {provider: {name: value}}})
    _reaches_the_call(in_code, provider, name, value)

    route_flag = server_config_from_args(build_parser().parse_args(["serve", "echo", "--route", f"/acct={provider},{name}={text}"]))
    (route,) = route_flag.routes
    _reaches_the_call(route_flag, provider, name, value, route)
    route_code = ServerConfig(routes=[("/acct", provider, {name: value})])
    _reaches_the_call(route_code, provider, name, value, route_code.routes[0])
    # a route's setting stays on its route
    if name in CALL_SETTINGS:
        assert route_code.call_for(provider, None) == route_code.call
    else:
        assert name not in route_code.options_for(provider, None)
