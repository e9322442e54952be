"""LangChain integration for sac_rag: :class:`SACRetriever`, :class:`ChatSAC`, :class:`SACEmbeddings`.

Typical use::

    session = SACSession(SACModel.default())
    retriever = SACRetriever(session=session, base=vector_store, k=3)
    chain = (
        {"context": retriever | format_documents, "question": RunnablePassthrough()}
        | prompt
        | ChatSAC(session=session)
        | StrOutputParser()
    )
"""

from langchain_sac.chat_models import ChatSAC, messages_to_prompt
from langchain_sac.embeddings import SACEmbeddings
from langchain_sac.retrievers import SACRetriever, format_documents
from sac_rag.bridge import SACSession

__all__ = ["ChatSAC", "SACEmbeddings", "SACRetriever", "SACSession", "format_documents", "messages_to_prompt"]
