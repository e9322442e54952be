"""SACRetriever: over a vector store, any retriever, or the session's memory store; in an LCEL chain."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_sac import ChatSAC, SACEmbeddings, SACRetriever, format_documents
from sac_rag.bridge import SACSession
from sac_rag.store import MemoryStore
from sac_rag.testing import CORPUS, METADATA, HashingEmbedder, slow_model, ticks_during, tiny_session

from ..support import QUESTION, TEMPLATE, TOKENS, check_answer, rag_chain, shared_session, vector_store


def test_documents_carry_references_scores_and_json_safe_metadata():
    session = shared_session()
    retriever = SACRetriever(session=session, base=vector_store(), k=3)
    docs = retriever.invoke(QUESTION)
    assert len(docs) == 3 and docs[0].id == "d1"
    json.dumps([d.metadata for d in docs])  # JSON-safe
    scores = [d.metadata["sac_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    expected = vector_store().similarity_search_with_score(QUESTION, k=3)  # it defines no relevance scores
    assert scores == pytest.approx([s for _, s in expected])
    top = docs[0].metadata
    assert top["source"] == "doc1.txt" and top["tags"] == ["a", "b"] and top["weight"] == 0.5
    assert top["sac_text"] == CORPUS[1] and top["sac_ref"] == docs[0].page_content
    assert session.registry.entry(docs[0].page_content).chunk.length == top["sac_tokens"]
    assert retriever.compressor.last_report.passages == 3


def test_wraps_any_retriever_and_passes_k():
    session = shared_session()
    base = vector_store().as_retriever(search_kwargs={"k": 4})
    retriever = SACRetriever(session=session, base=base, k=2)
    assert [d.metadata["sac_text"] for d in retriever.invoke(QUESTION)] == [
        d.page_content for d in base.invoke(QUESTION)[:2]
    ]
    assert len(retriever.invoke(QUESTION, k=1)) == 1
    with pytest.raises(ValueError, match="give `base`"):
        SACRetriever(session=session)
    with pytest.raises(TypeError, match="BaseRetriever or VectorStore"):
        SACRetriever(session=session, base=object())


def test_lcel_chain_answers_from_memory():
    session = shared_session()
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    answer = rag_chain(retriever, llm).invoke(QUESTION)
    check_answer(session, retriever.invoke(QUESTION), answer)
    assert "".join(rag_chain(retriever, llm).stream(QUESTION)) == answer


def test_async_retrieval_and_chain_keep_the_event_loop_running():
    session = tiny_session(max_new_tokens=TOKENS)
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    answer = rag_chain(retriever, ChatSAC(session=session, max_tokens=TOKENS)).invoke(QUESTION)
    fresh = SACRetriever(session=tiny_session(session.model), base=vector_store(), k=2)  # nothing cached yet
    with slow_model(session, 0.4):
        docs, ticks = asyncio.run(ticks_during(fresh.ainvoke(QUESTION)))
        assert ticks >= 15 and len(docs) == 2 and all(d.page_content.startswith("⟦sac:") for d in docs)
        result, ticks = asyncio.run(
            ticks_during(rag_chain(retriever, ChatSAC(session=session, max_tokens=TOKENS)).ainvoke(QUESTION))
        )
        assert result == answer and ticks >= 15


def test_memory_store_path(tmp_path):
    session = shared_session()
    store = MemoryStore.create(tmp_path / "store", session.model, embedder=HashingEmbedder())
    store.add(CORPUS, METADATA, progress=False)
    with_store = SACSession(session.model, store=store, max_new_tokens=TOKENS)
    retriever = SACRetriever(session=with_store, k=2)
    docs = retriever.invoke(QUESTION)
    assert docs[0].metadata["sac_text"] == CORPUS[1] and docs[0].metadata["sac_id"] == 1
    assert docs[0].metadata["source"] == "doc1.txt" and docs[0].metadata["sac_score"] > docs[1].metadata["sac_score"]
    assert retriever.compressor.last_report.from_store == 2 and "sac_text_bytes" in docs[0].metadata
    assert asyncio.run(retriever.ainvoke(QUESTION))[0].page_content == docs[0].page_content
    answer = rag_chain(retriever, ChatSAC(session=with_store, max_tokens=TOKENS)).invoke(QUESTION)
    prompt = TEMPLATE.format(context=format_documents(docs), question=QUESTION)
    segments = with_store.resolve(prompt)
    memories = [s for s in segments if not isinstance(s, str)]
    assert memories == [with_store.registry.entry(d.page_content).chunk for d in docs]
    stored = store.memories([d.metadata["sac_id"] for d in docs])
    assert [m.length for m in memories] == [m.length for m in stored]
    assert answer == session.model.generate(segments, max_new_tokens=TOKENS)
    store.close()


def test_documents_without_text_pass_through():
    empty = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    empty.add_documents([Document("", metadata={"sac_id": 0}, id="e"), Document(CORPUS[1], id="t")])
    docs = SACRetriever(session=shared_session(), base=empty, k=2).invoke(QUESTION)
    by_id = {d.id: d for d in docs}
    assert by_id["e"].page_content == "" and by_id["e"].metadata == {"sac_id": 0}
    assert by_id["t"].page_content.startswith("⟦sac:") and by_id["t"].metadata["sac_text"] == CORPUS[1]
