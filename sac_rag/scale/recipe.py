"""Recipes: how a Ray worker builds the compressor and the embedder for itself.

A worker never receives a loaded model: it receives a small picklable recipe (a checkpoint directory or
base-model name, or a module-level factory function) and builds the models once, in its own process,
on its own device. Pickle is only Ray's in-memory transport here; nothing is persisted with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sac_rag.embedding import Embedder, resolve_embedder

ModelSpec = str | Path | Callable[[], object] | None
EmbedderSpec = str | Path | Callable | Embedder | None


@dataclass(frozen=True)
class Recipe:
    """What every worker needs to build: the SAC model and the embedder, as a store is given them.

    ``model``: ``None`` (the offline default), a checkpoint directory or base-model name (as
    ``sac-rag index --model`` takes it), or a zero-argument factory defined at module level.
    ``embedder``: anything :class:`~sac_rag.store.MemoryStore` takes (``None``, a sentence-transformers
    name or path, an :class:`~sac_rag.embedding.Embedder`, or a ``fn(texts) -> array``).
    """

    model: ModelSpec = None
    embedder: EmbedderSpec = None

    def build_model(self):
        """The :class:`~sac_rag.SACModel`, loaded in this process."""
        if callable(self.model):
            return self.model()
        from sac_rag.model import SACModel

        return SACModel.load(self.model)

    def build_embedder(self) -> Embedder:
        return resolve_embedder(self.embedder)
