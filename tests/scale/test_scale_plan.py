"""Planning a Ray run (no Ray needed): parts, deduplication, content-addressed units, corpus inputs."""

from __future__ import annotations

import pytest

from sac_rag.corpus import Passages
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
