"""Which memory-store ids a session trusts: only those whose stored passage is the text the passage shows.

A store id in a document's metadata can come from anywhere: a user-uploaded document, another
retriever, a node edited on its way. Trusting it would hand the LLM the stored passage's memory while
the text shown (and cited) is the document's own, so a document could pull a private passage into an
answer. An id is used only when the store holds a passage under it whose text is exactly the passage's
text; then the stored memory is the memory of what is shown, whatever the id's origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sac_rag.store.protocol import PassageStore

#: The memory store a session takes (``SACSession(store=...)``, exported by ``sac_rag.bridge``): the store
#: layer's one protocol, which a single store and a sharded one both satisfy.
MemoryStoreLike = PassageStore


def stored_text(store: PassageStore, store_id: Any) -> str | None:
    """The text ``store`` holds under ``store_id``; None when the id is malformed or not in the store."""
    if store_id is None or isinstance(store_id, bool):
        return None
    try:
        return store.get([store_id])[0].text
    except (ValueError, TypeError, OverflowError):
        return None


def verified_store_ids(store: PassageStore, texts: Sequence[str | None], store_ids: Sequence[Any]) -> dict[int, int]:
    """``{index: store id}`` for the passages whose store id names a stored passage with exactly their text."""
    verified = {}
    for i, (text, store_id) in enumerate(zip(texts, store_ids, strict=True)):
        if isinstance(text, str) and text and stored_text(store, store_id) == text:
            verified[i] = store_id
    return verified
