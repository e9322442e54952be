"""Distillation targets computed once: a frozen teacher's top-k log-probabilities per example, cached on disk.

The cache is one SQLite file. Each row holds one example's targets, keyed by a digest of the teacher's
input ids and target ids, stored as safetensors bytes (``indices`` [t, k] int32, ``logprobs`` [t, k]
float32: the teacher's log-softmax at temperature 1, so any distillation temperature can be applied
later). The file records which teacher wrote it and its k; opening it for another teacher or another k,
or opening a file that is not such a cache, is an error naming the file. Every write is its own SQLite
transaction, so a killed run loses at most the example it was computing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

FORMAT = "sac_rag.teacher_topk/1"
CACHE_NAME = "teacher_topk.sqlite"  # a run's own cache, in its output directory


class TeacherCacheError(ValueError):
    """A teacher cache file that is corrupt, foreign, or written for another teacher or k."""


@dataclass(frozen=True)
class TopK:
    """A teacher's ``k`` most likely tokens at each of ``t`` target positions, with their log-probabilities."""

    indices: torch.Tensor  # [t, k] int64
    logprobs: torch.Tensor  # [t, k] float32, log-softmax over the whole vocabulary at temperature 1

    @classmethod
    def of(cls, logits: torch.Tensor, k: int) -> TopK:
        """The top ``k`` of ``logits`` [t, vocab]."""
        if not 1 <= k <= logits.shape[-1]:
            raise ValueError(f"k must be between 1 and the vocabulary size {logits.shape[-1]}, got {k}")
        logprobs, indices = torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)
        return cls(indices, logprobs)


def example_key(inputs: Sequence[int], target: Sequence[int]) -> str:
    """The cache key of one example: what the teacher reads and the tokens it is asked about."""
    h = hashlib.sha256()
    h.update(",".join(map(str, inputs)).encode())
    h.update(b"|")
    h.update(",".join(map(str, target)).encode())
    return h.hexdigest()


class TeacherCache:
    """Top-k teacher targets in the SQLite file ``path`` (created when missing), for ``teacher`` at ``k``.

    ``teacher`` is a string identifying the frozen teacher (its weights' digest): a cache only ever
    serves the teacher that filled it.
    """

    def __init__(self, path: str | Path, *, teacher: str, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.path = Path(path)
        self.teacher, self.k = teacher, k
        self.hits = self.misses = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._check_or_init()
        except sqlite3.DatabaseError as e:
            raise TeacherCacheError(f"{self.path}: not a readable teacher cache ({e})") from e

    def _check_or_init(self) -> None:
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with db:
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.execute("CREATE TABLE targets (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
                meta = {"format": FORMAT, "teacher": self.teacher, "k": str(self.k)}
                db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            return
        if tables != {"meta", "targets"}:
            raise TeacherCacheError(f"{self.path}: not a teacher cache (tables {sorted(tables)})")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise TeacherCacheError(f"{self.path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("teacher") != self.teacher or meta.get("k") != str(self.k):
            raise TeacherCacheError(
                f"{self.path} holds the targets of teacher {meta.get('teacher')} at k={meta.get('k')}, "
                f"not of teacher {self.teacher} at k={self.k}; use another cache file"
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM targets").fetchone()[0]

    def get(self, key: str, length: int) -> TopK | None:
        """The targets stored under ``key`` (``length`` target positions), or None."""
        row = self._db.execute("SELECT data FROM targets WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            tensors = load_tensors(row[0])
            top = TopK(tensors["indices"].long(), tensors["logprobs"].float())
        except (SafetensorError, KeyError, RuntimeError) as e:
            raise TeacherCacheError(f"{self.path}: entry {key[:16]} is corrupt ({e})") from e
        if top.indices.shape != (length, self.k) or top.logprobs.shape != top.indices.shape:
            raise TeacherCacheError(
                f"{self.path}: entry {key[:16]} has shape {tuple(top.indices.shape)}, expected ({length}, {self.k})"
            )
        return top

    def put(self, key: str, top: TopK) -> None:
        indices = top.indices.to(torch.int32).contiguous().cpu()
        data = save_tensors({"indices": indices, "logprobs": top.logprobs.float().contiguous().cpu()})
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO targets VALUES (?, ?)", (key, data))

    def lookup(self, inputs: Sequence[int], target: Sequence[int], teacher_logits: Callable[[], torch.Tensor]) -> TopK:
        """The cached targets of this example, or ``teacher_logits()`` [len(target), vocab] reduced to its
        top k, stored, and returned."""
        key = example_key(inputs, target)
        top = self.get(key, len(target))
        if top is not None:
            self.hits += 1
            return top
        self.misses += 1
        top = TopK.of(teacher_logits(), self.k)
        self.put(key, top)
        return top

    def close(self) -> None:
        self._db.close()
