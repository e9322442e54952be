"""Looking at a store without changing it: its figures (``stats``) and its integrity (``verify``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.index import VectorIndex
from sac_rag.store.layout import SHARDS
from sac_rag.store.shards import sha256_file

if TYPE_CHECKING:
    from sac_rag.store.store import MemoryStore


@dataclass
class VerifyReport:
    """What :meth:`MemoryStore.verify` found. ``problems`` name the damaged files; ``warnings`` are harmless."""

    checked: dict
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_bad(self) -> None:
        if self.problems:
            raise StoreCorrupted("; ".join(self.problems))


def store_stats(store: MemoryStore) -> dict:
    """Counts, sizes and the compression figures of the store."""
    totals = store._manifest.totals()
    layers, heads, dim = store._manifest.meta("kv_shape")
    n = totals["passages"]
    full_kv = 2 * layers * heads * dim * 2 * totals["passage_tokens"]  # bf16 K and V of every token
    return {
        "path": str(store.path),
        "fingerprint": store.fingerprint,
        "model": store._manifest.meta("model"),
        "embedder": store.embedder_name,
        "memory_dtype": store.memory_dtype,
        "generation": store._manifest.generation(),
        **totals,
        "disk_bytes": store._disk_bytes(),
        "bytes_per_passage": totals["passage_memory_bytes"] / n if n else 0.0,
        "full_kv_bf16_bytes_per_passage": full_kv / n if n else 0.0,
        "tokens_per_passage": totals["passage_tokens"] / n if n else 0.0,
        "anchors_per_passage": totals["anchors"] / n if n else 0.0,
    }


def verify_store(store: MemoryStore, *, progress: bool = False) -> VerifyReport:
    """Check every shard's checksum and every memory's CRC, and the index against the manifest."""
    report = VerifyReport(checked={"shards": 0, "memories": 0, "passages": 0})
    shards = store._manifest.shard_rows()
    bad_shards = set()
    for name, (sha, size) in tqdm(shards.items(), desc="verifying", unit="shard", disable=not progress):
        path = store.path / SHARDS / name
        report.checked["shards"] += 1
        if not path.is_file():
            report.problems.append(f"{path}: missing")
        elif path.stat().st_size != size or sha256_file(path) != sha:
            report.problems.append(f"{path}: checksum mismatch (corrupted shard)")
        else:
            continue
        bad_shards.add(name)
    for row in store._manifest.memory_rows().values():
        report.checked["memories"] += 1
        if row.shard in bad_shards:
            continue
        try:
            store._raw_tensors(row)
        except StoreCorrupted as e:
            report.problems.append(str(e))
    listed = set(shards)
    for leftover in sorted(store.path.joinpath(SHARDS).glob("*")):
        if leftover.name not in listed:
            report.warnings.append(f"{leftover}: not in the manifest (left by an interrupted write; compact drops it)")
    report.checked["passages"] = store._manifest.count()
    index_file = store._index_path(store._manifest.generation())
    if index_file.is_file():
        try:
            ids = set(VectorIndex.load(index_file, store.dim).ids().tolist())
            if ids != set(store._manifest.ids()):
                report.problems.append(f"{index_file}: holds other ids than the manifest")
        except StoreCorrupted as e:
            report.problems.append(f"{e} (rebuilt from the manifest on the next write)")
    return report
