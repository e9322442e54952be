"""Large vector indexes: IVF / IVF-PQ FAISS indexes trained on a sample, filled in parts, merged on disk.

Building: :func:`train` an empty index on a sample of the vectors, :func:`add_part` each part of the
vectors into its own copy of it (in parallel, anywhere), then :func:`merge_on_disk` the parts into one
index whose inverted lists live in ``lists.ivfdata`` beside it. Serving: :class:`IVFIndex` opens it
memory-mapped, so a process touches only the lists it probes. Scores are inner products (cosine
similarities of the store's unit vectors), ids the store's passage ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from sac_rag.io import atomic_write
from sac_rag.store.errors import StoreCorrupted

INDEX_FILE = "index.faiss"
LISTS_FILE = "lists.ivfdata"


def _f32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _write(index: faiss.Index, path: Path) -> None:
    atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))


def train(sample: np.ndarray, nlist: int, pq_m: int | None = None, pq_bits: int = 8) -> faiss.Index:
    """An empty IVF index (IVF-PQ with ``pq_m`` sub-quantisers of ``pq_bits``) trained on ``sample``."""
    sample = _f32(sample)
    dim = sample.shape[1]
    if len(sample) < nlist:
        raise ValueError(f"{len(sample)} training vectors for {nlist} lists: give at least as many as lists")
    quantizer = faiss.IndexFlatIP(dim)
    if pq_m is None:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        if dim % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {dim}")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    return index


def save_trained(index: faiss.Index, path: Path) -> Path:
    _write(index, path)
    return path


def add_part(trained: Path, ids: np.ndarray, vectors: np.ndarray, out: Path) -> Path:
    """Add one part of the vectors to a copy of the trained index, written to ``out``."""
    index = faiss.read_index(str(trained))
    if len(ids):
        index.add_with_ids(_f32(vectors), np.asarray(ids, dtype=np.int64))
    _write(index, out)
    return out


def merge_on_disk(trained: Path, parts: Sequence[Path], directory: Path) -> Path:
    """Merge part indexes into ``directory/index.faiss`` with its lists in ``directory/lists.ivfdata``."""
    directory.mkdir(parents=True, exist_ok=True)
    index = faiss.read_index(str(trained))
    lists = directory / LISTS_FILE
    lists.unlink(missing_ok=True)
    merge_ondisk(index, [str(p) for p in parts], str(lists))
    _write(index, directory / INDEX_FILE)
    return directory / INDEX_FILE


class IVFIndex:
    """A served IVF index: memory-mapped from its file (or its on-disk lists), searched with ``nprobe`` lists."""

    def __init__(self, index: faiss.Index, nprobe: int) -> None:
        self.index = index
        self.nprobe = nprobe

    @classmethod
    def load(cls, path: Path, nprobe: int = 16) -> IVFIndex:
        """Open ``path``: its lists are mapped, from ``lists.ivfdata`` beside it if merged on disk."""
        path = Path(path)
        on_disk = (path.parent / LISTS_FILE).is_file()
        # an on-disk-merged index maps lists.ivfdata (found beside the index, wherever the store moved);
        # a plain one maps its own file
        flags = faiss.IO_FLAG_ONDISK_SAME_DIR if on_disk else faiss.IO_FLAG_MMAP
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise StoreCorrupted(f"{path}: unreadable FAISS index ({str(e).splitlines()[0]})") from e
        return cls(index, nprobe)

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    def search_many(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids ``[n, k]`` (id -1 where fewer than ``k`` were found)."""
        faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        return self.index.search(_f32(vectors.reshape(-1, self.dim)), k)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest ids with their scores, best first (as :class:`~sac_rag.store.index.VectorIndex`)."""
        k = min(k, len(self))
        if k == 0:
            return []
        scores, ids = self.search_many(vector, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
