"""Text embedders for retrieval: the offline default, any sentence-transformers model, or a callable."""

from sac_rag.embedding.embedder import (
    DEFAULT_EMBEDDER,
    CallableEmbedder,
    Embedder,
    SentenceTransformerEmbedder,
    resolve_embedder,
)

__all__ = ["DEFAULT_EMBEDDER", "CallableEmbedder", "Embedder", "SentenceTransformerEmbedder", "resolve_embedder"]
