"""The cascade's text: a streamed reply cut into sentences, and what the caller heard of
it mapped back from the audio played (:mod:`callengine.bridges.cascade`)."""

from __future__ import annotations

import re
from typing import Sequence

import attrs

__all__ = ["Sentence", "split_sentences", "heard_text", "ELLIPSIS"]

ELLIPSIS = "…"

_END = re.compile(r"([.!?।]+[\"')\]]*)(\s+)")
_CLAUSE = re.compile(r"([,;:])(\s+)")


def split_sentences(buffer: str, *, clause_chars: int = 80) -> tuple[list[str], str]:
    """The complete sentences at the start of ``buffer`` (a sentence ends at ``. ! ? ।``
    followed by a space; past ``clause_chars`` a clause ends at ``, ; :`` too), and the rest."""
    out: list[str] = []
    while True:
        m = _END.search(buffer)
        if m is None and len(buffer) > clause_chars:
            m = _CLAUSE.search(buffer, 20)
        if m is None:
            return out, buffer
        piece = buffer[: m.end(1)].strip()
        if piece:
            out.append(piece)
        buffer = buffer[m.end() :]


@attrs.define
class Sentence:
    text: str
    samples: int = 0  # synthesized, at the reply's rate
    complete: bool = True  # False: its synthesis was cut (a barge-in, a TTS error)


def heard_text(sentences: Sequence[Sentence], rate: int, played_ms: float) -> str:
    """What the caller heard of a reply: the sentences whose audio played in full, and of
    the one cut short the share of its words its played audio covers, marked ``…``.

    A sentence whose synthesis was cut has only part of its audio: its full length is
    estimated from the reply's complete sentences (ms per character)."""
    done = [s for s in sentences if s.complete and s.samples]
    chars = sum(len(s.text) for s in done)
    ms_per_char = 1000.0 * sum(s.samples for s in done) / rate / chars if chars else 0.0
    heard: list[str] = []
    start = 0.0
    for s in sentences:
        duration = 1000.0 * s.samples / rate
        if not s.complete:  # never heard in full: what was not synthesized was not spoken
            duration = max(duration, len(s.text) * ms_per_char)
        if s.complete and s.samples and played_ms >= start + duration - 1e-6:
            heard.append(s.text)
        else:
            words = s.text.split()
            share = (played_ms - start) / duration if duration > 0 else 0.0
            keep = min(int(len(words) * max(0.0, min(1.0, share))), len(words) - (0 if s.complete else 1))
            if keep:
                heard.append(" ".join(words[:keep]) + ELLIPSIS)
            break
        start += duration
    return " ".join(heard)
