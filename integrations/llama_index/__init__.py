"""LlamaIndex integration: :class:`SACCompressor` (node postprocessor), :class:`SACLLM`, :class:`SACEmbedding`,
:class:`SACStoreRetriever` (over a ``sac_rag.store.MemoryStore``).

Typical use::

    session = SACSession(SACModel.default())
    Settings.embed_model = SACEmbedding()
    index = VectorStoreIndex.from_documents(docs)
    engine = index.as_query_engine(llm=SACLLM(session), node_postprocessors=[SACCompressor(session)])
    print(engine.query("..."))
"""

from integrations.core.session import SACSession
from integrations.llama_index.embedding import SACEmbedding
from integrations.llama_index.llm import SACLLM, SACGenerationError
from integrations.llama_index.postprocessor import SACCompressor
from integrations.llama_index.retriever import SACStoreRetriever

__all__ = ["SACLLM", "SACCompressor", "SACEmbedding", "SACGenerationError", "SACSession", "SACStoreRetriever"]
