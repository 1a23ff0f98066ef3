"""The tools a bridge offers its model: a name, a description, a JSON schema."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

__all__ = ["Tool", "HANG_UP", "TRANSFER", "BUNDLED_TOOLS"]


@attrs.frozen
class Tool:
    """A function the model may call: ``parameters`` is its JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}})


HANG_UP = Tool("hang_up", "End the phone call. Say goodbye first; the call ends once the caller has heard it.")
TRANSFER = Tool(
    "transfer",
    "Transfer the caller to a person or department. Tell the caller first.",
    {"type": "object", "properties": {"target": {"type": "string", "description": "where to transfer, e.g. 'sales'"}}},
)
BUNDLED_TOOLS: dict[str, Tool] = {t.name: t for t in (HANG_UP, TRANSFER)}
