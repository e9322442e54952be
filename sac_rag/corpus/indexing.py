"""Indexing documents so that a store mirrors them: re-indexing a file replaces all of its passages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.corpus.documents import Document
from sac_rag.corpus.passages import SOURCE_FILE, to_passages

if TYPE_CHECKING:
    from sac_rag.store import MemoryStore


@dataclass
class IndexResult:
    """What :func:`index_documents` did: documents read, their passages, and stale passages removed."""

    documents: int
    passages: int
    removed: int


def index_documents(
    store: MemoryStore,
    documents: Sequence[Document],
    max_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    *,
    batch_size: int = COMPRESS_BATCH_SIZE,
    commit_every: int | None = None,
    progress: bool = True,
    tokenize: Callable[[str], Sequence[int]] | None = None,
) -> IndexResult:
    """Split ``documents`` into passages and upsert them; then delete the passages their files no longer have.

    Passage ids come from the document's source (a file's absolute path) and the passage number, so
    indexing a file again updates it in place, however its path is spelled; passages left over from
    a longer earlier version of a file are removed once the new ones are stored.

    ``tokenize`` (instead of ``count_tokens``): a string's token ids by the store model's tokenizer, no special
    tokens (``functools.partial(sac_rag.text.prompt.encode, model.tokenizer)``, as ``sac-rag index`` passes):
    each passage is then tokenised once, while splitting, and the store checks and compresses those ids.
    """
    passages = to_passages(documents, max_tokens, count_tokens, progress=progress, tokenize=tokenize)
    if not passages:
        raise ValueError("the documents hold no text")
    store.upsert(
        passages.texts, passages.metadata, passages.ids, batch_size=batch_size, commit_every=commit_every,
        progress=progress, token_ids=passages.token_ids,
    )  # fmt: skip
    files = sorted({doc.file for doc in documents if doc.file is not None})
    stale = sorted(set(store.ids_with_metadata(SOURCE_FILE, files)) - set(passages.ids)) if files else []
    if stale:
        store.delete(stale)
    return IndexResult(len(documents), len(passages), len(stale))
