"""`callengine serve` in a real subprocess for tests: its stdout and stderr collected as
they come, the port read from its one listening line."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
PY = [sys.executable, "-m", "callengine"]
LISTENING = re.compile(rb"listening on wss?://[^:/\s]+:(\d+)")


class ServeProcess:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.port: int | None = None
        self._eof = {"stdout": trio.Event(), "stderr": trio.Event()}

    async def _pump(self, name: str) -> None:
        stream = getattr(self.proc, name)
        buf = getattr(self, name)
        try:
            while chunk := await stream.receive_some(65536):
                buf += chunk
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self._eof[name].set()

    async def wait_for(self, pattern: bytes | re.Pattern, stream: str = "stderr", timeout: float = 30) -> re.Match:
        """The first match of ``pattern`` in ``stream`` (waits for it)."""
        regex = re.compile(pattern) if isinstance(pattern, bytes) else pattern
        buf = getattr(self, stream)
        with trio.fail_after(timeout):
            while True:
                m = regex.search(buf)
                if m:
                    return m
                if self._eof[stream].is_set():
                    raise AssertionError(f"no {regex.pattern!r} in {stream}:\n{buf.decode(errors='replace')}\nstderr:\n{self.stderr.decode(errors='replace')}")
                await trio.sleep(0.02)

    async def wait(self, timeout: float = 30) -> int:
        """The exit code, once the process has exited and both streams are read."""
        with trio.fail_after(timeout):
            await self.proc.wait()
            for event in self._eof.values():
                await event.wait()
        return self.proc.returncode

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode(errors="replace")


async def start_serve(nursery: trio.Nursery, args: list[str], *, argv: list[str] | None = None, cwd=ROOT, env: dict | None = None, preexec_fn=None, wait_listening: bool = True) -> ServeProcess:
    """Start ``callengine serve ARGS`` (or ``argv + ARGS``) and wait for its listening line.
    ``env``: the whole environment (default: this process's)."""
    command = (argv if argv is not None else PY + ["serve"]) + args
    full_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    proc = await nursery.start(
        functools.partial(
            trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, cwd=str(cwd), env=full_env, preexec_fn=preexec_fn
        )
    )
    sp = ServeProcess(proc)
    nursery.start_soon(sp._pump, "stdout")
    nursery.start_soon(sp._pump, "stderr")
    if wait_listening:
        sp.port = int((await sp.wait_for(LISTENING, "stdout")).group(1))
    return sp
