"""Bringing a damaged store back from what is intact (``MemoryStore.repair``, ``sac-rag verify --repair``).

What :func:`~sac_rag.store.inspect.verify_store` finds damaged is redone from what is not:

* memories (a shard that fails its sha256, a memory that fails its CRC, a damaged or missing memory
  row): intact memories of a damaged shard are copied into a fresh shard, the others re-compressed
  from their passage text (this needs the model);
* embeddings that fail their digest: re-embedded from the passage text;
* the index file: rebuilt from the manifest's embeddings;
* ``generation`` / ``index`` store metadata: set afresh (the generation above any index file's);
* the checksum triggers: created again as this version writes them;
* a row without a checksum: a passage whose text matches its content hash gets its checksum back (its
  metadata taken as found); any other such row is redone as a damaged one;
* store entries that are not what the store writes (a link, a FIFO, a directory where the lock file
  goes, a file where a directory goes): replaced, when they hold nothing of their own.

A passage whose text or metadata is damaged cannot be recovered from the store: it is removed and
named, and indexing its source again brings it back; so are passages lost by a manifest rolled back to
an older copy (``unrecoverable`` says so). Damaged store metadata other than the two above, an entry
holding data where the store needs another kind of entry, or a manifest that SQLite finds structurally
damaged, is refused with a clear error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from sac_rag.store.digest import content_hash
from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.inspect import VerifyReport, verify_store
from sac_rag.store.layout import DIRECTORIES, INDEX, LOCK, SHARDS, discard, holds_data
from sac_rag.store.manifest import UNREPAIRABLE, VOLATILE_META, Manifest, MemoryRow

if TYPE_CHECKING:
    from sac_rag.store.view import StoreView


@dataclass
class RepairReport:
    """What :meth:`MemoryStore.repair` did, and the verify report of the store afterwards."""

    removed: list[int] = field(default_factory=list)
    redigested: list[int] = field(default_factory=list)
    triggers_restored: bool = False
    entries_replaced: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    copied: int = 0
    recompressed: int = 0
    reembedded: int = 0
    shards_replaced: list[str] = field(default_factory=list)
    index_rebuilt: bool = False
    after: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return self.after is not None and self.after.ok

    @classmethod
    def combined(cls, reports: list[RepairReport], after: VerifyReport) -> RepairReport:
        """One report for several repairs (the parts of a sharded store), with the verification after all."""
        return cls(
            removed=sorted(i for r in reports for i in r.removed),
            redigested=sorted(i for r in reports for i in r.redigested),
            triggers_restored=any(r.triggers_restored for r in reports),
            entries_replaced=sorted(e for r in reports for e in r.entries_replaced),
            unrecoverable=[u for r in reports for u in r.unrecoverable],
            copied=sum(r.copied for r in reports),
            recompressed=sum(r.recompressed for r in reports),
            reembedded=sum(r.reembedded for r in reports),
            shards_replaced=sorted(name for r in reports for name in r.shards_replaced),
            index_rebuilt=any(r.index_rebuilt for r in reports),
            after=after,
        )

    def to_dict(self) -> dict:
        fields = {k: v for k, v in self.__dict__.items() if k != "after"}
        return {**fields, "ok": self.ok, "after": self.after.to_dict() if self.after else None}


def repair_store(store: StoreView, *, progress: bool = False) -> RepairReport:
    """Redo what verify finds damaged from what is intact (see the module docstring); return what was done."""
    manifest = store.manifest
    replaced = _replace_entries(store, [LOCK])  # before the lock: the lock file may be what is broken
    with store.writing(sync=False, checked=False):
        replaced += _replace_entries(store, DIRECTORIES)
        damage = verify_store(store).damage
        unsummed = _take_unsummed(damage)
        _refuse_unrepairable(manifest, damage)
        redigested = [i for i in manifest.proven_texts(unsummed) if i not in damage.get("passage", [])]
        removed = sorted(set(damage.get("passage", [])) | (set(unsummed) - set(redigested)))
        report = RepairReport(removed=removed, redigested=redigested, entries_replaced=replaced)
        report.triggers_restored = bool(damage.get("triggers"))
        if damage.get("rollback"):
            report.unrecoverable.append(
                "the manifest was rolled back to an older copy: passages committed after it are not in the store "
                "(index their files again)"
            )
        bad_shards = set(damage.get("shard", [])) | set(damage.get("shard_file", []))
        tensors, rows, dropped = _memories_to_rewrite(store, damage, bad_shards, set(report.removed), report, progress)
        embeddings = _reembedded(store, damage, set(report.removed))
        report.reembedded = len(embeddings)
        shard = store.write_shard(tensors)
        with manifest.transaction() as db:
            Manifest.restore_triggers(db)  # first: every change below is checksummed
            Manifest.forget(db, damage.get("lost", []))
            Manifest.redigest(db, "passage", redigested)
            Manifest.remove(
                db,
                passages=report.removed,
                memories=[r.hash for r in rows] + dropped,
                shards=sorted(bad_shards),
                meta=[k for k in damage.get("meta", []) if k in VOLATILE_META],
            )
            if shard:
                Manifest.insert_shard(db, *shard, rows)
            Manifest.set_embeddings(db, embeddings)
            Manifest.drop_unreferenced_memories(db)
            if "generation" in damage.get("meta", []) or damage.get("rollback"):
                Manifest.set_meta(db, "generation", _fresh_generation(store))
            generation = Manifest.bump_generation(db)
        manifest.checkpoint()
        for name in bad_shards:
            discard(store.path / SHARDS / name)  # the name only; a directory holding files stays (verify warns)
        report.shards_replaced = sorted(bad_shards)
        store.rebuild_index(generation)
        report.index_rebuilt = True
    report.after = verify_store(store, progress=progress)
    return report


def _replace_entries(store: StoreView, names: tuple[str, ...] | list[str]) -> list[str]:
    """Replace the store entries among ``names`` that are not what the store writes (the name only: a link's
    target is never touched); refuse, naming it, one that holds data of its own. Returns what was replaced."""
    replaced = []
    for path, why in store.layout_problems():
        if path.name not in names:
            continue
        if holds_data(path) or not discard(path):
            raise StoreCorrupted(f"{path} {why}, and it holds data of its own: move it out of the store, then repair")
        if path.name in DIRECTORIES:
            path.mkdir()
        replaced.append(f"{path} ({why})")
    return replaced


def _take_unsummed(damage: dict[str, list]) -> list[int]:
    """Passage ids of the rows without a checksum; other such rows are added to the damage of their kind."""
    passages = []
    for kind, key in damage.pop("unsummed", []):
        if kind == "passage":
            passages.append(key)
        else:
            damage.setdefault(kind, []).append(key)
    return passages


def _refuse_unrepairable(manifest: Manifest, damage: dict[str, list]) -> None:
    lost_meta = [key for kind, key in damage.get("lost", []) if kind == "meta" and key not in VOLATILE_META]
    meta = [k for k in damage.get("meta", []) if k not in VOLATILE_META] + lost_meta
    if meta or damage.get("structure"):
        what = f"store metadata {meta}" if meta else f"SQLite structure ({damage['structure'][0]})"
        raise StoreCorrupted(f"{manifest.path}: {what} is damaged and cannot be rebuilt from the rest: {UNREPAIRABLE}")


def _memories_to_rewrite(
    store: StoreView, damage: dict[str, list], bad_shards: set[str], removed: set[int], report: RepairReport,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], list[MemoryRow], list[str]]:  # fmt: skip
    """Tensors and rows of the fresh shard (intact memories of bad shards copied, damaged ones re-compressed),
    and the memories dropped because no intact passage uses them any more."""
    manifest = store.manifest
    intact = manifest.memory_rows(skip_damaged=True)
    redo = set(damage.get("memory", [])) | set(damage.get("no_shard", []))
    redo |= {h for h, row in intact.items() if row.shard in bad_shards}
    no_memory = set(damage.get("no_memory", [])) - removed
    redo |= {content_hash(text) for text in manifest.proven_texts(sorted(no_memory)).values()}
    still_used = {h for h, ids in manifest.ids_by_hash(sorted(redo)).items() if set(ids) - removed}
    tensors: dict[str, torch.Tensor] = {}
    rows: list[MemoryRow] = []
    todo: dict[str, str] = {}
    texts = manifest.texts_by_hash(sorted(still_used))
    for h in sorted(still_used):
        row = intact.get(h)
        copied = _read(store, row) if row is not None else None
        if copied is not None:
            tensors.update(copied)
            rows.append(row)
        elif h in texts:
            todo[h] = texts[h]
    report.copied = len(rows)
    if todo:
        new_tensors, new_rows = store.compress_texts(todo, progress=progress)
        tensors.update(new_tensors)
        rows += new_rows
    report.recompressed = len(todo)
    return tensors, rows, sorted(redo - still_used)


def _read(store: StoreView, row: MemoryRow) -> dict[str, torch.Tensor] | None:
    try:
        return {name: t.clone() for name, t in store.memory_tensors(row).items()}
    except (StoreCorrupted, FileNotFoundError):
        return None


def _reembedded(store: StoreView, damage: dict[str, list], removed: set[int]) -> dict[int, object]:
    texts = store.manifest.proven_texts(sorted(set(damage.get("embedding", [])) - removed))
    return dict(zip(texts, store.embed(list(texts.values())))) if texts else {}


def _fresh_generation(store: StoreView) -> int:
    """A generation above any an index file was written for."""
    numbers = [int(m.group(1)) for f in store.path.joinpath(INDEX).glob("*") if (m := re.search(r"(\d+)", f.name))]
    return max(numbers, default=0) + 1
