"""Nonsense is refused at the library boundary, naming the parameter, before anything is written; passage
identity does not depend on how a path is spelled, and re-indexing a file replaces its passages."""

from __future__ import annotations

import os

import pytest
from support.models import count_tokens
from support.store import PASSAGES, bow_embedder

from sac_rag.corpus import index_documents, read_documents, split_passages
from sac_rag.pipeline import SACRAG
from sac_rag.store import MemoryStore, StoreError, StoreMismatch


@pytest.fixture
def store(tmp_path, sac):
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as s:
        s.add(PASSAGES[:2], progress=False)
        yield s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": -1}, "batch_size must be a positive integer, got -1"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"commit_every": -1}, "commit_every must be a positive integer, got -1"),
        ({"commit_every": 0}, "commit_every must be a positive integer, got 0"),
    ],
)
def test_bad_write_parameters_are_named_and_write_nothing(store, kwargs, message):
    generation = store.stats()["generation"]
    for write in (store.add, store.upsert):
        with pytest.raises(ValueError, match=message):
            write(PASSAGES[2:], ids=[7, 8, 9], progress=False, **kwargs)
    assert len(store) == 2 and store.stats()["generation"] == generation and store.verify().ok


def test_every_passage_has_its_memory_whatever_the_group_sizes(store):
    store.add(PASSAGES[2:], batch_size=1, commit_every=1, progress=False)
    assert len(store) == len(PASSAGES) and store.verify().ok
    assert all(m.n_anchors > 0 for m in store.memories(store.ids()))


def test_bad_store_and_answer_parameters(tmp_path, sac, store):
    with pytest.raises(ValueError, match="memory dtype 'int4' is not supported"):
        MemoryStore.create(tmp_path / "a", sac, bow_embedder, memory_dtype="int4")
    with pytest.raises(ValueError, match="max_passage_tokens must be a positive integer, got 0"):
        MemoryStore.create(tmp_path / "b", sac, bow_embedder, max_passage_tokens=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"file is a file, not a directory"):
        MemoryStore.create(tmp_path / "file" / "store", sac, bow_embedder)
    with pytest.raises(StoreMismatch, match="memory_dtype 'int8' given, but .* holds bfloat16 memories"):
        MemoryStore.open_or_create(store.path, sac, bow_embedder, memory_dtype="int8")
    with MemoryStore.open_or_create(store.path, sac, bow_embedder, memory_dtype="bf16") as same:
        assert len(same) == 2
    for bad in (-1, 0, 1.5):
        with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
            SACRAG(store, sac, max_new_tokens=bad)
        with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
            SACRAG(store, sac).query("Where is Paris?", max_new_tokens=bad)
        with pytest.raises(ValueError, match="k must be a positive integer"):
            SACRAG(store, sac).query("Where is Paris?", k=bad)
    with pytest.raises(ValueError, match="max_tokens must be an integer of at least 8, got 0"):
        split_passages("some text", 0)


def test_texts_and_metadata_that_would_not_round_trip_are_refused(store):
    cases = [
        (["bad \ud800 surrogate"], None, r"texts\[0\] is not valid Unicode"),
        (["fine"], [{1: "int key"}], r"metadata\[0\] does not survive JSON"),
        (["fine"], [{"t": (1, 2)}], r"metadata\[0\] does not survive JSON"),
        (["fine"], [{"x": float("nan")}], r"metadata\[0\] is not JSON-serialisable"),
    ]
    for texts, metadata, message in cases:
        with pytest.raises(ValueError, match=message):
            store.add(texts, metadata, progress=False)
    with pytest.raises(ValueError, match="the query is not valid Unicode"):
        store.search("bad \udc80")
    assert len(store) == 2


@pytest.mark.parametrize("word", ["https://example.com/" + "abcdefghij" * 300, "\x00" * 900, "é" * 700])
def test_long_unbroken_tokens_are_cut_to_the_passage_size(word):
    text = f"A sentence before. {word} and words after it."
    passages = split_passages(text, 40, count_tokens)
    assert max(count_tokens(p) for p in passages) <= 40
    assert "".join(passages).replace(" ", "") == text.replace(" ", "")


def test_path_spelling_does_not_change_identity_and_reindexing_replaces(tmp_path, sac, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    long_doc = " ".join(f"Sentence number {i} is about topic {i % 5}." for i in range(30))
    (docs / "a.txt").write_text(long_doc)
    monkeypatch.chdir(tmp_path)
    with MemoryStore.create(tmp_path / "s", sac, bow_embedder) as store:
        first = index_documents(store, read_documents(["docs/a.txt"]), 40, count_tokens, progress=False)
        n = len(store)
        assert first.passages == n > 3
        for spelling in (str(docs / "a.txt"), "./docs/../docs/a.txt", "docs"):
            again = index_documents(store, read_documents([spelling]), 40, count_tokens, progress=False)
            assert len(store) == n and again.removed == 0
        os.symlink(docs / "a.txt", tmp_path / "link.txt")
        index_documents(store, read_documents(["link.txt"]), 40, count_tokens, progress=False)
        assert len(store) == n
        (docs / "a.txt").write_text("Sentence number 0 is about topic 0. A short new ending.")
        shrunk = index_documents(store, read_documents(["docs/a.txt"]), 40, count_tokens, progress=False)
        assert shrunk.removed == n - shrunk.passages and len(store) == shrunk.passages
        assert all("topic 3" not in h.text for h in store.search("Sentence number 13 topic 3", k=5))
        assert store.verify().ok
