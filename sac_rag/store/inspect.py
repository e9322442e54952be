"""Looking at a store without changing it: its figures (``stats``) and its integrity (``verify``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.index import VectorIndex
from sac_rag.store.layout import INDEX, SHARDS, entry_problem, holds_data, regular
from sac_rag.store.shards import sha256_file, shard_memory_hashes

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
_UNSUMMED = "{kind} row {key} has no checksum (deleted, or written while the checksum triggers were off)"
_RESTORE = "restore the newer manifest, or index their files again"


@dataclass
class VerifyReport:
    """What :meth:`MemoryStore.verify` found.

    ``problems`` name each damaged file (and passage); ``warnings`` are harmless; ``damage`` lists what
    is damaged by kind (``meta``, ``shard``, ``memory``, ``passage``, ``embedding``, ``unsummed``, ``lost``,
    ``no_memory``, ``no_shard``, ``shard_file``, ``index``, ``layout``, ``triggers``, ``rollback``), which
    :meth:`MemoryStore.repair` redoes.
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
    _verify_layout(store, report)
    for message in manifest.integrity_errors():
        report._add("structure", message, f"{manifest.path}: {message}")
    triggers = manifest.trigger_problems()
    if triggers:
        report.damage["triggers"] = triggers
        report.problems.append(
            f"{manifest.path}: checksum triggers {', '.join(triggers)} are missing, altered or foreign: rows "
            "written meanwhile got no checksum or a wrong one"
        )
    audit = manifest.audit(store.dim)
    report.checked["manifest_rows"] = manifest.row_count()
    for kind, keys in audit.items():
        for key in keys:
            if kind == "lost":
                report._add("lost", key, f"{manifest.path}: the {key[0]} row {key[1]} is missing")
            elif kind == "unsummed":
                report._add("unsummed", key, f"{manifest.path}: {_UNSUMMED.format(kind=key[0], key=key[1])}")
            else:
                report._add(kind, key, f"{manifest.path}: {_ROW_PROBLEMS[kind].format(key=key)}")
    _verify_shards(store, report, progress)
    bad = audit["embedding"] or audit["passage"] or audit["lost"] or audit["unsummed"]
    _verify_index(store, report, bad_embeddings=bool(bad))
    return report


def _verify_layout(store: StoreView, report: VerifyReport) -> None:
    """Store entries that are not what the store writes (a writer refuses the store while there are any)."""
    for path, why in store.layout_problems():
        fix = "--repair fixes it"
        if holds_data(path):
            fix = "move it out of the store, then run `sac-rag verify --repair`"
        report._add("layout", path.name, f"{path} {why}: writes are refused ({fix})")


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
    _verify_leftovers(store, report, set(shards), set(rows))


def _verify_leftovers(store: StoreView, report: VerifyReport, listed: set[str], memories: set[str]) -> None:
    """Files in ``shards/`` the manifest does not list; the memories in them it does not know are counted, and
    index files newer than the manifest's generation show that the manifest was rolled back."""
    leftovers = [f for f in sorted(store.path.joinpath(SHARDS).glob("*")) if f.name not in listed]
    unknown = set()
    for leftover in leftovers:
        if not regular(leftover):
            report.warnings.append(f"{leftover}: not a shard file (the next compact removes it unless it holds files)")
            continue
        unknown |= shard_memory_hashes(leftover) - memories
    generation = store.manifest.generation()
    newer = sorted(f.name for f in store.path.joinpath(INDEX).glob("index-*.faiss") if _generation_of(f) > generation)
    files = ", ".join(f.name for f in leftovers[:3]) + (" ..." if len(leftovers) > 3 else "") or "none left"
    unaccounted = f"{len(unknown)} memories in shards the manifest does not list ({files}) are unaccounted for"
    if newer:
        report._add(
            "rollback", newer[-1],
            f"{store.manifest.path}: at generation {generation}, but {INDEX}/{newer[-1]} was written by a later "
            f"one: the manifest was rolled back to an older copy, and passages committed after it may be missing "
            f"({unaccounted}): {_RESTORE} (--repair makes the store usable as it is)",
        )  # fmt: skip
    elif leftovers:
        report.warnings.append(
            f"{store.path / SHARDS}: {unaccounted}: left by an interrupted write (compact drops them), or the "
            f"manifest was rolled back to an older copy, and then committed passages are missing ({_RESTORE})"
        )


def _generation_of(index_file) -> int:
    try:
        return int(index_file.name.removeprefix("index-").removesuffix(".faiss"))
    except ValueError:
        return -1


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
    if os.path.lexists(path) and not regular(path):
        why = entry_problem(path, "file") or "is not a regular file"
        report._add("index", path.name, f"{path} {why}: reads rebuild the index, `sac-rag verify --repair` rewrites it")
        return
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
