"""What inspection and repair need of a store: a Protocol, so that they depend on no store module (no import circle)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from sac_rag.store.manifest import Manifest, MemoryRow


class StoreView(Protocol):
    """The public parts of :class:`~sac_rag.store.MemoryStore` that ``inspect`` and ``repair`` use."""

    path: Path
    dim: int
    memory_dtype: str

    @property
    def manifest(self) -> Manifest: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def embedder_name(self) -> str: ...

    def disk_bytes(self, sub: str = "") -> int: ...

    def index_path(self) -> Path: ...

    def memory_tensors(self, row: MemoryRow) -> dict[str, torch.Tensor]: ...

    def writing(self, *, sync: bool = True, checked: bool = True) -> AbstractContextManager[None]: ...

    def layout_problems(self) -> list[tuple[Path, str]]: ...

    def compress_texts(self, todo: dict[str, str], *, progress: bool = False) -> tuple[dict, list[MemoryRow]]: ...

    def write_shard(self, tensors: dict[str, torch.Tensor]) -> tuple[str, str, int] | None: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def rebuild_index(self, generation: int) -> None: ...
