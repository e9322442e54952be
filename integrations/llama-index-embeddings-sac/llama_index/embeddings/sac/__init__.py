"""sac_rag's embedders for LlamaIndex: :class:`SACEmbedding` (offline all-MiniLM-L6-v2 by default)."""

from llama_index.embeddings.sac.base import SACEmbedding

__all__ = ["SACEmbedding"]
