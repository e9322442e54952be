"""SACStoreRetriever: a LlamaIndex retriever over a ``sac_rag`` MemoryStore (memories already compressed)."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from sac_rag.bridge import STORE_ID_KEY


class SACStoreRetriever(BaseRetriever):
    """Searches a memory store; each node carries its store id in ``metadata["sac_id"]``.

    With :class:`~llama_index.postprocessor.sac.SACCompressor` on a session that has the same store,
    the nodes' memories are read from the store instead of being compressed again.
    """

    def __init__(self, store: Any, similarity_top_k: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.similarity_top_k = similarity_top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.store.search(query_bundle.query_str, self.similarity_top_k)
        return [
            NodeWithScore(
                node=TextNode(
                    id_=f"sac-{h.id}",
                    text=h.text,
                    metadata={**h.metadata, STORE_ID_KEY: h.id},
                    excluded_llm_metadata_keys=[STORE_ID_KEY],
                    excluded_embed_metadata_keys=[STORE_ID_KEY],
                ),
                score=float(h.score),
            )
            for h in hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
