"""``open_store``: the store at a path, single or sharded, whichever is on disk.

It sits in ``scale/`` because it must know :class:`~sac_rag.scale.ShardedStore`, and ``scale/`` imports
``store/`` (never the other way round); what it dispatches on, :func:`sac_rag.store.store_kind`, and the
:class:`~sac_rag.store.PassageStore` protocol it returns are the store layer's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sac_rag.embedding import Embedder
from sac_rag.scale.sharded import ShardedStore
from sac_rag.store import MemoryStore, PassageStore, store_kind
from sac_rag.store.layout import not_a_store


def open_store(
    path: str | Path,
    model=None,
    embedder: Embedder | Callable | str | None = None,
    *,
    nprobe: int = 16,
) -> PassageStore:
    """A :class:`~sac_rag.store.MemoryStore` or a :class:`~sac_rag.scale.ShardedStore`, by what is at ``path``.

    ``model`` and ``embedder`` are checked against the store's as :meth:`MemoryStore.open` checks them (each
    part of a sharded store checks its own); ``nprobe`` is the IVF lists a sharded store probes. Raises
    ``FileNotFoundError`` naming ``path`` when it holds neither kind of store.
    """
    kind = store_kind(path)
    if kind == "sharded":
        return ShardedStore.open(path, model, embedder, nprobe=nprobe)
    if kind == "single":
        return MemoryStore.open(path, model, embedder)
    raise FileNotFoundError(not_a_store(path))
