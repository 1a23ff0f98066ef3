"""The layers: events, audio and protocols are sans-IO and import without trio."""

import subprocess
import sys

BLOCK_TRIO = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("trio", "trio_websocket", "wsproto"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
import pkgutil, callengine, callengine.events, callengine.errors, callengine.audio, callengine.protocols
for pkg in (callengine.audio, callengine.protocols):
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("trio", "trio_websocket"))
print("ok" if not loaded else loaded)
"""


def test_sans_io_layers_import_without_trio():
    result = subprocess.run([sys.executable, "-c", BLOCK_TRIO], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_public_names_resolve():
    import callengine

    for name in callengine.__all__:
        assert getattr(callengine, name) is not None, name
    assert callengine.Call.__module__ == "callengine.call.api"
