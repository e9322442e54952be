"""The RAG pipeline: retrieve passages from a store (single or sharded), compose their SAC memories, answer."""

from sac_rag.pipeline.rag import SACRAG, Figures, RAGResult

__all__ = ["SACRAG", "Figures", "RAGResult"]
