"""What the package's tests share: a tiny session, a vector store of the test corpus, the LCEL RAG chain."""

from __future__ import annotations

import functools

import numpy as np
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_sac import SACEmbeddings, format_documents
from sac_rag.bridge import SACSession
from sac_rag.testing import CORPUS, METADATA, HashingEmbedder, expected_answer, tiny_session

QUESTION = "Where was Alan Turing born?"
TOKENS = 6
TEMPLATE = "Answer from the context.\nContext:\n{context}\nQuestion: {question}\nAnswer:"


@functools.cache
def shared_session() -> SACSession:
    """One tiny session for the tests that do not change it (its model makes SAC memories)."""
    return tiny_session(max_new_tokens=TOKENS)


@functools.cache
def vector_store() -> InMemoryVectorStore:
    """The test corpus in LangChain's in-memory vector store, ids ``d0``..``d3``, one metadata value not JSON-safe."""
    store = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    metadata = [{**m, "weight": np.float32(0.5)} for m in METADATA]
    store.add_documents(
        [Document(page_content=t, metadata=m, id=f"d{i}") for i, (t, m) in enumerate(zip(CORPUS, metadata))]
    )
    return store


def rag_chain(retriever: Runnable, llm: Runnable) -> Runnable:
    """The LCEL RAG chain of LangChain's tutorials, with ``format_documents`` as its ``format_docs``."""
    prompt = ChatPromptTemplate.from_template(TEMPLATE)
    return (
        {"context": retriever | format_documents, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
    )


def check_answer(session: SACSession, docs: list[Document], answer: str) -> None:
    """``answer`` is what ``SACModel.generate`` says to the chain's prompt over fresh memories of the docs' texts."""
    refs = {d.page_content: d.metadata["sac_text"] for d in docs}
    prompt = TEMPLATE.format(context=format_documents(docs), question=QUESTION)
    assert answer == expected_answer(session.model, prompt, refs, TOKENS)


class SACEmbeddingsParams:
    """How langchain-tests' embeddings suites (unit and integration) build ``SACEmbeddings``: offline, hashing."""

    @property
    def embeddings_class(self) -> type[SACEmbeddings]:
        return SACEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embedder": HashingEmbedder()}
