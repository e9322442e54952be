"""Documents -> passages ready for a store: text, metadata (source, passage number), a stable id and, when split
by the model's tokenizer, the token ids (so that the store neither counts nor compresses from the text again)."""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from sac_rag.corpus.documents import Document
from sac_rag.corpus.split import split_passages, split_with_ids
from sac_rag.store.validate import token_array

DEFAULT_PASSAGE_TOKENS = 160  # passage size of `sac-rag index` and the scale pipeline
SOURCE_FILE = "source_file"  # metadata key: the absolute path of the file a passage was read from


def passage_id(source: str, n: int) -> int:
    """A stable id for the n-th passage of a source, so re-indexing the same files updates in place."""
    return int.from_bytes(hashlib.sha256(f"{source}#{n}".encode()).digest()[:8], "big") >> 1


@dataclass
class Passages:
    """Parallel lists, as ``MemoryStore.add`` / ``upsert`` take them. ``token_ids``, each passage's ids by the
    tokenizer that split it, is None unless the passages were split by a ``tokenize`` (:func:`to_passages`)."""

    texts: list[str] = field(default_factory=list)
    metadata: list[dict] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    token_ids: list[array] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Passages:
        token_ids = None if self.token_ids is None else self.token_ids[:n]
        return Passages(self.texts[:n], self.metadata[:n], self.ids[:n], token_ids)


def to_passages(
    documents: Sequence[Document],
    max_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    *,
    progress: bool = False,
    tokenize: Callable[[str], Sequence[int]] | None = None,
) -> Passages:
    """Split every document; each passage carries its document's metadata plus ``source`` and ``passage``
    (and ``source_file``, the file's absolute path, for documents read from files). ``progress`` shows a
    bar of the characters split (on stderr).

    ``tokenize`` (instead of ``count_tokens``) gives a string's token ids by the store model's tokenizer, no
    special tokens (``functools.partial(sac_rag.text.prompt.encode, model.tokenizer)``): the passages are
    measured by it and keep the ids (:attr:`Passages.token_ids`), which the store then uses as they are.
    """
    if tokenize is not None and count_tokens is not None:
        raise ValueError("pass count_tokens or tokenize, not both (tokenize counts too)")
    out = Passages(token_ids=None if tokenize is None else [])
    total = sum(len(doc.text) for doc in documents)
    with tqdm(total=total, desc="splitting", unit="char", unit_scale=True, disable=not progress) as bar:
        for doc in documents:
            if tokenize is None:
                split = [(p, None) for p in split_passages(doc.text, max_tokens, count_tokens, bar.update)]
            else:
                split = split_with_ids(doc.text, max_tokens, tokenize, bar.update)
            for n, (text, ids) in enumerate(split):
                out.texts.append(text)
                file = {SOURCE_FILE: doc.file} if doc.file is not None else {}
                out.metadata.append({"source": doc.source, "passage": n, **doc.metadata, **file})
                out.ids.append(passage_id(doc.source, n))
                if out.token_ids is not None:
                    out.token_ids.append(token_array(ids, f"the ids of passage {n} of {doc.source}"))
    return out
