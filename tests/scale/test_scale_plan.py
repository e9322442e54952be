"""Planning a Ray run (no Ray needed): parts, deduplication, content-addressed units, corpus inputs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from support.store import PASSAGES, bow_embedder, numbered_text
from support.tokens import count_tokenised

from sac_rag.corpus import Passages
from sac_rag.scale import UnitWriter
from sac_rag.scale.plan import make_plan, part_of
from sac_rag.scale.ray_index import corpus_records
from sac_rag.store.digest import content_hash
from sac_rag.store.validate import records


def plan_of(texts, known=None, parts=2, unit_size=2, salt="s"):
    batch = records(texts, None, list(range(len(texts))))
    return make_plan(batch, known or [set() for _ in range(parts)], unit_size, salt)


def test_parts_units_and_deduplication():
    texts = ["a", "b", "c", "a", "a", "e", "b"]  # ids 0..6: part 0 gets "a" twice, both parts get "a" and "b"
    plan = plan_of(texts)
    assert [[r.id for r in part] for part in plan.passages] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [(u.part, u.texts) for u in plan.units] == [(0, ["a", "c"]), (0, ["b"]), (1, ["b", "a"]), (1, ["e"])]
    assert plan.texts_to_compress == 6  # a text once per part
    assert all(part_of(i, 2) == u.part for u in plan.units for i in u.ids)


def test_known_texts_are_not_sent_and_names_are_content_addressed():
    texts = ["a", "b", "c", "d"]
    first = plan_of(texts, parts=1)
    again = plan_of(texts, parts=1)
    assert [u.name for u in first.units] == [u.name for u in again.units]
    assert {u.name for u in plan_of(texts, parts=1, salt="other").units}.isdisjoint(u.name for u in first.units)
    known = plan_of(texts, known=[{content_hash("a"), content_hash("b")}], parts=1)
    assert [u.texts for u in known.units] == [["c", "d"]] and len(known.passages[0]) == 4
    with pytest.raises(ValueError, match="unit_size"):
        plan_of(texts, unit_size=0)


def test_corpus_inputs(tmp_path):
    def no_model():
        raise AssertionError("texts need no tokenizer")

    long_text = "x" * 5000  # longer than a file name may be: a text, not a path
    got = corpus_records(["first passage", long_text], no_model, 160, [{"a": 1}, {}], [7, 8])
    assert [(r.id, r.text[:5], r.metadata) for r in got] == [(7, "first", {"a": 1}), (8, "xxxxx", {})]
    got = corpus_records(Passages(["p"], [{"s": 1}], [3]), no_model, 160)
    assert [(r.id, r.text) for r in got] == [(3, "p")]
    with pytest.raises(FileNotFoundError):  # Path objects are always files: a missing one is an error
        corpus_records([tmp_path / "missing.txt"], no_model, 160)


def test_passages_the_driver_splits_are_tokenised_once_on_their_way_through_a_worker(sac, tmp_path, monkeypatch):
    from sac_rag.scale.recipe import Recipe
    from sac_rag.store import MemoryStore

    doc = tmp_path / "doc.txt"
    doc.write_text(" ".join(PASSAGES) + "\n\n" + " ".join(numbered_text(i) for i in range(6)))
    tokenised = count_tokenised(monkeypatch, lambda tok: tok is sac.tokenizer)
    plan = make_plan(corpus_records([doc], lambda: sac, 24), [set()], 3, "s")
    writer = UnitWriter(Recipe(lambda: sac, bow_embedder), str(tmp_path / "staging"), sac.fingerprint, "float32", 512)
    for unit in plan.units:  # each unit as Ray's numpy batch of one row hands it over
        row = unit.row()
        batch = {key: np.empty(1, dtype=object) for key in row}
        for key, value in row.items():
            batch[key][0] = value
        writer(batch)
    monkeypatch.undo()
    texts = [t for unit in plan.units for t in unit.texts]
    assert len(plan.units) >= 2 and all(all(unit.token_ids) for unit in plan.units)
    assert {t: tokenised[t] for t in texts} == Counter(texts)  # split, checked and compressed: once
    for unit in plan.units:  # the carried ids make the memories the texts make
        with MemoryStore.open(tmp_path / "staging" / unit.name, sac, bow_embedder) as store:
            for memory, own in zip(store.memories(unit.ids), sac.compress(unit.texts), strict=True):
                torch.testing.assert_close(memory.keys, own.keys, atol=1e-5, rtol=0)
