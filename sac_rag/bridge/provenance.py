"""Which memory-store ids a session trusts: only those whose stored passage is the text the passage shows.

A store id in a document's metadata can come from anywhere: a user-uploaded document, another
retriever, a node edited on its way. Trusting it would hand the LLM the stored passage's memory while
the text shown (and cited) is the document's own, so a document could pull a private passage into an
answer. An id is used only when the store holds a passage under it whose text is exactly the passage's
text; then the stored memory is the memory of what is shown, whatever the id's origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sac_rag.memory.chunk import MemoryChunk


class StoredPassage(Protocol):
    """What the session reads of a stored passage (``sac_rag.store.PassageRow`` fits)."""

    text: str


@runtime_checkable
class MemoryStoreLike(Protocol):
    """What a session needs from a memory store (``sac_rag.store.MemoryStore`` fits).

    ``get`` and ``memories`` raise ``ValueError`` for an id that is malformed or not in the store.
    """

    def get(self, ids: Sequence[int]) -> Sequence[StoredPassage]: ...

    def memories(self, ids: Sequence[int]) -> list[MemoryChunk]: ...


def stored_text(store: MemoryStoreLike, store_id: Any) -> str | None:
    """The text ``store`` holds under ``store_id``; None when the id is malformed or not in the store."""
    if store_id is None or isinstance(store_id, bool):
        return None
    try:
        return store.get([store_id])[0].text
    except (ValueError, TypeError, OverflowError):
        return None


def verified_store_ids(store: MemoryStoreLike, texts: Sequence[str | None], store_ids: Sequence[Any]) -> dict[int, int]:
    """``{index: store id}`` for the passages whose store id names a stored passage with exactly their text."""
    verified = {}
    for i, (text, store_id) in enumerate(zip(texts, store_ids, strict=True)):
        if isinstance(text, str) and text and stored_text(store, store_id) == text:
            verified[i] = store_id
    return verified
