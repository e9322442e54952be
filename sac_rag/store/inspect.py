"""Looking at a store without changing it: its figures (``stats``) and its integrity (``verify``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.index import VectorIndex
from sac_rag.store.layout import INDEX, SHARDS
from sac_rag.store.shards import sha256_file

if TYPE_CHECKING:
    from sac_rag.store.view import StoreView

# what a damaged manifest row of each kind is, for verify's messages
_ROW_PROBLEMS = {
    "meta": "store metadata {key!r} fails its checksum",
    "shard": "the row of shard {key} fails its checksum",
    "memory": "memory row {key} fails its checksum",
    "passage": "passage {key}: its text, metadata or content hash fails its checksum",
    "embedding": "passage {key}: its embedding fails its checksum",
    "no_memory": "passage {key} has no memory row",
    "no_shard": "memory {key} names a shard the manifest does not list",
}


@dataclass
class VerifyReport:
    """What :meth:`MemoryStore.verify` found.

    ``problems`` name each damaged file (and passage); ``warnings`` are harmless; ``damage`` lists what
    is damaged by kind (``meta``, ``shard``, ``memory``, ``passage``, ``embedding``, ``lost``,
    ``no_memory``, ``no_shard``, ``shard_file``, ``index``), which :meth:`MemoryStore.repair` redoes.
    """

    checked: dict
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damage: dict[str, list] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_bad(self) -> None:
        if self.problems:
            raise StoreCorrupted("; ".join(self.problems))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "problems": self.problems, "warnings": self.warnings}

    def _add(self, kind: str, key: object, problem: str) -> None:
        self.damage.setdefault(kind, []).append(key)
        self.problems.append(problem)


def store_stats(store: StoreView) -> dict:
    """Counts, sizes and the compression figures of the store."""
    manifest = store.manifest
    totals = manifest.totals()
    layers, heads, dim = manifest.meta("kv_shape")
    n = totals["passages"]
    full_kv = 2 * layers * heads * dim * 2 * totals["passage_tokens"]  # bf16 K and V of every token
    return {
        "path": str(store.path),
        "fingerprint": store.fingerprint,
        "model": manifest.meta("model"),
        "embedder": store.embedder_name,
        "memory_dtype": store.memory_dtype,
        "generation": manifest.generation(),
        **totals,
        "disk_bytes": store.disk_bytes(),
        "bytes_per_passage": totals["passage_memory_bytes"] / n if n else 0.0,
        "full_kv_bf16_bytes_per_passage": full_kv / n if n else 0.0,
        "tokens_per_passage": totals["passage_tokens"] / n if n else 0.0,
        "anchors_per_passage": totals["anchors"] / n if n else 0.0,
    }


def verify_store(store: StoreView, *, progress: bool = False) -> VerifyReport:
    """Check the manifest's structure and every row's digest, every shard's sha256 and memory CRC, and the
    index file's sha256 and contents against the manifest."""
    manifest = store.manifest
    report = VerifyReport(checked={"shards": 0, "memories": 0, "passages": manifest.count(), "manifest_rows": 0})
    for message in manifest.integrity_errors():
        report._add("structure", message, f"{manifest.path}: {message}")
    audit = manifest.audit(store.dim)
    report.checked["manifest_rows"] = manifest.row_count()
    for kind, keys in audit.items():
        for key in keys:
            if kind == "lost":
                report._add("lost", key, f"{manifest.path}: the {key[0]} row {key[1]} is missing")
            else:
                report._add(kind, key, f"{manifest.path}: {_ROW_PROBLEMS[kind].format(key=key)}")
    _verify_shards(store, report, progress)
    _verify_index(store, report, bad_embeddings=bool(audit["embedding"] or audit["passage"] or audit["lost"]))
    return report


def _verify_shards(store: StoreView, report: VerifyReport, progress: bool) -> None:
    manifest = store.manifest
    shards = manifest.shard_rows()
    rows = manifest.memory_rows(skip_damaged=True)
    failing: dict[str, list[str]] = {}
    for name, (sha, size) in tqdm(shards.items(), desc="verifying", unit="shard", disable=not progress):
        path = store.path / SHARDS / name
        report.checked["shards"] += 1
        if not path.is_file():
            reason = "missing"
        elif path.stat().st_size != size or sha256_file(path) != sha:
            reason = "checksum mismatch (corrupted shard)"
        else:
            continue
        failing[name] = []
        for row in rows.values():
            if row.shard == name and not _memory_reads(store, row):
                failing[name].append(row.hash)
        report.damage.setdefault("shard_file", []).append(name)
        report.damage.setdefault("memory", []).extend(failing[name])
        passages = sorted(i for ids in manifest.ids_by_hash(failing[name]).values() for i in ids)
        report.problems.append(f"{path}: {reason}; memories of passages {passages[:20]} fail their CRC")
    report.checked["memories"] = len(rows)
    for leftover in sorted(store.path.joinpath(SHARDS).glob("*")):
        if leftover.name not in shards:
            report.warnings.append(f"{leftover}: not in the manifest (left by an interrupted write; compact drops it)")


def _memory_reads(store: StoreView, row) -> bool:
    try:
        store.memory_tensors(row)
    except (StoreCorrupted, FileNotFoundError):
        return False
    return True


def _verify_index(store: StoreView, report: VerifyReport, *, bad_embeddings: bool) -> None:
    """The current index file: its recorded sha256, then its ids and vectors against the manifest's."""
    manifest = store.manifest
    path = store.index_path()
    record = manifest.index_record()
    for other in sorted(store.path.joinpath(INDEX).glob("*")):
        if other != path:
            report.warnings.append(f"{other}: not the current index file (the next write drops it)")
    if not path.is_file():
        return  # a cache: reads rebuild it from the manifest
    if not record or record.get("generation") != manifest.generation():
        report.warnings.append(f"{path}: no checksum recorded (an interrupted write): reads rebuild it, never use it")
        return
    fix = "reads rebuild it from the manifest, `sac-rag verify --repair` rewrites it"
    try:
        index = VectorIndex.load(path, store.dim, record["sha256"])
    except StoreCorrupted as e:
        report._add("index", path.name, f"{e}: {fix}")
        return
    if bad_embeddings:
        return  # the manifest side is damaged: reported above
    ids, vectors = manifest.embeddings(store.dim)
    order = np.argsort(index.ids(), kind="stable")
    if not np.array_equal(index.ids()[order], ids) or not np.array_equal(index.vectors()[order], vectors):
        report._add("index", path.name, f"{path}: holds other ids or vectors than the manifest: {fix}")
