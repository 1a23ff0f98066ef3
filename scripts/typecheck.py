#!/usr/bin/env python
"""Type-check the package and the README's examples with pyright, as CI does.

    python scripts/typecheck.py             # pyright on callengine/ and on the README's Python blocks
    python scripts/typecheck.py --verify    # also pyright --verifytypes callengine (public API completeness)

The README's Python blocks are written into a temporary project (``mypkg/agent.py``,
``tests/test_agent.py``, ``embed.py``, as tests/test_readme.py runs them) and checked
there against the installed package, so an example that would not type-check for a user
fails here. Exits non-zero when pyright reports an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYRIGHT = [sys.executable, "-m", "pyright"]


def readme_blocks() -> dict[str, str]:
    """The README's Python blocks, by the file name in their first line."""
    text = (ROOT / "README.md").read_text()
    out = {}
    for body in re.findall(r"^ *```python\n(.*?)^ *```", text, re.S | re.M):
        first = body.splitlines()[0]
        match = re.match(r"# ([\w/]+\.py)", first)
        if match:
            out[match.group(1)] = body
    return out


def run(args: list[str], cwd: Path) -> int:
    print("$ " + " ".join(["pyright", *args[len(PYRIGHT):]]) + f"   (in {cwd})", flush=True)
    return subprocess.run(args, cwd=cwd).returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verify", action="store_true", help="also report the public API's type completeness")
    args = p.parse_args()
    failed = run([*PYRIGHT, "callengine"], ROOT) != 0
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for name, body in readme_blocks().items():
            path = project / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        (project / "mypkg" / "__init__.py").write_text("")
        # extraPaths: an editable install's import hook is invisible to pyright
        config = {"pythonVersion": "3.11", "extraPaths": [str(ROOT)]}
        (project / "pyrightconfig.json").write_text(json.dumps(config))
        failed |= run([*PYRIGHT, "--pythonpath", sys.executable, "."], project) != 0
    if args.verify:
        # verifytypes looks the package up on the interpreter's path, where an editable
        # install's import hook is invisible: put the checkout on PYTHONPATH, run elsewhere
        with tempfile.TemporaryDirectory() as elsewhere:
            print("$ pyright --verifytypes callengine --ignoreexternal", flush=True)
            subprocess.run([*PYRIGHT, "--verifytypes", "callengine", "--ignoreexternal"], cwd=elsewhere, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if shutil.which("node") is None:
        print("(pyright ran on its bundled Node.js)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
