"""Distillation targets computed once: a frozen teacher's top-k log-probabilities per example, cached on disk.

The cache is a directory: ``cache.json`` records which teacher filled it and its k, and each example's
targets are one safetensors file (``indices`` [t, k] int32, ``logprobs`` [t, k] float32: the teacher's
log-softmax at temperature 1, so any distillation temperature can be applied later), named by a digest
of the teacher's input ids and target ids and written atomically: a killed run loses at most the example
it was computing, and runs sharing the cache never see half a file. Opening it for another teacher or
another k, or opening a directory that is not such a cache, is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sac_rag.io import atomic_write, atomic_write_text

FORMAT = "sac_rag.teacher_topk/1"
CACHE_NAME = "teacher_topk"  # a run's own cache, in its output directory
INFO_NAME = "cache.json"


class TeacherCacheError(ValueError):
    """A teacher cache that is corrupt, foreign, or written for another teacher or k."""


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
    """Top-k teacher targets in the directory ``path`` (created when missing), for ``teacher`` at ``k``.

    ``teacher`` is a string identifying the frozen teacher (its weights' digest): a cache only ever
    serves the teacher that filled it.
    """

    def __init__(self, path: str | Path, *, teacher: str, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.path = Path(path)
        self.teacher, self.k = teacher, k
        self.hits = self.misses = 0
        info_path = self.path / INFO_NAME
        if self.path.exists() and not self.path.is_dir():
            raise TeacherCacheError(f"{self.path}: not a teacher cache (a file, not a directory)")
        if not info_path.is_file():
            if self.path.is_dir() and any(self.path.iterdir()):
                raise TeacherCacheError(f"{self.path}: not a teacher cache (no {INFO_NAME}, and not empty)")
            info = {"format": FORMAT, "teacher": teacher, "k": k}
            atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
            return
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TeacherCacheError(f"{info_path}: not a teacher cache record ({e})") from e
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise TeacherCacheError(f"{info_path}: not a teacher cache record (format {FORMAT!r} expected)")
        if info.get("teacher") != teacher or info.get("k") != k:
            raise TeacherCacheError(
                f"{self.path} holds the targets of teacher {info.get('teacher')} at k={info.get('k')}, "
                f"not of teacher {teacher} at k={k}; use another cache directory"
            )

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.safetensors"

    def files(self) -> list[Path]:
        """The files of the cached examples."""
        return list(self.path.glob("*/*.safetensors"))

    def __len__(self) -> int:
        return len(self.files())

    def get(self, key: str, length: int) -> TopK | None:
        """The targets stored under ``key`` (``length`` target positions), or None."""
        file = self._file(key)
        if not file.is_file():
            return None
        try:
            tensors = load_file(file)
            top = TopK(tensors["indices"].long(), tensors["logprobs"].float())
        except (SafetensorError, KeyError, OSError, RuntimeError) as e:
            raise TeacherCacheError(f"{file}: corrupt teacher targets ({e})") from e
        if top.indices.shape != (length, self.k) or top.logprobs.shape != top.indices.shape:
            raise TeacherCacheError(f"{file}: shape {tuple(top.indices.shape)}, expected ({length}, {self.k})")
        return top

    def put(self, key: str, top: TopK) -> None:
        tensors = {
            "indices": top.indices.to(torch.int32).contiguous().cpu(),
            "logprobs": top.logprobs.float().contiguous().cpu(),
        }
        atomic_write(self._file(key), lambda tmp: save_file(tensors, tmp))

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
