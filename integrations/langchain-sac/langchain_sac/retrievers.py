"""SACRetriever: a LangChain retriever whose Documents carry signed SAC memory references."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, model_validator

from sac_rag.bridge import STORE_ID_KEY, TEXT_KEY, PassageMemory, SACSession, json_safe

Found = tuple[Document, float | None, Any]  # document, score, memory-store id


def format_documents(docs: list[Document]) -> str:
    """The ``format_docs`` of LCEL RAG chains: the documents' contents (here, references), blank-line separated."""
    return "\n\n".join(doc.page_content for doc in docs)


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


class SACRetriever(BaseRetriever):
    """Wraps a retriever, a vector store, or the session's memory store; returns memory references.

    Each Document's ``page_content`` is a reference ``⟦sac:…⟧`` signed by ``session``; its metadata
    is the source document's metadata made JSON-safe, plus ``sac_score`` (when the source gives a
    score), the ``sac_*`` compression figures and, with ``keep_text``, ``sac_text``. A
    :class:`ChatSAC` on the same session answers from the memory behind the references.

    ``base`` may be a ``BaseRetriever`` (``k`` is passed on when it takes extra arguments, and the
    results are cut to ``k``), a ``VectorStore`` (searched with relevance scores where it defines
    them, else with its raw similarity scores), or None to search ``session.store``.

    A Document whose metadata has ``store_id_key`` takes its memory from the session's store only
    when the store holds exactly the Document's text under that id (as for the hits of
    ``session.store`` itself); any other id is ignored and the Document is compressed from its own
    text. Documents with no text are returned unchanged.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: SACSession = Field(exclude=True)
    base: Any = Field(default=None, exclude=True)
    k: int = Field(default=4, gt=0)
    keep_text: bool = True
    store_id_key: str = STORE_ID_KEY

    @model_validator(mode="after")
    def _check_base(self) -> SACRetriever:
        if self.base is None and self.session.store is None:
            raise ValueError("give `base` (a retriever or vector store) or a session with a memory store")
        if self.base is not None and not isinstance(self.base, (BaseRetriever, VectorStore)):
            raise TypeError(f"base must be a BaseRetriever or VectorStore, got {type(self.base).__name__}")
        return self

    # ----------------------------------------------------------------- search
    def _store_id(self, doc: Document) -> Any:
        return doc.metadata.get(self.store_id_key)

    def _scored(self, pairs: list[tuple[Document, float | None]]) -> list[Found]:
        return [(d, s, self._store_id(d)) for d, s in pairs]

    def _from_base(self, docs: list[Document], k: int) -> list[Found]:
        return [(d, d.metadata.get("score"), self._store_id(d)) for d in docs[:k]]

    def _from_hits(self, hits: list) -> list[Found]:
        key = self.store_id_key
        return [
            (Document(page_content=h.text, metadata={**h.metadata, key: h.id}, id=str(h.id)), h.score, h.id)
            for h in hits
        ]

    def _search(self, query: str, k: int, run_manager: CallbackManagerForRetrieverRun) -> list[Found]:
        if self.base is None:
            return self._from_hits(self.session.store.search(query, k))
        if isinstance(self.base, VectorStore):
            return self._scored(_scored_search(self.base, query, k))
        # ``k`` reaches the base retriever only when it takes extra arguments (LangChain drops it otherwise).
        docs = self.base.invoke(query, config={"callbacks": run_manager.get_child()}, k=k)
        return self._from_base(docs, k)

    async def _asearch(self, query: str, k: int, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Found]:
        if self.base is None:
            return self._from_hits(await asyncio.to_thread(self.session.store.search, query, k))
        if isinstance(self.base, VectorStore):
            return self._scored(await _ascored_search(self.base, query, k))
        docs = await self.base.ainvoke(query, config={"callbacks": run_manager.get_child()}, k=k)
        return self._from_base(docs, k)

    # ----------------------------------------------------------------- documents
    def _document(self, found: Found, memory: PassageMemory) -> Document:
        doc, score, _ = found
        meta = json_safe(doc.metadata)
        if score is not None:
            meta["sac_score"] = json_safe(float(score))
        meta.update(memory.figures)
        if self.keep_text:
            meta[TEXT_KEY] = doc.page_content
        return Document(page_content=memory.reference, metadata=meta, id=doc.id)

    @staticmethod
    def _inputs(found: list[Found]) -> tuple[list[str], list[Any]]:
        """Texts and store ids of the found Documents that have text."""
        with_text = [(d.page_content, sid) for d, _, sid in found if d.page_content]
        return [t for t, _ in with_text], [sid for _, sid in with_text]

    def _documents(self, found: list[Found], memories: list[PassageMemory]) -> list[Document]:
        """The found Documents in order, those with text carrying their memory reference."""
        given = iter(memories)
        return [self._document(f, next(given)) if f[0].page_content else f[0] for f in found]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = self._search(query, k or self.k, run_manager)
        return self._documents(found, self.session.attach(*self._inputs(found)))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        found = await self._asearch(query, k or self.k, run_manager)
        memories, _ = await self.session.aattach_with_report(*self._inputs(found))
        return self._documents(found, memories)
