"""Opening a store (issue 20, item 3): one ``open_store`` for both kinds, one ``PassageStore`` protocol they
satisfy, errors naming the path; ``sac-rag ask`` opens its store once and checks its question at the entry."""

from __future__ import annotations

import ast
import json

import pytest
from support import ROOT
from support.cli import sac_rag
from support.store import PASSAGES, bow_embedder

from sac_rag import scale
from sac_rag.model import SACModel
from sac_rag.pipeline import SACRAG
from sac_rag.scale import ShardedStore, open_store
from sac_rag.scale.plan import part_of
from sac_rag.store import MemoryStore, PassageStore, StoreError, StoreExists, StoreMismatch, store_kind
from sac_rag.store.validate import compressor_mismatch
from sac_rag.testing import tiny_model


def test_only_the_store_layer_reads_which_kind_a_store_is():
    """Callers open stores by ``open_store`` (or a class's own ``open``): none reads a store's file names or
    asks ``is_sharded`` to choose between the kinds."""
    offenders = []
    for folder in ("cli", "pipeline", "bridge"):
        for file in (ROOT / "sac_rag" / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "sac_rag.store.layout":
                    offenders.append(f"{file.relative_to(ROOT)}:{node.lineno} imports the store's file names")
                if isinstance(node, ast.Attribute) and node.attr == "is_sharded":
                    offenders.append(f"{file.relative_to(ROOT)}:{node.lineno} .is_sharded")
    assert offenders == []
    assert not (ROOT / "sac_rag" / "cli" / "stores.py").exists()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, sac):
    """A single store and a sharded one (2 parts) holding the same passages under the same ids."""
    root = tmp_path_factory.mktemp("stores")
    with MemoryStore.create(root / "single", sac, bow_embedder) as single:
        single.add(PASSAGES, ids=list(range(len(PASSAGES))), progress=False)
    with ShardedStore.create(root / "sharded", sac, bow_embedder, parts=2) as sharded:
        for n, part in enumerate(sharded.parts):
            mine = [i for i in range(len(PASSAGES)) if part_of(i, 2) == n]
            part.add([PASSAGES[i] for i in mine], ids=mine, progress=False)
    return root / "single", root / "sharded"


def test_open_store_opens_either_kind_as_a_passage_store(stores, sac):
    single, sharded = stores
    assert (store_kind(single), store_kind(sharded)) == ("single", "sharded")
    for path, cls in ((single, MemoryStore), (sharded, ShardedStore)):
        with open_store(path, sac, bow_embedder) as store:
            assert type(store) is cls and isinstance(store, PassageStore)
            assert store.path == path and len(store) == len(PASSAGES) and store.ids() == list(range(len(PASSAGES)))
            assert store.fingerprint == sac.fingerprint and store.model is sac
            hit = store.search("capital of France", 1)[0]
            assert (hit.id, hit.text) == (0, PASSAGES[0]) and store.get([1])[0].text == PASSAGES[1]
            assert store.memories([2])[0].n_anchors > 0
            assert store.stats()["passages"] == len(PASSAGES) and store.verify().ok


def test_a_path_with_neither_kind_is_named(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not a store")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    cases = {
        tmp_path / "missing": "create one with `sac-rag index",
        plain: "it is a file, and a store is a directory",
        other: "it holds neither manifest.sqlite (a store) nor sharded.json (a sharded store)",
    }
    for path, why in cases.items():
        assert store_kind(path) is None
        with pytest.raises(FileNotFoundError) as error:
            open_store(path)
        assert str(error.value).startswith(f"no sac_rag store at {path}") and why in str(error.value)
        with pytest.raises(FileNotFoundError, match=f"no sac_rag store at {path}"):
            ShardedStore.open(path)


def test_each_class_names_the_other_kind_and_open_store(stores, sac, tmp_path):
    single, sharded = stores
    with pytest.raises(StoreError, match="is a sharded store, not a single one: open it with sac_rag.scale.open_store"):
        MemoryStore.open(sharded)
    with pytest.raises(StoreError, match="is a single store, not a sharded one: open it with sac_rag.scale.open_store"):
        ShardedStore.open(single)
    with pytest.raises(StoreExists, match="it is a sharded store; add passages to it with `sac-rag index"):
        MemoryStore.open_or_create(sharded, sac, bow_embedder)
    assert store_kind(sharded) == "sharded"  # untouched


