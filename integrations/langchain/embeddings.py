"""SACEmbeddings: a LangChain ``Embeddings`` over an offline embedder (MiniLM by default)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from integrations.core.embedders import Embedder, MiniLMEmbedder


class SACEmbeddings(Embeddings):
    """Wraps an :data:`Embedder` (``texts -> [n, dim]`` array); loads the packaged all-MiniLM-L6-v2 by default."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder if embedder is not None else MiniLMEmbedder()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.embedder([text])[0].tolist()
