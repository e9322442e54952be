"""Merging finished units into a store part (no Ray needed): through the store's group commit, a unit merged twice
merged once, unreferenced memories kept until the run's last group."""

from __future__ import annotations

import re

from support import ROOT
from support.store import bow_embedder, numbered_text

from sac_rag.scale.merge import PartMerger
from sac_rag.store import MemoryStore
from sac_rag.store.digest import content_hash
from sac_rag.store.validate import records


def test_units_merge_once_and_old_memories_live_until_the_run_ends(sac, tmp_path):
    texts = [numbered_text(i) for i in range(6)]
    unit = tmp_path / "unit"  # what a worker writes: a part store of the run's new texts (0 to 3)
    with MemoryStore.create(unit, sac, bow_embedder, "float32") as part:
        part.add(texts[:4], ids=[0, 1, 2, 3], progress=False)
    with MemoryStore.create(tmp_path / "store", sac, bow_embedder, "float32") as store:
        store.add([texts[4], texts[5]], ids=[0, 5], progress=False)
        run = records(texts, None, range(6))  # id 0 gets a new text, id 4 the text id 0 held: no unit has it
        with store.writing():
            merger = PartMerger(store, run)
            merger.merge_unit(unit)
            assert content_hash(texts[4]) in store.manifest.memory_rows()  # no passage uses it now; finish() will
            merger.merge_unit(unit)  # a unit re-run after a lost report is merged again: once in the store
            assert merger.finish() == 2
        assert [r.text for r in store.get(store.ids())] == texts
        stats = store.stats()
        assert (stats["passages"], stats["memories"], stats["shards"]) == (6, 6, 2)
        assert store.verify().ok and store.memories([4])[0].length > 0
        assert [h.id for h in store.search(texts[4], k=1)] == [4]


def test_scale_writes_manifests_only_through_the_stores_group_commit():
    writes = re.compile(r"\.transaction\(|Manifest\.(put_passages|insert_shard|bump_generation|drop_unreferenced)")
    found = [p.name for p in (ROOT / "sac_rag" / "scale").glob("*.py") if writes.search(p.read_text())]
    assert found == [] and "record_group" in (ROOT / "sac_rag" / "scale" / "merge.py").read_text()
