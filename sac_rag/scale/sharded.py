"""ShardedStore: several MemoryStore parts under one directory, searched and read as one store.

Layout::

    <root>/sharded.json      the layout: format, part directories, and the IVF index's state
    <root>/part-0000/ ...    one complete MemoryStore per part; passage id ``i`` lives in part ``i % parts``
    <root>/ivf/              optional IVF index over every part (index.faiss + lists.ivfdata), memory-mapped

A search embeds the query once, then asks the IVF index when it reflects every part's current
generation, else each part's exact index, and merges the best ``k``. Reads route ids to their part.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from sac_rag.embedding import Embedder
from sac_rag.io import atomic_write_dir, atomic_write_text
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.scale import ivf
from sac_rag.scale.plan import part_of
from sac_rag.store import Hit, MemoryStore, PassageRow, RepairReport, StoreError, VerifyReport, store_kind
from sac_rag.store.layout import MANIFEST, SHARDED, not_a_store
from sac_rag.store.manifest import Manifest
from sac_rag.store.validate import check_ids, check_k, check_query

LAYOUT = SHARDED  # sharded.json: its name lives with the store's other file names (sac_rag/store/layout.py)
FORMAT = "sac_rag.sharded/1"
IVF_DIR = "ivf"


def part_dir(n: int) -> str:
    return f"part-{n:04d}"


def _add_store_part(trained: Path, part: Path, out: Path) -> Path:
    """Add one part store's embeddings to a copy of the trained index (wherever the part is readable)."""
    manifest = Manifest(part / MANIFEST)
    try:
        ids, vectors = manifest.embeddings(manifest.meta("dim"))
    finally:
        manifest.close()
    return ivf.add_part(trained, ids, vectors, out)


def _map(fn: Callable, jobs: list[tuple], parallel: bool | None) -> list:
    """``fn(*job)`` for every job: as Ray tasks if ``parallel`` (``None``: if connected to Ray), else here."""
    if parallel is None:
        parallel = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if not parallel:
        return [fn(*job) for job in jobs]
    import ray

    remote = ray.remote(fn)
    return ray.get([remote.remote(*job) for job in jobs])