def test_sacrag_answers_from_either_kind_alike(stores, sac):
    answers = []
    for path in stores:
        with open_store(path, embedder=bow_embedder) as store:  # opened without the model: SACRAG checks it
            result = SACRAG(store, sac, max_new_tokens=3).query("Where was Alan Turing born?", k=2)
            answers.append((result.answer, [h.id for h in result.sources]))
    assert answers[0] == answers[1]


def test_a_model_of_the_other_memory_kind_is_named_with_the_fix(stores, sac):
    compact = tiny_model(memory_kind="compact")
    why = compressor_mismatch(compact, sac.fingerprint)
    assert "the store holds sac memories, load the model with memory_kind='sac' (--memory-kind)" in why
    assert compressor_mismatch(sac, sac.fingerprint) is None
    with open_store(stores[1]) as store, pytest.raises(ValueError, match=f"{stores[1]}: .*memory_kind='sac'"):
        SACRAG(store, compact)


def test_open_or_create_takes_the_passages_it_is_asked_for(tmp_path, sac):
    default = MemoryStore.default_max_passage_tokens(sac)
    with MemoryStore.open_or_create(tmp_path / "a", sac, bow_embedder, max_passage_tokens=8) as store:
        assert store.created and store.max_passage_tokens == default  # at least the default
    with MemoryStore.open_or_create(tmp_path / "b", sac, bow_embedder, max_passage_tokens=default + 5) as store:
        assert store.created and store.max_passage_tokens == default + 5
    with MemoryStore.open_or_create(tmp_path / "a", sac, bow_embedder, max_passage_tokens=default) as store:
        assert not store.created  # opened: the store says so
    with pytest.raises(StoreMismatch, match=f"max_passage_tokens {default + 1} given, but .* takes up to {default}"):
        MemoryStore.open_or_create(tmp_path / "a", sac, bow_embedder, max_passage_tokens=default + 1)


# ----------------------------------------------------------------- the command line
def test_ask_opens_the_store_once_and_checks_the_question_at_the_entry(tmp_path, ckpt, capsys, monkeypatch):
    doc = tmp_path / "a.txt"
    doc.write_text("Alan Turing was born in London. Paris is the capital of France.")
    store = tmp_path / "s"
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--no-progress") == 0
    capsys.readouterr()

    opened = []
    real_open = scale.open_store

    def counting(*args, **kwargs):
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(scale, "open_store", counting)
    args = ("ask", "Where was Turing born?", "--store", store, "--model", ckpt, "--max-new-tokens", "2", "--json")
    assert sac_rag(*args) == 0
    assert len(opened) == 1 and json.loads(capsys.readouterr().out)["sources"]

    def forbidden(*args, **kwargs):
        raise AssertionError("opened before the question was checked")

    monkeypatch.setattr(scale, "open_store", forbidden)
    monkeypatch.setattr(SACModel, "load", forbidden)
    for blank in ("", "   "):
        with pytest.raises(SystemExit) as usage:
            sac_rag("ask", blank, "--store", store, "--model", ckpt)
        assert usage.value.code == 2
        assert "argument question: the query must be a non-empty string" in capsys.readouterr().err


def test_ask_fails_on_a_bad_store_before_the_model_loads(tmp_path, ckpt, capsys, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the model loaded before the store opened")

    monkeypatch.setattr(SACModel, "load", forbidden)
    assert sac_rag("ask", "q?", "--store", tmp_path / "missing", "--model", ckpt) == 1
    assert f"no sac_rag store at {tmp_path / 'missing'}" in capsys.readouterr().err


def test_index_into_a_sharded_store_or_past_a_stores_limit_is_refused(stores, tmp_path, ckpt, capsys):
    doc = tmp_path / "a.txt"
    doc.write_text("Alan Turing was born in London.")
    assert sac_rag("index", doc, "--store", stores[1], "--model", ckpt, "--no-progress") == 1
    assert "it is a sharded store; add passages to it with `sac-rag index" in capsys.readouterr().err
    store = tmp_path / "s"
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--no-progress") == 0
    capsys.readouterr()
    limit = MemoryStore.open(store).max_passage_tokens
    assert sac_rag("index", doc, "--store", store, "--model", ckpt, "--passage-tokens", limit + 1) == 1
    assert f"max_passage_tokens {limit + 1} given, but {store} takes up to {limit}" in capsys.readouterr().err
