"""A passage is tokenised once on its way into a store: split, length check and compression share its ids."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
import torch
from support.store import PASSAGES, bow_embedder, numbered_text
from support.tokens import count_tokenised

from sac_rag.corpus import Document, index_documents, split_passages, split_with_ids, to_passages
from sac_rag.store import MemoryStore
from sac_rag.text.prompt import encode

DOCUMENTS = [
    Document(" ".join(PASSAGES) + "\n\n" + " ".join(numbered_text(i) for i in range(4)), "first"),
    Document(" ".join(numbered_text(i) for i in range(4, 10)), "second", {"title": "Second"}),
]


def test_passages_carry_the_ids_of_their_own_text(sac):
    tokenize = functools.partial(encode, sac.tokenizer)
    split = split_with_ids(DOCUMENTS[0].text, 24, tokenize)
    assert [p for p, _ in split] == split_passages(DOCUMENTS[0].text, 24, sac.count_tokens)  # the same cuts
    assert len(split) >= 3 and all(list(ids) == tokenize(p) and len(ids) <= 24 for p, ids in split)
    passages = to_passages(DOCUMENTS, 24, tokenize=tokenize)
    assert [list(ids) for ids in passages.token_ids] == [tokenize(t) for t in passages.texts]
    assert [list(ids) for ids in passages.head(2).token_ids] == [tokenize(t) for t in passages.texts[:2]]
    assert to_passages(DOCUMENTS, 24, sac.count_tokens).token_ids is None
    with pytest.raises(ValueError, match="not both"):
        to_passages(DOCUMENTS, 24, sac.count_tokens, tokenize=tokenize)


def test_indexing_tokenises_each_passage_once(sac, tmp_path, monkeypatch):
    store = MemoryStore.create(tmp_path / "store", sac, bow_embedder, memory_dtype="float32")
    tokenised = count_tokenised(monkeypatch, lambda tok: tok is sac.tokenizer)
    tokenize = functools.partial(encode, sac.tokenizer)
    result = index_documents(store, DOCUMENTS, 24, tokenize=tokenize, batch_size=3, commit_every=4, progress=False)
    monkeypatch.undo()
    rows = store.get(store.ids())
    texts = [r.text for r in rows]
    assert result.passages == len(texts) >= 6
    assert len(set(texts)) < len(texts)  # a text two passages share is compressed once, from either's ids
    assert {t: tokenised[t] for t in texts} == Counter(texts)  # each passage split, checked and compressed: once
    # the carried ids make the memories the text makes
    for memory, own in zip(store.memories([r.id for r in rows]), sac.compress(texts)):
        assert (memory.length, memory.offset) == (own.length, own.offset)
        torch.testing.assert_close(memory.keys, own.keys, atol=1e-5, rtol=0)
    store.close()


def test_plain_texts_are_tokenised_once_inside_the_store(sac, tmp_path, monkeypatch):
    texts = list(dict.fromkeys(to_passages(DOCUMENTS, 24, sac.count_tokens).texts))
    tokenised = count_tokenised(monkeypatch, lambda tok: tok is sac.tokenizer)
    with MemoryStore.create(tmp_path / "store", sac, bow_embedder) as store:
        store.add(texts, batch_size=2, commit_every=3, progress=False)
        assert {t: tokenised[t] for t in texts} == dict.fromkeys(texts, 1)  # checked and compressed: once
        store.upsert(texts[:2] + ["a new passage."], ids=[0, 1, 99], progress=False)
        assert [tokenised[t] for t in texts[:3]] == [2, 2, 1] and tokenised["a new passage."] == 1


def test_given_token_ids_are_checked_against_the_texts_and_the_vocabulary(sac, tmp_path):
    with MemoryStore.create(tmp_path / "store", sac, bow_embedder) as store:
        for token_ids, message in [
            ([[5, 6]], "1 token id sequences for 2 texts"),
            ([[5, 6], []], r"token_ids\[1\] is empty"),
            ([[5, 6], "ab"], r"token_ids\[1\] is str"),
            ([[5, 6], [1.5]], r"token_ids\[1\] must be integer token ids"),
            ([[5, 6], [len(sac.tokenizer)]], r"token_ids\[1\] holds ids outside the tokenizer's"),
        ]:
            with pytest.raises((ValueError, TypeError), match=message):
                store.add(["one passage.", "another."], token_ids=token_ids, progress=False)
        assert len(store) == 0
        with pytest.raises(ValueError, match="1 token id sequences for 2 texts"):
            sac.compress(["one passage.", "another."], token_ids=[[5, 6]])
