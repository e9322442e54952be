"""LangChain integration: :class:`SACRetriever`, :class:`ChatSAC`, :class:`SACEmbeddings`.

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

from integrations.core.session import SACSession
from integrations.langchain.chat_model import ChatSAC, messages_to_prompt
from integrations.langchain.embeddings import SACEmbeddings
from integrations.langchain.retriever import SACRetriever, format_documents

__all__ = ["ChatSAC", "SACEmbeddings", "SACRetriever", "SACSession", "format_documents", "messages_to_prompt"]
