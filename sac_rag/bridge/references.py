"""Signed memory references: the compact strings that stand for a memory chunk inside a prompt.

A reference looks like ``⟦sac:<id>:<tag>⟧``: ``id`` is 12 random hex digits and ``tag`` the first
128 bits of HMAC-SHA256(secret key, id), in hex. The key is drawn with :func:`secrets.token_bytes`
for each :class:`ReferenceSigner` (one per session/registry), so a reference can be made only by
the registry that holds the memory; text that merely looks like one (in a question, a document,
or a reference from another session) never verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "⟦sac:"
SUFFIX = "⟧"
ID_HEX = 12
TAG_HEX = 32
# Anything shaped like a reference (bounded, no nesting), so look-alikes are found and judged too.
LOOKALIKE = re.compile(r"⟦\s*sac\s*:[^⟦⟧]{0,200}⟧", re.IGNORECASE)
_STRICT = re.compile(rf"⟦sac:([0-9a-f]{{{ID_HEX}}}):([0-9a-f]{{{TAG_HEX}}})⟧")


class MemoryReferenceError(LookupError):
    """A memory reference in a prompt cannot be used.

    Deliberately not a ``ValueError``: LlamaIndex's response synthesizers catch ``ValueError`` and
    answer "Empty Response", which would hide a forged or stale reference.
    """


class ForgedReferenceError(MemoryReferenceError):
    """Text shaped like a memory reference that this session never signed (forged, mangled or foreign)."""


class UnresolvableReferenceError(MemoryReferenceError):
    """A reference this session signed whose memory it no longer holds (evicted or released)."""


@dataclass(frozen=True)
class ParsedReference:
    """One reference-shaped span of a prompt."""

    start: int
    end: int
    text: str
    ref_id: str | None  # None when the text is not even well formed


class ReferenceSigner:
    """Makes and verifies references with a secret key (fresh per instance unless one is given)."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) < 16:
            raise ValueError("a reference key needs at least 16 bytes")
        self._key = key or secrets.token_bytes(32)

    def _tag(self, ref_id: str) -> str:
        return hmac.new(self._key, f"sac-ref:{ref_id}".encode(), hashlib.sha256).hexdigest()[:TAG_HEX]

    def new_reference(self) -> tuple[str, str]:
        """A fresh ``(ref_id, reference)`` pair."""
        ref_id = secrets.token_hex(ID_HEX // 2)
        return ref_id, f"{PREFIX}{ref_id}:{self._tag(ref_id)}{SUFFIX}"

    def verify(self, reference: str) -> str | None:
        """The reference's id if it is well formed and signed with this key, else None."""
        m = _STRICT.fullmatch(reference)
        if not m or not hmac.compare_digest(self._tag(m.group(1)), m.group(2)):
            return None
        return m.group(1)

    def scan(self, text: str) -> list[ParsedReference]:
        """Every reference-shaped span of ``text``, with its id when it verifies."""
        return [
            ParsedReference(m.start(), m.end(), m.group(0), self.verify(m.group(0))) for m in LOOKALIKE.finditer(text)
        ]
