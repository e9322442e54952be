"""SACEmbeddings: a LangChain ``Embeddings`` over a ``sac_rag.embedding`` embedder (offline MiniLM by default)."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.embeddings import Embeddings

from sac_rag.embedding import Embedder, resolve_embedder


class SACEmbeddings(Embeddings):
    """An embedder as LangChain ``Embeddings`` (``embedder`` as in :func:`sac_rag.embedding.resolve_embedder`)."""

    def __init__(self, embedder: Embedder | Callable | str | None = None) -> None:
        self.embedder = resolve_embedder(embedder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed([text])[0].tolist()
