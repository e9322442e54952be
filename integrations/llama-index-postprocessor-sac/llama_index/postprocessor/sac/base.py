"""SACCompressor: a LlamaIndex node postprocessor that swaps passage text for signed memory references."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from sac_rag.bridge import STORE_ID_KEY, TEXT_KEY, CompressionReport, PassageMemory, SACSession


class SACCompressor(BaseNodePostprocessor):
    """Compresses retrieved nodes into SAC memory and hands the LLM references to it.

    Each returned node is a copy of the input node (same id, score, relationships and metadata)
    whose text is a reference ``⟦sac:…⟧`` signed by the session; ``sac_*`` figures are added to its
    metadata and hidden from the LLM and the embedder. The session's LLM (:class:`SACLLM`) resolves
    the references back into memory. A node whose metadata has ``store_id_key`` takes its memory from
    the session's store only when the store holds exactly the node's text under that id (as for the
    nodes of :class:`~llama_index.retrievers.sac.SACStoreRetriever`); any other id is ignored and the
    node is compressed from its own text. Nodes with no text pass through unchanged. The last batch's
    totals are in :attr:`last_report`.
    """

    keep_text: bool = Field(default=True, description="Keep the original text in metadata (hidden from the LLM).")
    store_id_key: str = Field(default=STORE_ID_KEY, description="Node metadata key holding a memory-store id.")

    _session: SACSession = PrivateAttr()
    _last_report: CompressionReport | None = PrivateAttr(default=None)

    def __init__(self, session: SACSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session

    @classmethod
    def class_name(cls) -> str:
        return "SACCompressor"

    @property
    def session(self) -> SACSession:
        return self._session

    @property
    def last_report(self) -> CompressionReport | None:
        """Totals of the most recent batch (passages, bytes, tokens, seconds)."""
        return self._last_report

    def _inputs(self, nodes: list[NodeWithScore]) -> tuple[list[int], list[str], list[Any]]:
        picked, texts, ids = [], [], []
        for i, n in enumerate(nodes):
            text = n.node.get_content(metadata_mode=MetadataMode.NONE)
            if text:
                picked.append(i)
                texts.append(text)
                ids.append(n.node.metadata.get(self.store_id_key))
        return picked, texts, ids

    def _replace(self, nws: NodeWithScore, memory: PassageMemory, text: str) -> NodeWithScore:
        node = nws.node
        extra = dict(memory.figures)
        if self.keep_text:
            extra[TEXT_KEY] = text
        hidden = [k for k in extra if k not in node.excluded_llm_metadata_keys]
        new = node.model_copy(
            update={
                "text": memory.reference,
                "metadata": {**node.metadata, **extra},
                "excluded_llm_metadata_keys": [*node.excluded_llm_metadata_keys, *hidden],
                "excluded_embed_metadata_keys": [
                    *node.excluded_embed_metadata_keys,
                    *(k for k in extra if k not in node.excluded_embed_metadata_keys),
                ],
            }
        )
        return NodeWithScore(node=new, score=nws.score)

    def _finish(self, nodes, picked, texts, memories, report) -> list[NodeWithScore]:
        self._last_report = report
        out = list(nodes)
        for i, text, memory in zip(picked, texts, memories, strict=True):
            out[i] = self._replace(nodes[i], memory, text)
        return out

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        picked, texts, ids = self._inputs(nodes)
        memories, report = self._session.attach_with_report(texts, ids)
        return self._finish(nodes, picked, texts, memories, report)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        picked, texts, ids = self._inputs(nodes)
        memories, report = await self._session.aattach_with_report(texts, ids)
        return self._finish(nodes, picked, texts, memories, report)
