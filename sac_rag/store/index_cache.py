"""The store's vector index at the manifest's current generation: loaded from its file when that file's
recorded sha256 matches, else rebuilt from the manifest's (checked) embeddings; saved after each write."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sac_rag.store.errors import StoreCorrupted
from sac_rag.store.index import VectorIndex
from sac_rag.store.layout import discard, regular
from sac_rag.store.manifest import Manifest


class IndexCache:
    """``index-<generation>.faiss`` files in ``directory``, and the index of the latest one in memory."""

    def __init__(self, directory: Path, manifest: Manifest, dim: int) -> None:
        self.directory = directory
        self.manifest = manifest
        self.dim = dim
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._key: tuple | None = None  # (generation, the index record) the index in memory reflects

    def path(self, generation: int | None = None) -> Path:
        """The index file of ``generation`` (default: the manifest's current one; it may not be written yet)."""
        generation = self.manifest.generation() if generation is None else generation
        return self.directory / f"index-{generation:010d}.faiss"

    def current(self) -> VectorIndex:
        """The index at the manifest's current generation: its file if it passes its checksum, else rebuilt.

        The index in memory is kept while the manifest's generation *and* its index record (the sha256 of the
        file its last writer saved) are the ones it was made for: a generation number alone can come back with
        other contents (a manifest restored from an older copy, then written again)."""
        with self._lock:
            key = self._state()
            if self._index is None or key != self._key:
                index = self._load(*key)
                if index is None:
                    with self.manifest.snapshot():
                        key = self._state()
                        index = VectorIndex.build(self.dim, *self.manifest.embeddings(self.dim))
                self._index, self._key = index, key
            return self._index

    def _state(self) -> tuple[int, dict | None]:
        """The manifest's generation and index record (two reads: a write between them only costs a reload)."""
        return self.manifest.generation(), self.manifest.index_record()

    def _load(self, generation: int, record: dict | None) -> VectorIndex | None:
        path = self.path(generation)
        if not (regular(path) and record and record["generation"] == generation):
            return None
        try:
            return VectorIndex.load(path, self.dim, record["sha256"])
        except (StoreCorrupted, FileNotFoundError):
            return None  # a damaged or vanished file is rebuilt, never trusted

    def update(
        self, generation: int, remove: Sequence[int] = (), ids: Sequence[int] = (), vectors: np.ndarray | None = None
    ) -> None:
        """Apply a committed write (ids removed, ids added with their vectors) and save it for ``generation``."""
        with self._lock:
            index = self.current() if self._index is None else self._index
            index.remove(np.asarray(remove, dtype=np.int64))
            if len(ids):
                index.add(np.asarray(ids, dtype=np.int64), vectors)
            self._save(index, generation)

    def rebuild(self, generation: int) -> None:
        """Rebuild the index from the manifest's embeddings and save it for ``generation``."""
        with self._lock:
            self._save(VectorIndex.build(self.dim, *self.manifest.embeddings(self.dim)), generation)

    def _save(self, index: VectorIndex, generation: int) -> None:
        """Write the file atomically, record its sha256, drop older generations' files and killed writes' leftovers.

        Entries are removed by name only (a link, never its target); a directory that holds files is left
        where it is (verify names it), and one in the way of the new file is refused, naming it."""
        path = self.path(generation)
        if os.path.lexists(path) and not regular(path) and not discard(path):
            raise StoreCorrupted(f"{path} is a directory that holds files, where the index file goes: move it away")
        sha256, size = index.save(path)
        self.manifest.record_index(generation, sha256, size)
        self._index, self._key = index, (generation, {"generation": generation, "sha256": sha256, "size": size})
        for old in self.directory.iterdir():
            if old != path:
                discard(old)
