"""LangChain integration for sac_rag: :class:`SACDocumentCompressor`, :class:`SACRetriever`, :class:`ChatSAC`,
:class:`SACEmbeddings`.

Typical use, over any LangChain retriever::

    session = SACSession(SACModel.default())  # SACModel.default(memory_kind="sac"): SAC memories instead
    retriever = ContextualCompressionRetriever(
        base_compressor=SACDocumentCompressor(session=session), base_retriever=vector_store.as_retriever()
    )
    chain = (
        {"context": retriever | format_documents, "question": RunnablePassthrough()}
        | prompt
        | ChatSAC(session=session)
        | StrOutputParser()
    )
"""

from langchain_sac.chat_models import ChatSAC, messages_to_prompt
from langchain_sac.document_compressors import SACDocumentCompressor, format_documents
from langchain_sac.embeddings import SACEmbeddings
from langchain_sac.retrievers import SACRetriever
from sac_rag.bridge import SACSession

__all__ = [
    "ChatSAC",
    "SACDocumentCompressor",
    "SACEmbeddings",
    "SACRetriever",
    "SACSession",
    "format_documents",
    "messages_to_prompt",
]
