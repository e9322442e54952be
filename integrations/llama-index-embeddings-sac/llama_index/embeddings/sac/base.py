"""SACEmbedding: a LlamaIndex embedding model over a ``sac_rag.embedding`` embedder (offline MiniLM by default)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr

from sac_rag.embedding import Embedder, resolve_embedder


class SACEmbedding(BaseEmbedding):
    """An embedder as a LlamaIndex ``BaseEmbedding``.

    ``embedder`` is anything :func:`sac_rag.embedding.resolve_embedder` takes: None for the packaged
    all-MiniLM-L6-v2 (offline), a sentence-transformers name or path, an ``Embedder``, or a callable
    ``texts -> [n, dim]``. The same embedder a :class:`~sac_rag.store.MemoryStore` uses fits here.
    Async methods run in a worker thread.
    """

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder | Callable | str | None = None, **kwargs: Any) -> None:
        resolved = resolve_embedder(embedder)
        kwargs.setdefault("model_name", resolved.name)
        super().__init__(**kwargs)
        self._embedder = resolved

    @classmethod
    def class_name(cls) -> str:
        return "SACEmbedding"

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder.embed(texts).tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
