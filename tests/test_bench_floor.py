"""The Trio floor server of bench_capacity.py (scripts/bare_echo_trio_floor.py) echoes what the
other servers echo, so that its figures compare like with like: a real process on a loopback
port, real echo calls from ``callengine load`` on both providers' traffic, in both layouts."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bare_echo_trio_floor.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("tasks", [1, 3])
@pytest.mark.parametrize("provider", ["awaaz", "knowlarity"])
def test_floor_server_echoes_every_call(tasks: int, provider: str) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", str(port), "--tasks", str(tasks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        load = subprocess.run(
            [sys.executable, "-m", "callengine", "load", f"ws://127.0.0.1:{port}/{provider}",
             "--provider", provider, "--calls", "3", "--seconds", "1.5"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
        assert re.search(r"^verdict\s+OK$", load.stdout, re.M), load.stdout + load.stderr
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0, err  # SIGTERM is a clean stop
