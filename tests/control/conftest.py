from __future__ import annotations

import pytest
import trio

from callengine.control import HttpSettings

from .httpserver import FakeAPI

#: short timeouts so a failing test fails in seconds, never hangs
FAST = HttpSettings(timeout_s=2.0, deadline_s=5.0, retries=2, backoff_s=0.01)


@pytest.fixture
async def api(nursery: trio.Nursery) -> FakeAPI:
    fake = FakeAPI()
    await fake.start(nursery)
    return fake
