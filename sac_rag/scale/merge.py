"""Merging finished work units into a store part: shards linked in, memories and passages recorded.

Each unit is merged in one manifest transaction together with every passage of the run that uses one
of its texts (the store's group commit, :meth:`MemoryStore.record_group`), so the store is consistent after
each unit: a driver that dies mid-run loses nothing committed, and a re-run finds those texts already
compressed. Memories no passage uses are dropped once, at the end (a later unit's passages may still use
them), and the vector index is rebuilt then.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sac_rag.store import MemoryStore, StoreMismatch
from sac_rag.store.digest import content_hash
from sac_rag.store.layout import MANIFEST, SHARDS
from sac_rag.store.manifest import Manifest
from sac_rag.store.validate import Record

_SAME = ("fingerprint", "embedder", "dim", "memory_dtype")


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across file systems); an existing target is kept."""
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def passage_rows(records: Iterable[Record], embeddings: dict[str, np.ndarray]) -> list[tuple]:
    """Passage rows (``(id, content hash, text, metadata, embedding)``) with the embedding of their text."""
    rows = []
    for r in records:
        h = content_hash(r.text)
        rows.append((r.id, h, r.text, r.metadata, embeddings[h]))
    return rows


class PartMerger:
    """Merges units into one :class:`MemoryStore` that the caller holds the write lock of."""

    def __init__(self, store: MemoryStore, passages: list[Record]) -> None:
        self.store = store
        self.by_hash: dict[str, list[Record]] = {}
        for rec in passages:
            self.by_hash.setdefault(content_hash(rec.text), []).append(rec)
        self.merged: set[str] = set()
        # embeddings of texts the store already holds, read before this run replaces any passage
        known = store.manifest.memory_rows(list(self.by_hash))
        self.known = {h: store.manifest.embedding_of_hash(h) for h in known}

    def merge_unit(self, unit: Path) -> None:
        """Record one unit's shard, memories and the run's passages of its texts, in one transaction."""
        manifest = Manifest(unit / MANIFEST)
        try:
            for key in _SAME:
                if manifest.meta(key) != self.store.manifest.meta(key):
                    raise StoreMismatch(f"{unit}: {key} {manifest.meta(key)!r} differs from the store's")
            memories = manifest.memory_rows()
            shards = manifest.shard_rows()
            ids, vectors = manifest.embeddings(manifest.meta("dim"))
            rows = manifest.passages(ids.tolist())
            embeddings = {rows[int(i)].hash: v for i, v in zip(ids, vectors)}
        finally:
            manifest.close()
        for name in shards:
            _link(unit / SHARDS / name, self.store.path / SHARDS / name)
        recorded = [
            (name, sha, size, [r for r in memories.values() if r.shard == name]) for name, (sha, size) in shards.items()
        ]
        passages = passage_rows((r for h in embeddings for r in self.by_hash.get(h, [])), embeddings)
        self.store.record_group(recorded, passages, drop_unreferenced=False)  # a unit merged twice is merged once
        self.merged.update(embeddings)

    def finish(self) -> int:
        """Write the passages whose texts were already compressed, drop orphans, rebuild the index."""
        store = self.store
        rest = [r for h, recs in self.by_hash.items() if h not in self.merged for r in recs]
        missing = {content_hash(r.text) for r in rest} - self.known.keys()
        if missing:
            raise StoreMismatch(f"{store.path}: no unit compressed {len(missing)} texts of this run")
        generation = store.record_group([], passage_rows(rest, self.known))
        store.rebuild_index(generation)
        return len(rest)
