"""SACRetriever: a LangChain retriever whose Documents carry signed SAC memory references."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_sac.document_compressors import SACDocumentCompressor
from sac_rag.bridge import STORE_ID_KEY, SACSession

SCORE_KEY = "sac_score"


def _scored_search(store: VectorStore, query: str, k: int) -> list[tuple[Document, float | None]]:
    """Relevance scores in [0, 1] where the store defines them, else its raw scores, else none."""
    for method in (store.similarity_search_with_relevance_scores, store.similarity_search_with_score):
        try:
            return list(method(query, k=k))
        except NotImplementedError:
            continue
    return [(d, None) for d in store.similarity_search(query, k=k)]


async def _ascored_search(store: VectorStore, query: str, k: int) -> list[tuple[Document, float | None]]:
    """:func:`_scored_search`, async."""
    for method in (store.asimilarity_search_with_relevance_scores, store.asimilarity_search_with_score):
        try:
            return list(await method(query, k=k))
        except NotImplementedError:
            continue
    return [(d, None) for d in await store.asimilarity_search(query, k=k)]


def _with_score(doc: Document, score: float | None) -> Document:
    """``doc`` with its score in ``sac_score``; unchanged when it has no score or no text."""
    if score is None or not doc.page_content:
        return doc
    return Document(page_content=doc.page_content, metadata={**doc.metadata, SCORE_KEY: float(score)}, id=doc.id)


class SACRetriever(BaseRetriever):
    """Searches a retriever, a vector store, or the session's memory store; returns memory references.

    The search's Documents go through a :class:`SACDocumentCompressor` on ``session`` (same
    ``keep_text`` and ``store_id_key``): each ``page_content`` becomes a reference ``⟦sac:…⟧`` and
    the metadata carries the ``sac_*`` figures, plus ``sac_score`` when the search gives a score. A
    :class:`ChatSAC` on the same session answers from the memory behind the references.

    ``base`` may be a ``BaseRetriever`` (``k`` is passed on when it takes extra arguments, and the
    results are cut to ``k``; a ``score`` in a Document's metadata becomes ``sac_score``), a
    ``VectorStore`` (searched with relevance scores where it defines them, else with its raw
    similarity scores), or None to search ``session.store``, whose hits carry their store id in
    ``sac_id`` so that their memories are read from the store instead of being compressed again.
    Over any other retriever, ``ContextualCompressionRetriever(base_compressor=SACDocumentCompressor(...),
    base_retriever=...)`` is LangChain's own way to the same Documents.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: SACSession = Field(exclude=True)
    base: Any = Field(default=None, exclude=True)
    k: int = Field(default=4, gt=0)
    keep_text: bool = True
    store_id_key: str = STORE_ID_KEY

    _compressor: SACDocumentCompressor = PrivateAttr()

    @model_validator(mode="after")
    def _check_base(self) -> SACRetriever:
        if self.base is None and self.session.store is None:
            raise ValueError("give `base` (a retriever or vector store) or a session with a memory store")
        if self.base is not None and not isinstance(self.base, (BaseRetriever, VectorStore)):
            raise TypeError(f"base must be a BaseRetriever or VectorStore, got {type(self.base).__name__}")
        self._compressor = SACDocumentCompressor(
            session=self.session, keep_text=self.keep_text, store_id_key=self.store_id_key
        )
        return self

    @property
    def compressor(self) -> SACDocumentCompressor:
        """The compressor the found Documents go through (its ``last_report`` holds the last batch's totals)."""
        return self._compressor

    def _from_hits(self, hits: list) -> list[Document]:
        key = self.store_id_key
        return [
            _with_score(Document(page_content=h.text, metadata={**h.metadata, key: h.id}, id=str(h.id)), h.score)
            for h in hits
        ]

    def _search(self, query: str, k: int, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self.base is None:
            return self._from_hits(self.session.store.search(query, k))
        if isinstance(self.base, VectorStore):
            return [_with_score(d, s) for d, s in _scored_search(self.base, query, k)]
        # ``k`` reaches the base retriever only when it takes extra arguments (LangChain drops it otherwise).
        docs = self.base.invoke(query, config={"callbacks": run_manager.get_child()}, k=k)
        return [_with_score(d, d.metadata.get("score")) for d in docs[:k]]

    async def _asearch(self, query: str, k: int, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        if self.base is None:
            return self._from_hits(await asyncio.to_thread(self.session.store.search, query, k))
        if isinstance(self.base, VectorStore):
            return [_with_score(d, s) for d, s in await _ascored_search(self.base, query, k)]
        docs = await self.base.ainvoke(query, config={"callbacks": run_manager.get_child()}, k=k)
        return [_with_score(d, d.metadata.get("score")) for d in docs[:k]]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = self._search(query, k or self.k, run_manager)
        return self._compressor.compress_documents(found, query, callbacks=run_manager.get_child())

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = await self._asearch(query, k or self.k, run_manager)
        return await self._compressor.acompress_documents(found, query, callbacks=run_manager.get_child())
