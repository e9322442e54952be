"""Opening the store a command names: a single store, or a sharded one (``sac-rag index --ray --shards N``)."""

from __future__ import annotations

from pathlib import Path


def open_store(path: str | Path, model=None, embedder=None):
    """A :class:`~sac_rag.store.MemoryStore` or :class:`~sac_rag.scale.ShardedStore`, whichever is at ``path``;
    both search, read, delete, verify, repair and report stats the same way."""
    from sac_rag.scale.sharded import ShardedStore
    from sac_rag.store import MemoryStore

    if ShardedStore.is_sharded(path):
        return ShardedStore.open(path, model, embedder)
    return MemoryStore.open(path, model, embedder)
