"""MemoryStore: passages, their embeddings (FAISS) and their SAC memories (safetensors shards) in one directory.

Layout::

    <store>/manifest.sqlite      source of truth (SQLite, WAL): ids, texts, metadata, hashes, embeddings
    <store>/shards/*.safetensors immutable memory shards, checksummed in the manifest
    <store>/index/index-<gen>.faiss  FAISS cache of the embeddings at manifest generation <gen>
    <store>/write.lock           the single-writer lock

See docs/store.md for the durability and locking model.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from sac_rag.compression.encoder import COMPRESS_BATCH_SIZE
from sac_rag.embedding import Embedder, resolve_embedder
from sac_rag.io import atomic_create_dir
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.geometry import kv_shape
from sac_rag.store.codec import SUFFIXES, dtype_name, memory_dtype_for, pack_memory, unpack_chunk
from sac_rag.store.digest import content_hash
from sac_rag.store.errors import ShardMissing, StoreCorrupted, StoreError, StoreExists, StoreMismatch
from sac_rag.store.index_cache import IndexCache
from sac_rag.store.inspect import VerifyReport, store_stats, verify_store
from sac_rag.store.layout import INDEX, LOCK, MANIFEST, SHARDS, discard, layout_problems, not_a_store, store_kind
from sac_rag.store.lock import WriterLock
from sac_rag.store.manifest import Manifest, MemoryRow, PassageRow
from sac_rag.store.repair import RepairReport, repair_store
from sac_rag.store.shards import ShardReader, tensors_crc, write_shard
from sac_rag.store.validate import (
    Record,
    check_ids,
    check_k,
    check_positive,
    check_query,
    compressor_mismatch,
    records,
    token_array,
)
from sac_rag.text.prompt import encode

if TYPE_CHECKING:
    from sac_rag.model import SACModel


@dataclass
class Hit:
    """One search result: a passage id, its cosine similarity to the query, its text and metadata."""

    id: int
    score: float
    text: str
    metadata: dict = field(default_factory=dict)


def _check_new_store_path(path: Path) -> None:
    """Raise unless a store can be created at ``path`` (missing, or an empty directory, under directories)."""
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise StoreError(f"cannot create a store at {path}: {blocking} is a file, not a directory")
    if store_kind(path) == "sharded":
        raise StoreExists(
            f"cannot create a store at {path}: it is a sharded store; add passages to it with "
            f"`sac-rag index FILES --store {path} --ray` (sac_rag.scale.index_with_ray)"
        )
    if os.path.lexists(path / MANIFEST):
        raise StoreExists(f"{path} already exists and holds {MANIFEST}: open it instead (MemoryStore.open)")
    if os.path.lexists(path) and (not path.is_dir() or any(path.iterdir())):
        what = "a file" if not path.is_dir() else "a directory that holds other files and no store"
        raise StoreExists(f"cannot create a store at {path}: it already exists as {what}; give a new path")


class MemoryStore:
    """A directory of passages with their embeddings and SAC memory chunks. Build with :meth:`create` / :meth:`open`.

    ``model`` (a :class:`~sac_rag.SACModel`) is needed to add passages; searching, reading and
    deleting work without one. ``embedder`` is needed to add and search; ``None`` means the one the
    store was built with (when it is a sentence-transformers model) or the offline default.
    """

    def __init__(
        self, path: Path, manifest: Manifest, model: SACModel | None, embedder, *, lock_timeout: float = 60.0
    ) -> None:
        self.path = path
        self.model = model
        self._manifest = manifest
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None
        self._lock = WriterLock(path / LOCK, timeout=lock_timeout)
        self._mutex = threading.RLock()
        self._shards: OrderedDict[str, ShardReader] = OrderedDict()
        self.memory_dtype: str = manifest.meta("memory_dtype")
        self.dim: int = manifest.meta("dim")
        self._cache = IndexCache(path / INDEX, manifest, self.dim)
        self.max_passage_tokens: int = manifest.meta("max_passage_tokens")
        self.flush_every = 64
        #: True when :meth:`create` made this store (not when it opened one another process made meanwhile).
        self.created = False

    # ================================================================== create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        model: SACModel,
        embedder: Embedder | Callable | str | None = None,
        memory_dtype: torch.dtype | str | None = None,
        *,
        max_passage_tokens: int | None = None,
    ) -> MemoryStore:
        """Create an empty store at ``path`` (which must not exist, or be an empty directory), holding its memories
        as ``memory_dtype`` (None: what the model's memories are made for, :func:`memory_dtype_for`).

        Raises :class:`StoreExists` when something is there already, including a store another process
        created meanwhile (:meth:`open_or_create` then opens that one).
        """
        path = Path(path)
        _check_new_store_path(path)
        if model is None:
            raise ValueError("a store is created for one compressor: pass the SACModel")
        memory_dtype = dtype_name(memory_dtype or memory_dtype_for(model))
        if max_passage_tokens is not None:
            check_positive(max_passage_tokens, "max_passage_tokens")
        resolved = resolve_embedder(embedder)
        dim = int(resolved.embed(["dimension probe"]).shape[1])
        config = model.config
        meta = {
            "fingerprint": model.fingerprint,
            "model": config.base_model,
            "embedder": resolved.name,
            "embedder_loadable": isinstance(embedder, (str, Path)) or embedder is None,
            "dim": dim,
            "memory_dtype": memory_dtype,
            "max_passage_tokens": int(max_passage_tokens or cls.default_max_passage_tokens(model)),
            "kv_shape": list(kv_shape(model.base_model.config)),
        }

        def fill(tmp: Path) -> None:
            Manifest.create(tmp / MANIFEST, meta).close()
            (tmp / SHARDS).mkdir()
            (tmp / INDEX).mkdir()

        try:
            atomic_create_dir(path, fill)
        except FileExistsError:
            raise StoreExists(f"{path}: another process created it meanwhile") from None
        store = cls.open(path, model, embedder)
        store._embedder = resolved
        store.created = True
        return store

    @staticmethod
    def default_max_passage_tokens(model: SACModel) -> int:
        """The passage size limit a store gets by default: 4 compression chunks of ``model``."""
        return 4 * model.config.chunk_size

    @classmethod
    def open(
        cls,
        path: str | Path,
        model: SACModel | None = None,
        embedder: Embedder | Callable | str | None = None,
        *,
        rebuild: bool = False,
        lock_timeout: float = 60.0,
    ) -> MemoryStore:
        """Open an existing store; refuses another compressor or embedder unless ``rebuild`` re-does them."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not os.path.lexists(manifest_path):
            if store_kind(path) == "sharded":
                raise StoreError(f"{path} is a sharded store, not a single one: open it with sac_rag.scale.open_store")
            raise FileNotFoundError(not_a_store(path))
        manifest = Manifest(manifest_path)
        try:
            if manifest.check_format():
                with WriterLock(path / LOCK, timeout=lock_timeout):
                    manifest.upgrade()
            manifest.check_meta()
        except BaseException:
            manifest.close()
            raise
        store = cls(path, manifest, model, embedder, lock_timeout=lock_timeout)
        mismatch = store._mismatches()
        if mismatch and not rebuild:
            manifest.close()
            raise StoreMismatch(
                f"{path}: {'; '.join(mismatch)}. Use the ones it was built with (on the command line, leave "
                "--embedder out: the store's own is used; give --model the store's model), or re-compress / "
                "re-embed every passage (MemoryStore.open(..., rebuild=True))"
            )
        if mismatch:
            store._rebuild()
        return store

    @classmethod
    def open_or_create(
        cls,
        path: str | Path,
        model: SACModel,
        embedder: Embedder | Callable | str | None = None,
        memory_dtype: torch.dtype | str | None = None,
        *,
        max_passage_tokens: int | None = None,
    ) -> MemoryStore:
        """Open the store at ``path`` if there is one, else create it (``memory_dtype`` None: the model's, see
        :func:`memory_dtype_for`);
        the store's :attr:`created` says which.

        ``max_passage_tokens`` is the longest passage the caller will add: a new store takes passages of that
        many tokens and at least :meth:`default_max_passage_tokens`. A ``memory_dtype`` other than an existing
        store's is an error, as is an existing store whose limit is below ``max_passage_tokens``: a store keeps
        the dtype and limit it was created with.
        """
        wanted = None if memory_dtype is None else dtype_name(memory_dtype)
        if not os.path.lexists(Path(path) / MANIFEST):
            limit = max_passage_tokens
            if limit is not None and model is not None:
                limit = max(check_positive(limit, "max_passage_tokens"), cls.default_max_passage_tokens(model))
            try:
                return cls.create(path, model, embedder, wanted, max_passage_tokens=limit)
            except StoreExists:
                if not os.path.lexists(Path(path) / MANIFEST):
                    raise
                # another process created the store first: writers take turns, so use it
        store = cls.open(path, model, embedder)
        refusal = None
        if wanted is not None and wanted != store.memory_dtype:
            refusal = f"memory_dtype {wanted!r} given, but {path} holds {store.memory_dtype} memories"
        elif max_passage_tokens is not None and max_passage_tokens > store.max_passage_tokens:
            refusal = (
                f"max_passage_tokens {max_passage_tokens} given, but {path} takes up to {store.max_passage_tokens}"
            )
        if refusal:
            store.close()
            raise StoreMismatch(f"{refusal} (a store keeps what it was created with)")
        return store

    def _mismatches(self) -> list[str]:
        found = []
        if self.model is not None:
            problem = compressor_mismatch(self.model, self.fingerprint, self._manifest.meta("model"))
            if problem:
                found.append(problem)
        if self._embedder_spec is not None:
            name = resolve_embedder(self._embedder_spec).name
            if name != self._manifest.meta("embedder"):
                stored = self._manifest.meta("embedder")
                found.append(f"it was embedded with {stored!r}, the embedder given is {name!r}")
        return found

    def remove_if_empty(self) -> bool:
        """Close the store and delete its directory if it holds no passage and no writer holds it (no waiting):
        what a failed first indexing leaves. True when it was deleted."""
        try:
            with self._mutex, WriterLock(self.path / LOCK, timeout=0):
                empty = self._manifest.count() == 0
                self.close()
                if empty:
                    shutil.rmtree(self.path, ignore_errors=True)
                return empty
        except (StoreError, OSError):
            self.close()  # held by another writer, or unreadable: not ours to delete
            return False

    def close(self) -> None:
        with self._mutex:
            self._shards.clear()
            self._manifest.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._manifest.count()

    @property
    def fingerprint(self) -> str:
        return self._manifest.meta("fingerprint")

    @property
    def embedder_name(self) -> str:
        return self._manifest.meta("embedder")

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            spec = self._embedder_spec
            if spec is None:
                if not self._manifest.meta("embedder_loadable"):
                    raise StoreError(
                        f"{self.path} was embedded with the callable {self.embedder_name!r}: pass it as `embedder`"
                    )
                spec = self.embedder_name
            self._embedder = resolve_embedder(spec)
        return self._embedder

    def ids(self) -> list[int]:
        return self._manifest.ids()

    def ids_with_metadata(self, key: str, values: Sequence[str | int | float]) -> list[int]:
        """Ids of the passages whose metadata ``key`` holds one of ``values``."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        return self._manifest.ids_with_metadata(key, list(values))

    @property
    def manifest(self) -> Manifest:
        """The store's manifest (its rows, checked on read; see :class:`~sac_rag.store.manifest.Manifest`)."""
        return self._manifest

    # ================================================================== writing
    @contextmanager
    def writing(self, *, sync: bool = True, checked: bool = True) -> Iterator[None]:
        """Hold the single-writer lock (and this process's mutex) for one write operation; ``checked`` first
        refuses a store whose entries are not what it writes (:meth:`check_layout`; repair fixes them), ``sync``
        brings the in-memory index up to the manifest's generation."""
        with self._mutex, self._lock:
            if checked:
                self.check_layout()
            if sync:
                self._cache.current()
            yield

    def layout_problems(self) -> list[tuple[Path, str]]:
        """Store entries that are not what the store writes (links, special files, a missing or misplaced
        directory): ``(path, what is wrong)``; writers refuse to start while there are any."""
        return layout_problems(self.path)

    def check_layout(self) -> None:
        """Raise :class:`StoreCorrupted` naming every entry :meth:`layout_problems` finds, and the fix."""
        problems = self.layout_problems()
        if problems:
            listed = "; ".join(f"{path} {why}" for path, why in problems)
            raise StoreCorrupted(f"{listed}: writes refused; `sac-rag verify --store {self.path} --repair` fixes it")

    def add(
        self,
        texts: Sequence[str] | str,
        metadata: Sequence[dict] | None = None,
        ids: Sequence[int] | None = None,
        *,
        batch_size: int = COMPRESS_BATCH_SIZE,
        commit_every: int | None = None,
        progress: bool = True,
        token_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[int]:
        """Embed and compress new passages; return their ids (given ``ids`` must be new ones).

        Everything is checked before anything is written. ``batch_size`` passages are compressed per
        forward pass; they are committed in groups of ``commit_every`` (default :attr:`flush_every`, 64):
        if the process dies, every group committed so far stays in the store.

        Each text is tokenised once, for its length check and its compression both. ``token_ids``, one sequence
        per text, are the texts' ids by the model's tokenizer (no special tokens, as ``sac_rag.text.prompt.encode``
        gives them; :attr:`Passages.token_ids <sac_rag.corpus.Passages>` when split by it): given, the texts
        are not tokenised at all. They are trusted to be the texts' own (only ids outside the vocabulary are
        refused): other ids make memories of other text.
        """
        batch, commit_every = self._checked_input(texts, metadata, ids, batch_size, commit_every, token_ids)
        with self.writing():
            if ids is None:
                first = self._manifest.next_id()
                for n, rec in enumerate(batch):
                    rec.id = first + n
            else:
                taken = sorted(self._manifest.existing([r.id for r in batch]))
                if taken:
                    raise ValueError(f"ids already in the store: {taken[:10]}: use upsert to replace them")
            self._ingest(batch, batch_size, commit_every, progress)
        return [r.id for r in batch]

    def upsert(
        self,
        texts: Sequence[str] | str,
        metadata: Sequence[dict] | None = None,
        ids: Sequence[int] | None = None,
        *,
        batch_size: int = COMPRESS_BATCH_SIZE,
        commit_every: int | None = None,
        progress: bool = True,
        token_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[int]:
        """Insert or replace passages by id; a passage whose text and metadata are unchanged costs nothing.
        ``token_ids``: as :meth:`add` takes them."""
        if ids is None:
            raise ValueError("upsert needs ids (add assigns new ones)")
        batch, commit_every = self._checked_input(texts, metadata, ids, batch_size, commit_every, token_ids)
        with self.writing():
            current = self._manifest.passages([r.id for r in batch], skip_damaged=True)  # damaged: rewritten
            changed = [
                r
                for r in batch
                if r.id not in current
                or current[r.id].hash != content_hash(r.text)
                or current[r.id].metadata != r.metadata
            ]
            self._ingest(changed, batch_size, commit_every, progress)
        return [r.id for r in batch]

    def _checked_input(
        self, texts, metadata, ids, batch_size: object, commit_every: object, token_ids=None
    ) -> tuple[list[Record], int]:
        """Records of the input (each with its token ids) and the commit group size, all checked before anything
        is written."""
        check_positive(batch_size, "batch_size")
        commit_every = check_positive(self.flush_every if commit_every is None else commit_every, "commit_every")
        batch = records(texts, metadata, ids, token_ids)
        self._check_lengths(batch)
        return batch, commit_every

    def _check_lengths(self, batch: list[Record]) -> None:
        """Refuse passages longer than the store takes, tokenising those that come without their ids: the records
        keep them for compression (:meth:`_compress`), so a passage is tokenised once."""
        if self.model is None:
            raise StoreError("adding passages needs the compressor: open the store with model=SACModel")
        tok = self.model.tokenizer
        vocab = len(tok)
        for n, rec in enumerate(batch):
            if rec.token_ids is None:
                rec.token_ids = token_array(encode(tok, rec.text))
            elif not 0 <= min(rec.token_ids) <= max(rec.token_ids) < vocab:
                raise ValueError(f"token_ids[{n}] holds ids outside the tokenizer's {vocab}: not this model's tokens")
            count = len(rec.token_ids)
            if count > self.max_passage_tokens:
                raise ValueError(
                    f"passage {n} has {count} tokens; this store takes passages of up to {self.max_passage_tokens}: "
                    "split long documents first (sac_rag.corpus.split_passages)"
                )

    def _ingest(self, batch: list[Record], batch_size: int, commit_every: int, progress: bool) -> None:
        bar = tqdm(total=len(batch), desc="indexing", unit="passage", disable=not progress or not batch)
        with bar:
            for start in range(0, len(batch), commit_every):
                group = batch[start : start + commit_every]
                self._commit_group(group, batch_size, bar)

    def _commit_group(self, group: list[Record], batch_size: int, bar: tqdm) -> None:
        hashes = [content_hash(r.text) for r in group]
        known = self._manifest.memory_rows(list(dict.fromkeys(hashes)), skip_damaged=True)
        todo = {h: r.text for h, r in zip(hashes, group) if h not in known}
        token_ids = {h: r.token_ids for h, r in zip(hashes, group) if h in todo}
        bar.update(len(group) - len(todo))
        tensors, rows = self._compress(todo, batch_size, bar, token_ids)
        vectors = self._embeddings(hashes, [r.text for r in group])
        shard = self.write_shard(tensors)
        passages = [(r.id, h, r.text, r.metadata, v) for r, h, v in zip(group, hashes, vectors)]
        generation = self.record_group([(*shard, rows)] if shard else [], passages)
        ids = np.array([r.id for r in group], dtype=np.int64)
        self._cache.update(generation, remove=ids, ids=ids, vectors=vectors)

    def record_group(
        self,
        shards: Sequence[tuple[str, str, int, list[MemoryRow]]],
        passages: Sequence[tuple[int, str, str, dict, np.ndarray]],
        *,
        drop_unreferenced: bool = True,
    ) -> int:
        """The group commit: record written ``shards`` (``(name, sha256, size, memory rows)``; a shard recorded
        again replaces its first record), then ``passages`` (``(id, content hash, text, metadata, embedding)``,
        inserted or replaced) and a new generation, in one manifest transaction; return the generation.

        ``drop_unreferenced`` also drops the memories (and shards) no passage uses any more; a run that records
        passages in several groups may keep them until its last group (``scale/merge.py``). The caller holds
        the write lock (:meth:`writing`) and brings the index up to the generation.
        """
        with self._manifest.transaction() as db:
            for name, sha, size, rows in shards:
                Manifest.remove(db, shards=[name])
                Manifest.insert_shard(db, name, sha, size, rows)
            Manifest.put_passages(db, passages)
            if drop_unreferenced:
                Manifest.drop_unreferenced_memories(db)
            return Manifest.bump_generation(db)

    def _compress(
        self, todo: dict[str, str], batch_size: int, bar: tqdm, token_ids: dict[str, Sequence[int]] | None = None
    ) -> tuple[dict[str, torch.Tensor], list[MemoryRow]]:
        """Compress texts (keyed by content hash) into shard tensors and their manifest rows; ``token_ids`` (by
        hash, for every text) spares tokenising them again."""
        tensors: dict[str, torch.Tensor] = {}
        rows: list[MemoryRow] = []
        items = list(todo.items())
        for start in range(0, len(items), batch_size):
            part = items[start : start + batch_size]
            ids = None if token_ids is None else [token_ids[h] for h, _ in part]
            chunks = self.model.compress([t for _, t in part], batch_size=batch_size, token_ids=ids)
            for (h, _), chunk in zip(part, chunks):
                stored = {f"{h}.{s}": t for s, t in pack_memory(chunk, self.memory_dtype).items()}
                tensors.update(stored)
                nbytes = sum(t.numel() * t.element_size() for t in stored.values())
                crc = tensors_crc(stored.values())
                per_head = round(chunk.entries_per_head)  # SAC: its anchors; compact: its mean entries per head
                rows.append(MemoryRow(h, "", chunk.length, per_head, chunk.offset, nbytes, crc, chunk.meta))
            bar.update(len(part))
        return tensors, rows

    def compress_texts(self, todo: dict[str, str], *, progress: bool = False) -> tuple[dict, list[MemoryRow]]:
        """Compress texts keyed by content hash: the shard tensors and memory rows to record (needs the model)."""
        if self.model is None:
            raise StoreError("compressing passages needs the compressor: open the store with model=SACModel")
        with tqdm(total=len(todo), desc="compressing", unit="passage", disable=not progress) as bar:
            return self._compress(todo, COMPRESS_BATCH_SIZE, bar)

    def write_shard(self, tensors: dict[str, torch.Tensor]) -> tuple[str, str, int] | None:
        """Write a new shard file; its name, sha256 and size (None when there is nothing to write)."""
        if not tensors:
            return None
        name = f"shard-{uuid.uuid4().hex[:12]}.safetensors"
        sha, size = write_shard(self.path / SHARDS / name, tensors)
        return name, sha, size

    def _embeddings(self, hashes: list[str], texts: list[str]) -> np.ndarray:
        """Embeddings for a group, reusing those of texts already stored."""
        out: dict[str, np.ndarray] = {}
        for h in dict.fromkeys(hashes):
            stored = self._manifest.embedding_of_hash(h)
            if stored is not None:
                out[h] = stored
        missing = {h: t for h, t in zip(hashes, texts) if h not in out}
        if missing:
            out.update(zip(missing, self.embed(list(missing.values()))))
        return np.stack([out[h] for h in hashes]).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` by the store's embedder, checked to have the store's dimension."""
        vectors = self.embedder.embed(texts)
        if vectors.shape[1] != self.dim:
            got = vectors.shape[1]
            raise StoreMismatch(f"embedder {self.embedder.name!r} gives dim {got}, the store holds dim {self.dim}")
        return vectors

    def delete(self, ids: Sequence[int]) -> int:
        """Remove passages by id (all must exist, else nothing is removed); return how many were removed."""
        wanted = check_ids(ids)
        with self.writing():
            missing = sorted(set(wanted) - set(self._manifest.existing(wanted)))
            if missing:
                raise ValueError(f"ids not in the store: {missing[:10]} (nothing deleted)")
            with self._manifest.transaction() as db:
                Manifest.remove(db, passages=wanted)
                Manifest.drop_unreferenced_memories(db)
                generation = Manifest.bump_generation(db)
            self._cache.update(generation, remove=wanted)
        return len(wanted)

    def compact(self, *, progress: bool = False) -> dict:
        """Rewrite live memories into one fresh shard, drop dead bytes and leftover files; return shard sizes."""
        with self.writing():
            before = self.disk_bytes(SHARDS)
            rows = self._manifest.memory_rows()
            old_shards = self._manifest.shard_rows()
            tensors: dict[str, torch.Tensor] = {}
            for row in tqdm(rows.values(), desc="compacting", unit="memory", disable=not progress):
                tensors.update(self.memory_tensors(row))
            shard = self.write_shard(tensors)
            with self._manifest.transaction() as db:
                Manifest.clear(db, shards=True)
                if shard:
                    Manifest.insert_shard(db, *shard, list(rows.values()))
                generation = Manifest.bump_generation(db)
            self._manifest.checkpoint()
            self._shards.clear()
            live = {shard[0]} if shard else set()
            for leftover in self.path.joinpath(SHARDS).iterdir():
                if leftover.name not in live:
                    discard(leftover)  # a directory holding files is left (verify names it)
            self.rebuild_index(generation)
            after = self.disk_bytes(SHARDS)
            return {"shards_before": len(old_shards), "shard_bytes_before": before, "shard_bytes_after": after}

    def _rebuild(self) -> None:
        """Re-compress and/or re-embed every passage for the model / embedder given at open."""
        with self.writing():
            damaged = self._manifest.audit(self.dim)["passage"]
            if damaged:
                raise StoreCorrupted(
                    f"{self.path / MANIFEST}: passages {damaged[:10]} are damaged: "
                    f"run `sac-rag verify --store {self.path} --repair` first"
                )
            texts = self._manifest.texts_by_hash()
            fp_changed = self.model is not None and self.model.fingerprint != self.fingerprint
            with tqdm(total=len(texts) if fp_changed else 0, desc="re-compressing", disable=not fp_changed) as bar:
                tensors, rows = self._compress(texts, 8, bar) if fp_changed else ({}, [])
            shard = self.write_shard(tensors)
            embedder = resolve_embedder(self._embedder_spec) if self._embedder_spec is not None else None
            with self._manifest.transaction() as db:
                if fp_changed:
                    Manifest.clear(db, memories=True, shards=True)
                    if shard:
                        Manifest.insert_shard(db, *shard, rows)
                    Manifest.set_meta(db, "fingerprint", self.model.fingerprint)
                    Manifest.set_meta(db, "model", self.model.config.base_model)
                if embedder is not None and embedder.name != self.embedder_name:
                    self._reembed(db, embedder)
                generation = Manifest.bump_generation(db)
            self._shards.clear()
            self.rebuild_index(generation)

    def _reembed(self, db, embedder: Embedder) -> None:
        rows = Manifest.all_texts(db)
        vectors = embedder.embed([t for _, t in rows]) if rows else np.zeros((0, self.dim), np.float32)
        Manifest.set_embeddings(db, {i: v for (i, _), v in zip(rows, vectors)})
        Manifest.set_meta(db, "embedder", embedder.name)
        Manifest.set_meta(db, "embedder_loadable", isinstance(self._embedder_spec, (str, Path)))
        Manifest.set_meta(db, "dim", int(vectors.shape[1]))
        self.dim = self._cache.dim = int(vectors.shape[1])
        self._embedder = embedder

    # ================================================================== the index cache
    def index_path(self) -> Path:
        """The index file of the manifest's current generation (it may not be written yet)."""
        return self._cache.path()

    def rebuild_index(self, generation: int) -> None:
        """Rebuild the vector index from the manifest's (checked) embeddings and save it for ``generation``."""
        self._cache.rebuild(generation)

    # ================================================================== reading
    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` passages nearest to ``query`` (all of them if the store holds fewer), best first."""
        check_query(query)
        check_k(k)
        hits = self.search_vector(self.embedder.embed([query])[0], k)
        rows = self._manifest.passages([i for i, _ in hits])
        return [Hit(i, s, rows[i].text, rows[i].metadata) for i, s in hits if i in rows]

    def search_vector(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """``(id, score)`` of the ``k`` passages nearest to an embedding, from the index at the current generation."""
        return self._cache.current().search(vector, check_k(k))

    def get(self, ids: Sequence[int]) -> list[PassageRow]:
        """Passage records (id, content hash, text, metadata) in the order asked."""
        wanted = check_ids(ids)
        rows = self._manifest.passages(wanted)
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise ValueError(f"ids not in the store: {missing[:10]}")
        return [rows[i] for i in wanted]

    def memories(self, ids: Sequence[int]) -> list[MemoryChunk]:
        """The memory chunks of passages, in order: views of the mapped shards (dequantised copies for int8).

        Each chunk's ``meta["stored_nbytes"]`` is the bytes it takes in its shard.
        """
        wanted = check_ids(ids)
        try:
            return self._read_memories(wanted)
        except ShardMissing:  # compact() swapped shards between our read of the rows and of the file
            return self._read_memories(wanted)

    def _read_memories(self, ids: list[int]) -> list[MemoryChunk]:
        with self._manifest.snapshot():
            passages = self.get(ids)
            memory_rows = self._manifest.memory_rows([p.hash for p in passages])
        chunks = []
        for p in passages:
            row = memory_rows.get(p.hash)
            if row is None:
                raise StoreCorrupted(f"{self.path / MANIFEST}: passage {p.id} has no memory row")
            stored = self.memory_tensors(row)
            meta = {**row.meta, "stored_nbytes": row.nbytes}
            named = {n.rsplit(".", 1)[1]: t for n, t in stored.items()}
            try:
                chunk = unpack_chunk(named, row.length, row.pos_offset, self.fingerprint, meta)
            except (KeyError, ValueError, RuntimeError, IndexError) as e:
                raise StoreCorrupted(f"{self.path / SHARDS / row.shard}: memory {row.hash} is malformed ({e})") from e
            chunks.append(chunk)
        return chunks

    def memory_tensors(self, row: MemoryRow) -> dict[str, torch.Tensor]:
        """A memory's stored tensors by full name (``<hash>.<suffix>``), CRC-checked."""
        shard = self._shard(row.shard)
        names = [f"{row.hash}.{s}" for s in SUFFIXES if f"{row.hash}.{s}" in shard]
        if shard.crc(names) != row.crc:
            raise StoreCorrupted(f"{shard.path}: memory {row.hash} fails its checksum (corrupted shard)")
        return {n: shard.tensor(n) for n in names}

    def _shard(self, name: str) -> ShardReader:
        with self._mutex:
            reader = self._shards.pop(name, None)
            if reader is None:
                path = self.path / SHARDS / name
                if not path.is_file():
                    raise ShardMissing(f"{path}: shard listed in the manifest is missing")
                reader = ShardReader(path)
            self._shards[name] = reader
            while len(self._shards) > 32:
                self._shards.popitem(last=False)
            return reader

    # ================================================================== inspection
    def disk_bytes(self, sub: str = "") -> int:
        """Bytes of the files under the store directory (or one of its sub-directories)."""
        return sum(f.stat().st_size for f in self.path.joinpath(sub).rglob("*") if f.is_file())

    def stats(self) -> dict:
        """Counts, sizes and the compression figures of the store."""
        return store_stats(self)

    def verify(self, *, progress: bool = False) -> VerifyReport:
        """Check every byte that can change an answer or a source: the manifest (SQLite structure, every
        row's digest, texts against their content hashes), every shard's sha256 (and, in a damaged
        shard, each memory's CRC), and the index file's sha256 and contents against the manifest."""
        return verify_store(self, progress=progress)

    def repair(self, *, progress: bool = False) -> RepairReport:
        """Redo what :meth:`verify` finds damaged from what is intact; see :mod:`sac_rag.store.repair`."""
        return repair_store(self, progress=progress)
