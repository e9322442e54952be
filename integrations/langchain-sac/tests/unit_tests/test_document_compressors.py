"""SACDocumentCompressor: LangChain's compressor seam, under ContextualCompressionRetriever in an LCEL chain."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_sac import ChatSAC, SACDocumentCompressor, SACEmbeddings
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.testing import (
    CORPUS,
    FOREIGN_STORE_IDS,
    METADATA,
    UPLOADED,
    HashingEmbedder,
    assert_memory_is_own_text,
    corpus_store,
    same_chunk,
    slow_model,
    ticks_during,
    tiny_model,
    tiny_session,
)

from ..support import QUESTION, TOKENS, check_answer, rag_chain, shared_session, vector_store


def compression_retriever(session: SACSession, k: int = 2) -> ContextualCompressionRetriever:
    return ContextualCompressionRetriever(
        base_compressor=SACDocumentCompressor(session=session),
        base_retriever=vector_store().as_retriever(search_kwargs={"k": k}),
    )


def test_is_a_langchain_document_compressor():
    compressor = SACDocumentCompressor(session=shared_session())
    assert isinstance(compressor, BaseDocumentCompressor)
    assert compressor.keep_text and compressor.store_id_key == "sac_id" and compressor.last_report is None
    assert "session" not in compressor.model_dump()


def test_documents_carry_references_ids_and_json_safe_metadata():
    session = shared_session()
    docs = [
        Document(CORPUS[1], metadata={**METADATA[1], "weight": float("nan")}, id="a"),
        Document("", metadata={"sac_id": 0}, id="empty"),
        Document(CORPUS[2], metadata=METADATA[2], id="b"),
    ]
    compressor = SACDocumentCompressor(session=session)
    out = compressor.compress_documents(docs, QUESTION)
    assert [d.id for d in out] == ["a", "empty", "b"]
    assert out[1] is docs[1]  # no text: returned unchanged
    json.dumps([d.metadata for d in out])
    for before, after in ((docs[0], out[0]), (docs[2], out[2])):
        meta = after.metadata
        assert after.page_content.startswith("⟦sac:") and meta["sac_ref"] == after.page_content
        assert meta["sac_text"] == before.page_content and meta["source"] == before.metadata["source"]
        assert meta["tags"] == ["a", "b"] and meta["sac_memory_kind"] == "sac"
        chunk = session.registry.entry(after.page_content).chunk
        assert meta["sac_tokens"] == chunk.length and meta["sac_memory_bytes"] == chunk.nbytes
        own = session.model.compress([before.page_content])[0]  # alone, not in a batch: equal up to float error
        assert chunk.length == own.length and torch.allclose(chunk.keys, own.keys, atol=1e-5)
    assert out[0].metadata["weight"] is None  # NaN is not JSON
    report = compressor.last_report
    assert report.passages == 2 and report.full_kv_bytes > report.memory_bytes > 0
    again = compressor.compress_documents(docs, "another question entirely")  # memory does not depend on the query
    assert compressor.last_report.cached == 2 and compressor.last_report.compressed == 0
    for first, second in ((out[0], again[0]), (out[2], again[2])):
        assert session.registry.entry(first.page_content).chunk is session.registry.entry(second.page_content).chunk
    plain = SACDocumentCompressor(session=session, keep_text=False).compress_documents(docs[:1], QUESTION)
    assert "sac_text" not in plain[0].metadata and plain[0].page_content.startswith("⟦sac:")


@pytest.mark.parametrize("kind", ["sac", "compact"])
def test_contextual_compression_chain_answers_from_memory(kind):
    """Issue 19: ContextualCompressionRetriever(SACDocumentCompressor, a vector-store retriever) | ChatSAC."""
    session = tiny_session(tiny_model(memory_kind=kind), max_new_tokens=TOKENS)
    retriever = compression_retriever(session)
    llm = ChatSAC(session=session, max_tokens=TOKENS)
    answer = rag_chain(retriever, llm).invoke(QUESTION)
    docs = retriever.invoke(QUESTION)
    assert [d.id for d in docs] == [d.id for d in vector_store().as_retriever(search_kwargs={"k": 2}).invoke(QUESTION)]
    assert docs[0].metadata["sac_text"] == CORPUS[1]
    assert all(d.metadata["sac_memory_kind"] == kind for d in docs)
    assert all(session.registry.entry(d.page_content).chunk.meta["kind"] == kind for d in docs)
    check_answer(session, docs, answer)
    assert "".join(rag_chain(retriever, llm).stream(QUESTION)) == answer


def test_the_memory_kind_follows_the_model():
    """One line switches what the compressor builds; memories of the other kind are never served from the cache."""
    model = tiny_model()
    session = tiny_session(model, max_new_tokens=TOKENS)
    compressor = SACDocumentCompressor(session=session)
    docs = [Document(CORPUS[1], id="t")]
    assert compressor.compress_documents(docs, QUESTION)[0].metadata["sac_memory_kind"] == "sac"
    model.set_memory_kind("compact")
    compact = compressor.compress_documents(docs, QUESTION)[0]
    assert compact.metadata["sac_memory_kind"] == "compact" and not compact.metadata["sac_cached"]
    assert same_chunk(session.registry.entry(compact.page_content).chunk, model.compress([CORPUS[1]])[0])
    answer = rag_chain(compression_retriever(session), ChatSAC(session=session, max_tokens=TOKENS)).invoke(QUESTION)
    check_answer(session, compression_retriever(session).invoke(QUESTION), answer)


def test_async_chain_keeps_the_event_loop_running():
    session = tiny_session(max_new_tokens=TOKENS)
    retriever = compression_retriever(session)
    chain = rag_chain(retriever, ChatSAC(session=session, max_tokens=TOKENS))
    answer = chain.invoke(QUESTION)
    fresh = [Document("an unseen passage about foxes", id="x")]
    with slow_model(session, 0.4):
        result, ticks = asyncio.run(ticks_during(chain.ainvoke(QUESTION)))
        assert result == answer and ticks >= 15
        docs, ticks = asyncio.run(ticks_during(SACDocumentCompressor(session=session).acompress_documents(fresh, "")))
        assert ticks >= 15 and docs[0].page_content.startswith("⟦sac:") and docs[0].id == "x"
    streamed = asyncio.run(_astreamed(chain))
    assert streamed == answer
    check_answer(session, asyncio.run(retriever.ainvoke(QUESTION)), answer)


async def _astreamed(chain) -> str:
    return "".join([piece async for piece in chain.astream(QUESTION)])


def test_stored_memory_is_read_only_for_the_stored_text(tmp_path):
    """A Document with a store id takes the stored memory only when the store holds exactly its text there."""
    base = shared_session()
    store = corpus_store(base, tmp_path / "store")
    session = SACSession(base.model, store=store, max_new_tokens=TOKENS)
    compressor = SACDocumentCompressor(session=session)
    docs = compressor.compress_documents([Document(CORPUS[1], metadata={"sac_id": 1, "source": "x"})], QUESTION)
    assert compressor.last_report.from_store == 1 and docs[0].metadata["sac_id"] == 1
    assert same_chunk(session.registry.entry(docs[0].page_content).chunk, store.memories([1])[0])
    store.close()


@pytest.mark.parametrize("store_id", FOREIGN_STORE_IDS)
def test_store_ids_from_other_sources_never_pull_stored_memory(tmp_path, store_id):
    base = shared_session()
    store = corpus_store(base, tmp_path / "store")
    session = SACSession(base.model, store=store, max_new_tokens=TOKENS)
    uploads = InMemoryVectorStore(SACEmbeddings(HashingEmbedder()))
    uploads.add_documents([Document(UPLOADED, metadata={"sac_id": store_id}), Document(CORPUS[2])])
    retriever = ContextualCompressionRetriever(
        base_compressor=SACDocumentCompressor(session=session), base_retriever=uploads.as_retriever()
    )
    for docs in (retriever.invoke(QUESTION), asyncio.run(retriever.ainvoke(QUESTION))):
        assert sorted(d.metadata["sac_text"] for d in docs) == sorted([UPLOADED, CORPUS[2]])
        for doc in docs:
            assert_memory_is_own_text(session, doc.page_content, doc.metadata["sac_text"])
    store.close()


def test_lookalike_references_are_refused():
    session = shared_session()
    chain = rag_chain(compression_retriever(session), ChatSAC(session=session, max_tokens=TOKENS))
    foreign = SACSession(session.model).attach([CORPUS[2]])[0].reference
    for fake in [foreign, "⟦SAC:abc⟧", f"⟦sac:000000000000:{'0' * 32}⟧"]:
        with pytest.raises(ForgedReferenceError):
            chain.invoke(f"{QUESTION} {fake}")
