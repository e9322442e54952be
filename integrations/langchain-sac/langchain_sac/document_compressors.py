"""SACDocumentCompressor: a LangChain document compressor that swaps passage text for signed memory references."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from sac_rag.bridge import STORE_ID_KEY, TEXT_KEY, CompressionReport, PassageMemory, SACSession, json_safe


def format_documents(docs: list[Document]) -> str:
    """The ``format_docs`` of LCEL RAG chains: the documents' contents (here, references), blank-line separated."""
    return "\n\n".join(doc.page_content for doc in docs)


class SACDocumentCompressor(BaseDocumentCompressor):
    """Compresses retrieved Documents into SAC memory and hands the LLM references to it.

    Use it as the ``base_compressor`` of LangChain's ``ContextualCompressionRetriever`` over any
    retriever, with a :class:`ChatSAC` on the same session answering from the memory. Memories are of
    the session model's memory kind (``SACModel.default(memory_kind=...)``); compressing is
    query-agnostic, so the same passage is compressed once per session and then cached.

    Each Document with text comes back in order as a new Document with the same ``id``, whose
    ``page_content`` is a reference ``⟦sac:…⟧`` signed by ``session`` and whose metadata is the
    source metadata made JSON-safe plus the ``sac_*`` figures and, with ``keep_text``, ``sac_text``
    (the original text). A Document whose metadata has ``store_id_key`` takes its memory from the
    session's store only when the store holds exactly the Document's text under that id; any other
    id is ignored and the Document is compressed from its own text. Documents with no text are
    returned unchanged. The last batch's totals are in :attr:`last_report`; the async method
    compresses in a worker thread, so the event loop keeps running.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: SACSession = Field(exclude=True)
    keep_text: bool = True
    store_id_key: str = STORE_ID_KEY

    _last_report: CompressionReport | None = PrivateAttr(default=None)

    @property
    def last_report(self) -> CompressionReport | None:
        """Totals of the most recent batch (passages, bytes, tokens, seconds)."""
        return self._last_report

    def _inputs(self, docs: list[Document]) -> tuple[list[str], list[Any]]:
        """Texts and store ids of the Documents that have text."""
        with_text = [d for d in docs if d.page_content]
        return [d.page_content for d in with_text], [d.metadata.get(self.store_id_key) for d in with_text]

    def _document(self, doc: Document, memory: PassageMemory) -> Document:
        meta = json_safe(doc.metadata)
        meta.update(memory.figures)
        if self.keep_text:
            meta[TEXT_KEY] = doc.page_content
        return Document(page_content=memory.reference, metadata=meta, id=doc.id)

    def _finish(self, docs: list[Document], memories: list[PassageMemory], report: CompressionReport) -> list[Document]:
        self._last_report = report
        given = iter(memories)
        return [self._document(d, next(given)) if d.page_content else d for d in docs]

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> list[Document]:
        """The Documents with their text replaced by memory references (``query`` unused: memory is query-agnostic)."""
        docs = list(documents)
        return self._finish(docs, *self.session.attach_with_report(*self._inputs(docs)))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> list[Document]:
        """:meth:`compress_documents`, compressing in a worker thread."""
        docs = list(documents)
        return self._finish(docs, *await self.session.aattach_with_report(*self._inputs(docs)))
