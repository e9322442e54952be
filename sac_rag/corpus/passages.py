"""Documents -> passages ready for a store: text, metadata (source, passage number) and a stable id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from sac_rag.corpus.documents import Document
from sac_rag.corpus.split import split_passages

DEFAULT_PASSAGE_TOKENS = 160  # passage size of `sac-rag index` and the scale pipeline
SOURCE_FILE = "source_file"  # metadata key: the absolute path of the file a passage was read from


def passage_id(source: str, n: int) -> int:
    """A stable id for the n-th passage of a source, so re-indexing the same files updates in place."""
    return int.from_bytes(hashlib.sha256(f"{source}#{n}".encode()).digest()[:8], "big") >> 1


@dataclass
class Passages:
    """Parallel lists, as ``MemoryStore.add`` / ``upsert`` take them."""

    texts: list[str] = field(default_factory=list)
    metadata: list[dict] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Passages:
        return Passages(self.texts[:n], self.metadata[:n], self.ids[:n])


def to_passages(
    documents: Sequence[Document],
    max_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    *,
    progress: bool = False,
) -> Passages:
    """Split every document; each passage carries its document's metadata plus ``source`` and ``passage``
    (and ``source_file``, the file's absolute path, for documents read from files). ``progress`` shows a
    bar of the characters split (on stderr)."""
    out = Passages()
    total = sum(len(doc.text) for doc in documents)
    with tqdm(total=total, desc="splitting", unit="char", unit_scale=True, disable=not progress) as bar:
        for doc in documents:
            for n, text in enumerate(split_passages(doc.text, max_tokens, count_tokens, bar.update)):
                out.texts.append(text)
                file = {SOURCE_FILE: doc.file} if doc.file is not None else {}
                out.metadata.append({"source": doc.source, "passage": n, **doc.metadata, **file})
                out.ids.append(passage_id(doc.source, n))
    return out