class ShardedStore:
    """Parts of one store, answered as one: a :class:`~sac_rag.store.PassageStore`, as a MemoryStore is."""

    def __init__(self, path: Path, parts: list[MemoryStore], layout: dict, nprobe: int = 16) -> None:
        self.path = path
        self.parts = parts
        self.layout = layout
        self.nprobe = nprobe
        self._ivf: ivf.IVFIndex | None = None

    # ------------------------------------------------------------------ create / open
    @staticmethod
    def is_sharded(path: str | Path) -> bool:
        return store_kind(path) == "sharded"

    @classmethod
    def create(
        cls,
        path: str | Path,
        model,
        embedder: Embedder | str | None = None,
        memory_dtype: torch.dtype | str | None = None,
        *,
        parts: int,
        max_passage_tokens: int | None = None,
    ) -> ShardedStore:
        """Create ``parts`` empty parts at ``path`` (which must not exist, or be an empty directory)."""
        path = Path(path)
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(f"{path} already exists and is not an empty directory: open it with ShardedStore.open")

        def fill(tmp: Path) -> None:
            for n in range(parts):
                MemoryStore.create(
                    tmp / part_dir(n), model, embedder, memory_dtype, max_passage_tokens=max_passage_tokens
                ).close()
            layout = {"format": FORMAT, "parts": [part_dir(n) for n in range(parts)], "ivf": None}
            atomic_write_text(tmp / LAYOUT, json.dumps(layout, indent=1))

        if path.exists():
            path.rmdir()
        atomic_write_dir(path, fill)
        return cls.open(path, model, embedder)

    @classmethod
    def open(
        cls, path: str | Path, model=None, embedder: Embedder | str | None = None, *, nprobe: int = 16
    ) -> ShardedStore:
        """Open every part (each refuses another compressor or embedder, as MemoryStore.open does)."""
        path = Path(path)
        kind = store_kind(path)
        if kind == "single":
            raise StoreError(f"{path} is a single store, not a sharded one: open it with sac_rag.scale.open_store")
        if kind is None:
            raise FileNotFoundError(not_a_store(path))
        layout = json.loads((path / LAYOUT).read_text(encoding="utf-8"))
        if layout.get("format") != FORMAT:
            raise StoreError(f"{path / LAYOUT}: format {layout.get('format')!r}, this sac_rag reads {FORMAT!r}")
        parts: list[MemoryStore] = []
        try:
            for name in layout["parts"]:
                parts.append(MemoryStore.open(path / name, model, embedder))
        except BaseException:
            for part in parts:
                part.close()
            raise
        return cls(path, parts, layout, nprobe)

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def __enter__(self) -> ShardedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def fingerprint(self) -> str:
        return self.parts[0].fingerprint

    @property
    def embedder(self) -> Embedder:
        return self.parts[0].embedder

    @property
    def model(self):
        """The compressor the parts were opened with (None if opened without one)."""
        return self.parts[0].model

    def ids(self) -> list[int]:
        return sorted(i for p in self.parts for i in p.ids())

    def _by_part(self, ids: list[int]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for i in ids:
            groups.setdefault(part_of(i, len(self.parts)), []).append(i)
        return groups

    # ------------------------------------------------------------------ writing
    def delete(self, ids: Sequence[int]) -> int:
        """Remove passages by id from their parts (all must exist, else nothing is removed)."""
        wanted = check_ids(ids)
        groups = self._by_part(wanted)
        missing = sorted(
            set(wanted) - {i for p, group in groups.items() for i in self.parts[p].manifest.existing(group)}
        )
        if missing:
            raise ValueError(f"ids not in the store: {missing[:10]} (nothing deleted)")
        return sum(self.parts[p].delete(group) for p, group in groups.items())

    def compact(self, *, progress: bool = False) -> dict:
        """Compact every part; the summed shard sizes before and after."""
        results = [part.compact(progress=progress) for part in self.parts]
        return {key: sum(r[key] for r in results) for key in results[0]}

    def repair(self, *, progress: bool = False) -> RepairReport:
        """Repair every part (see :meth:`MemoryStore.repair`); what was done, and the verification after."""
        reports = [part.repair(progress=progress) for part in self.parts]
        return RepairReport.combined(reports, self.verify(progress=progress))

    # ------------------------------------------------------------------ reading
    def _routed(self, ids: Sequence[int], read: Callable[[MemoryStore, list[int]], list]) -> list:
        """``read(part, its_ids)`` for each part holding some of ``ids``, reassembled in the order asked."""
        wanted = check_ids(ids)
        found = {}
        for p, group in self._by_part(wanted).items():
            found.update(zip(group, read(self.parts[p], group)))
        return [found[i] for i in wanted]

    def get(self, ids: Sequence[int]) -> list[PassageRow]:
        """Passage records (id, content hash, text, metadata) in the order asked."""
        return self._routed(ids, MemoryStore.get)

    def memories(self, ids: Sequence[int]) -> list[MemoryChunk]:
        """The memory chunks of passages, in the order asked, each read from its part's mapped shards."""
        return self._routed(ids, MemoryStore.memories)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` passages nearest to ``query`` over every part, best first."""
        check_query(query)
        check_k(k)
        vector = self.embedder.embed([query])[0]
        index = self.ivf_index()
        if index is not None:
            hits = index.search(vector, k)
        else:
            hits = [h for part in self.parts for h in part.search_vector(vector, k)]
            hits = sorted(hits, key=lambda h: (-h[1], h[0]))[:k]
        rows = {}
        for p, group in self._by_part([i for i, _ in hits]).items():
            rows.update(self.parts[p].manifest.passages(group))
        return [Hit(i, s, rows[i].text, rows[i].metadata) for i, s in hits if i in rows]

    # ------------------------------------------------------------------ the IVF index
    def _generations(self) -> list[int]:
        return [p.manifest.generation() for p in self.parts]

    def ivf_index(self) -> ivf.IVFIndex | None:
        """The IVF index if one was built and no part changed since; else ``None`` (exact search)."""
        state = self.layout.get("ivf")
        if not state or state["generations"] != self._generations():
            return None
        if self._ivf is None:
            self._ivf = ivf.IVFIndex.load(self.path / IVF_DIR / ivf.INDEX_FILE, self.nprobe)
        return self._ivf

    def build_ivf(
        self,
        nlist: int | None = None,
        pq_m: int | None = None,
        *,
        sample: int = 100_000,
        seed: int = 0,
        parallel: bool | None = None,
    ) -> dict:
        """Train an IVF (IVF-PQ with ``pq_m``) index on a sample, add each part, merge the lists on disk.

        With ``parallel`` (``None``: when this process is connected to a Ray cluster) the parts are added
        as Ray tasks, in parallel (the store must then be on a file system every node reads); else one
        after the other here.
        """
        total = len(self)
        nlist = nlist or max(1, min(int(4 * math.sqrt(total)), total))
        rng = np.random.default_rng(seed)
        work = self.path / ".ivf-build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            generations = self._generations()
            picks = []
            for part in self.parts:
                _, vectors = part.manifest.embeddings(part.dim)
                take = min(len(vectors), math.ceil(sample * len(vectors) / max(total, 1)))
                picks.append(vectors[rng.choice(len(vectors), take, replace=False)])
            trained = ivf.save_trained(ivf.train(np.concatenate(picks), nlist, pq_m), work / "trained.faiss")
            jobs = [(trained, part.path, work / f"{part_dir(n)}.faiss") for n, part in enumerate(self.parts)]
            files = _map(_add_store_part, jobs, parallel)
            atomic_write_dir(self.path / IVF_DIR, lambda tmp: ivf.merge_on_disk(trained, files, tmp))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.layout["ivf"] = {"generations": generations, "nlist": nlist, "pq_m": pq_m, "vectors": total}
        atomic_write_text(self.path / LAYOUT, json.dumps(self.layout, indent=1))
        self._ivf = None
        return self.layout["ivf"]

    # ------------------------------------------------------------------ inspection
    def stats(self) -> dict:
        """Summed counts and sizes, each part's own figures, and the IVF index's state."""
        per_part = [p.stats() for p in self.parts]
        summed = {
            key: sum(s[key] for s in per_part)
            for key in ("passages", "memories", "shards", "memory_bytes", "shard_bytes", "disk_bytes")
        }
        state = self.layout.get("ivf")
        ivf_state = None if not state else {**state, "fresh": state["generations"] == self._generations()}
        return {"path": str(self.path), "parts": len(self.parts), **summed, "ivf": ivf_state, "per_part": per_part}

    def verify(self, *, progress: bool = False) -> VerifyReport:
        """Every part's verification, plus a check that each passage sits in the part its id maps to."""
        report = VerifyReport(checked={})
        for n, part in enumerate(self.parts):
            one = part.verify(progress=progress)
            for key, value in one.checked.items():
                report.checked[key] = report.checked.get(key, 0) + value
            for kind, keys in one.damage.items():
                report.damage.setdefault(kind, []).extend(keys)
            report.problems += one.problems
            report.warnings += one.warnings
            stray = [i for i in part.ids() if part_of(i, len(self.parts)) != n]
            if stray:
                report.problems.append(f"{part.path}: holds ids of other parts: {stray[:10]}")
        return report
