"""SACEmbedding: a LlamaIndex embedding model over an offline embedder (MiniLM by default)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr

from integrations.core.embedders import Embedder, MiniLMEmbedder


class SACEmbedding(BaseEmbedding):
    """Wraps an :data:`Embedder` (``texts -> [n, dim]`` array) as a LlamaIndex ``BaseEmbedding``.

    ``SACEmbedding()`` loads the packaged all-MiniLM-L6-v2 (offline); pass ``embedder=`` for another,
    e.g. :class:`integrations.core.HashingEmbedder` in tests. Async methods run in a worker thread.
    """

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", type(embedder).__name__ if embedder is not None else "all-MiniLM-L6-v2")
        super().__init__(**kwargs)
        self._embedder = embedder if embedder is not None else MiniLMEmbedder()

    @classmethod
    def class_name(cls) -> str:
        return "SACEmbedding"

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder(texts).tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
