"""LangChain integration end to end on a tiny model: SACRetriever, ChatSAC, LCEL chains, standard tests."""

from __future__ import annotations

import asyncio
import functools
import json

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from test_integration_support import (
    CORPUS,
    FOREIGN_STORE_IDS,
    METADATA,
    UPLOADED,
    HashingEmbedder,
    assert_memory_is_own_text,
    corpus_store,
    expected_answer,
    slow_model,
    ticks_during,
    tiny_session,
)

from langchain_sac import ChatSAC, SACEmbeddings, SACRetriever, format_documents, messages_to_prompt
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.store import MemoryStore

QUESTION = "Where was Alan Turing born?"
TOKENS = 6
TEMPLATE = "Answer from the context.\nContext:\n{context}\nQuestion: {question}\nAnswer:"


@functools.cache
def shared_session() -> SACSession:
    return tiny_session(max_new_tokens=TOKENS)


@functools.cache
def vector_store() -> InMemoryVectorStore:
    store = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    metadata = [{**m, "weight": np.float32(0.5)} for m in METADATA]  # not JSON-safe on purpose
    store.add_documents(
        [Document(page_content=t, metadata=m, id=f"d{i}") for i, (t, m) in enumerate(zip(CORPUS, metadata))]
    )
    return store


@pytest.fixture
def session() -> SACSession:
    return shared_session()


