"""A LlamaIndex retriever over a ``sac_rag`` memory store: :class:`SACStoreRetriever`."""

from llama_index.retrievers.sac.base import SACStoreRetriever

__all__ = ["SACStoreRetriever"]
