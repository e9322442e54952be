"""The vector index: FAISS ``IndexIDMap2`` over an exact inner-product index, keyed by stable passage ids.

Embeddings are unit length, so scores are cosine similarities. The index file is a cache of the
manifest's embeddings named by the manifest generation it reflects (``index-<generation>.faiss``);
its sha256 is recorded in the manifest, and a file that is missing, stale or fails its checksum is
rebuilt from the manifest, never used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import faiss
import numpy as np

from sac_rag.io import atomic_write
from sac_rag.store.errors import StoreCorrupted


class VectorIndex:
    """Stable int64 ids -> unit vectors, searched by inner product."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        index = cls(dim)
        index.add(ids, vectors)
        return index

    @classmethod
    def load(cls, path: Path, dim: int, sha256: str) -> VectorIndex:
        """The index in ``path``, read once and checked against its recorded ``sha256`` before it is parsed."""
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreCorrupted(f"{path}: checksum mismatch (damaged index file)")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as e:
            raise StoreCorrupted(f"{path}: unreadable FAISS index ({str(e).splitlines()[0]})") from e
        if index.d != dim or not isinstance(index, faiss.IndexIDMap2):
            raise StoreCorrupted(f"{path}: not this store's index (dim {index.d}, expected {dim})")
        return cls(dim, index)

    def save(self, path: Path) -> tuple[str, int]:
        """Write the index atomically; return the file's sha256 and size."""
        data = faiss.serialize_index(self.index).tobytes()
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        return hashlib.sha256(data).hexdigest(), len(data)

    def __len__(self) -> int:
        return self.index.ntotal

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        """The stored vectors ``[n, dim]``, in the order of :meth:`ids`."""
        flat = faiss.downcast_index(self.index.index)
        return flat.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest ids with their scores, best first (fewer if the index is smaller)."""
        k = min(k, len(self))
        if k == 0:
            return []
        scores, ids = self.index.search(np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