def chain(retriever, llm):
    prompt = ChatPromptTemplate.from_template(TEMPLATE)
    return (
        {"context": retriever | format_documents, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
    )


def check_answer(session, docs, answer):
    refs = {d.page_content: d.metadata["sac_text"] for d in docs}
    prompt = TEMPLATE.format(context=format_documents(docs), question=QUESTION)
    assert answer == expected_answer(session.model, prompt, refs, TOKENS)


@pytest.mark.asyncio  # the suite's async test needs it; the sync ones only warn, silenced here
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")
class TestSACRetrieverStandard(RetrieversIntegrationTests):
    """The langchain-tests standard retriever suite."""

    @property
    def retriever_constructor(self) -> type[SACRetriever]:
        return SACRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"session": shared_session(), "base": vector_store(), "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION


def test_documents_carry_references_and_json_safe_metadata(session):
    docs = SACRetriever(session=session, base=vector_store(), k=3).invoke(QUESTION)
    assert len(docs) == 3 and docs[0].id == "d1"
    json.dumps([d.metadata for d in docs])  # JSON-safe
    scores = [d.metadata["sac_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    expected = dict(vector_store().similarity_search_with_score(QUESTION, k=3)[0][0].metadata)
    top = docs[0].metadata
    assert top["source"] == expected["source"] and top["tags"] == ["a", "b"] and top["weight"] == 0.5
    assert top["sac_text"] == CORPUS[1] and top["sac_ref"] == docs[0].page_content
    assert session.registry.entry(docs[0].page_content).chunk.length == top["sac_tokens"]


def test_wraps_any_retriever_and_passes_k(session):
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


def test_lcel_chain_answers_from_memory(session):
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    answer = chain(retriever, llm).invoke(QUESTION)
    docs = retriever.invoke(QUESTION)
    check_answer(session, docs, answer)
    assert "".join(chain(retriever, llm).stream(QUESTION)) == answer
    assert llm._llm_type == "sac"


def test_async_chain_and_chat_model_do_not_block_the_loop(session):
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    answer = chain(retriever, llm).invoke(QUESTION)
    prompt = [HumanMessage(f"{session.attach([CORPUS[3]])[0].reference}\nAnswer:")]

    async def streamed():
        return "".join([c.content async for c in llm.astream(prompt)])

    with slow_model(session, 0.4):
        result, ticks = asyncio.run(ticks_during(chain(retriever, llm).ainvoke(QUESTION)))
        assert result == answer and ticks >= 15
        text, ticks = asyncio.run(ticks_during(streamed()))
        assert ticks >= 15 and text == llm.invoke(prompt).content


def test_async_retriever_compression_runs_in_a_thread():
    session = tiny_session(max_new_tokens=TOKENS)
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    with slow_model(session, 0.4):
        docs, ticks = asyncio.run(ticks_during(retriever.ainvoke(QUESTION)))
    assert ticks >= 15 and len(docs) == 2 and all(d.page_content.startswith("⟦sac:") for d in docs)


def test_lookalike_references_are_refused(session):
    retriever = SACRetriever(session=session, base=vector_store(), k=2)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    unrelated = session.attach([CORPUS[2]])[0].reference
    foreign = SACSession(session.model).attach([CORPUS[2]])[0].reference
    for fake in [unrelated[:-3] + "00⟧", foreign, "⟦SAC:abc⟧"]:
        with pytest.raises(ForgedReferenceError):
            chain(retriever, llm).invoke(f"{QUESTION} {fake}")
        with pytest.raises(ForgedReferenceError):
            asyncio.run(llm.ainvoke(f"hi {fake}"))


def test_messages_to_prompt():
    assert messages_to_prompt([HumanMessage("q?")]) == "q?"
    convo = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("q?")]
    assert messages_to_prompt(convo) == "System: be brief\nUser: hi\nAssistant: hello\nUser: q?\nAssistant:"


def test_memory_store_path(tmp_path, session):
    store = MemoryStore.create(tmp_path / "store", session.model, embedder=HashingEmbedder())
    store.add(CORPUS, METADATA, progress=False)
    with_store = SACSession(session.model, store=store, max_new_tokens=TOKENS)
    retriever = SACRetriever(session=with_store, k=2)
    docs = retriever.invoke(QUESTION)
    assert docs[0].metadata["sac_text"] == CORPUS[1] and docs[0].metadata["sac_id"] == 1
    assert docs[0].metadata["source"] == "doc1.txt" and docs[0].metadata["sac_score"] > docs[1].metadata["sac_score"]
    assert not docs[0].metadata["sac_cached"] and "sac_text_bytes" in docs[0].metadata
    assert asyncio.run(retriever.ainvoke(QUESTION))[0].page_content == docs[0].page_content
    answer = chain(retriever, ChatSAC(session=with_store, max_tokens=TOKENS)).invoke(QUESTION)
    prompt = TEMPLATE.format(context=format_documents(docs), question=QUESTION)
    chunks = store.memories([d.metadata["sac_id"] for d in docs])
    segments = with_store.resolve(prompt)
    assert [s for s in segments if not isinstance(s, str)] == [
        with_store.registry.entry(d.page_content).chunk for d in docs
    ]
    assert all(a.length == b.length for a, b in zip(chunks, [s for s in segments if not isinstance(s, str)]))
    assert answer == session.model.generate(segments, max_new_tokens=TOKENS)
    store.close()


@pytest.mark.parametrize("store_id", FOREIGN_STORE_IDS)
def test_store_ids_from_other_sources_never_pull_stored_memory(tmp_path, session, store_id):
    """Issue 12: a document whose metadata names a store id gets the memory of its own text, never the stored one."""
    store = corpus_store(session, tmp_path / "store")
    with_store = SACSession(session.model, store=store, max_new_tokens=TOKENS)
    uploads = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    uploads.add_documents([Document(UPLOADED, metadata={"sac_id": store_id}), Document(CORPUS[2])])
    retriever = SACRetriever(session=with_store, base=uploads, k=2)
    for docs in (retriever.invoke(QUESTION), asyncio.run(retriever.ainvoke(QUESTION))):
        assert sorted(d.metadata["sac_text"] for d in docs) == sorted([UPLOADED, CORPUS[2]])
        for doc in docs:
            assert_memory_is_own_text(with_store, doc.page_content, doc.metadata["sac_text"])
    store.close()


def test_documents_without_text_pass_through(session):
    empty = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    empty.add_documents([Document("", metadata={"sac_id": 0}, id="e"), Document(CORPUS[1], id="t")])
    docs = SACRetriever(session=session, base=empty, k=2).invoke(QUESTION)
    by_id = {d.id: d for d in docs}
    assert by_id["e"].page_content == "" and "sac_ref" not in by_id["e"].metadata
    assert by_id["t"].page_content.startswith("⟦sac:") and by_id["t"].metadata["sac_text"] == CORPUS[1]


class TestChatSACStandard(ChatModelUnitTests):
    """The langchain-tests standard chat-model unit suite."""

    @property
    def chat_model_class(self) -> type[ChatSAC]:
        return ChatSAC

    @property
    def chat_model_params(self) -> dict:
        return {"session": shared_session()}
