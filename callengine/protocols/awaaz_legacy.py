"""Legacy Awaaz: Awaaz's older mod_audio_fork-style stream (docs/protocols.md, "Older Awaaz accounts").

Awaaz's published sample client (``awaazde/bidirectional-voice-streaming-client``) is the
server of this stream: it writes every binary frame to an 8 kHz WAV file and answers any
text frame with a ``playAudio`` WAV clip. It reads nothing of the first (metadata) frame:
that text is whatever the account's dialplan passes to ``uuid_audio_fork ... start``, so no
field of it is Awaaz's by protocol. The only metadata layout Awaaz has published is the
example of its mod_audio_fork fork (``awaazde/freeswitch_modules`` examples/audio_fork.js:
``{"callId", "to", "from"}``), which the PROVIDER role sends by default (``layout="fork"``)
and which :func:`~callengine.protocols.registry.detect_provider` takes for legacy Awaaz.
"""

from __future__ import annotations

from typing import Any

import attrs

from .base import Role
from .knowlarity import KnowlarityCodec

__all__ = ["LegacyAwaazCodec"]


class LegacyAwaazCodec(KnowlarityCodec):
    """Awaaz's older mod_audio_fork-style stream (its published sample client): a text
    metadata frame, then binary PCM16 at 8 kHz, answered with ``playAudio`` WAV clips. The
    same protocol as Knowlarity with Awaaz's rate: 8 kHz unless the metadata says otherwise.
    Route it by path (``/awaaz-legacy``) or ``--route``; on a detection path only the
    fork-example layout is told from Knowlarity's (see the module docs). ``layout``: as on
    :class:`KnowlarityCodec`, default ``"fork"``."""

    name = "awaaz-legacy"
    capabilities = attrs.evolve(KnowlarityCodec.capabilities, inbound_rate=8000, outbound_rate=8000)

    def __init__(self, role: Role = Role.ENGINE, *, layout: str = "fork", **options: Any) -> None:
        super().__init__(role, layout=layout, **options)
