"""The LlamaIndex packages together on a tiny model: query engines over FAISS and a memory store.

Each package's own tests (``integrations/llama-index-*-sac/tests``) test its class alone.
"""

from __future__ import annotations

import asyncio

import faiss
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.vector_stores.faiss import FaissVectorStore

from llama_index.embeddings.sac import SACEmbedding
from llama_index.llms.sac import SACLLM
from llama_index.postprocessor.sac import SACCompressor
from llama_index.retrievers.sac import SACStoreRetriever
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.store import MemoryStore
from sac_rag.testing import (
    CORPUS,
    METADATA,
    HashingEmbedder,
    expected_answer,
    slow_model,
    ticks_during,
    tiny_session,
)

QUESTION = "Where was Alan Turing born?"
TOKENS = 6


@pytest.fixture(scope="module")
def session():
    return tiny_session(max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def embed_model():
    return SACEmbedding(HashingEmbedder())


@pytest.fixture(scope="module")
def index(embed_model):
    docs = [Document(text=t, metadata=m, id_=f"d{i}") for i, (t, m) in enumerate(zip(CORPUS, METADATA))]
    return VectorStoreIndex.from_documents(docs, embed_model=embed_model)


def engine(index, session, **kwargs):
    kwargs.setdefault("similarity_top_k", 2)
    llm = SACLLM(session, max_new_tokens=TOKENS)
    return index.as_query_engine(llm=llm, node_postprocessors=[SACCompressor(session)], **kwargs)


class PromptSpy:
    """Records the prompts the session is asked to answer."""

    def __init__(self, session: SACSession, monkeypatch) -> None:
        self.prompts: list[str] = []
        for name in ("generate", "stream", "agenerate", "astream"):
            original = getattr(session, name)
            monkeypatch.setattr(session, name, self._spy(original))

    def _spy(self, original):
        def spy(prompt, **kwargs):
            self.prompts.append(prompt)
            return original(prompt, **kwargs)

        return spy


def check_answer(session, response, prompt):
    refs = {n.node.text: n.node.metadata["sac_text"] for n in response.source_nodes}
    for ref in refs:
        assert ref in prompt
    assert QUESTION in prompt and not any(text in prompt for text in refs.values())
    assert str(response) == expected_answer(session.model, prompt, refs, TOKENS)


def test_query_engine_answers_from_memory(index, session, monkeypatch):
    spy = PromptSpy(session, monkeypatch)
    response = engine(index, session).query(QUESTION)
    assert len(spy.prompts) == 1 and len(response.source_nodes) == 2
    top = response.source_nodes[0]
    assert top.node.metadata["source"] == "doc1.txt" and top.node.metadata["tags"] == ["a", "b"]
    assert top.score == pytest.approx(max(n.score for n in response.source_nodes))
    check_answer(session, response, spy.prompts[0])


def test_streaming_query_equals_plain_answer(index, session):
    plain = str(engine(index, session).query(QUESTION))
    streamed = engine(index, session, streaming=True).query(QUESTION)
    assert "".join(streamed.response_gen) == plain


def test_async_query_does_not_block_the_loop(index, session):
    plain = str(engine(index, session).query(QUESTION))
    with slow_model(session, 0.4):
        response, ticks = asyncio.run(ticks_during(engine(index, session).aquery(QUESTION)))
    assert str(response) == plain and ticks >= 15


def test_faiss_index_persisted_and_reloaded(tmp_path, embed_model, session, monkeypatch):
    docs = [Document(text=t, metadata=m, id_=f"d{i}") for i, (t, m) in enumerate(zip(CORPUS, METADATA))]
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(HashingEmbedder().dim))
    ctx = StorageContext.from_defaults(vector_store=store)
    first = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=embed_model)
    first.storage_context.persist(persist_dir=tmp_path)
    before = engine(first, session).query(QUESTION)

    reloaded_store = FaissVectorStore.from_persist_dir(str(tmp_path))
    ctx = StorageContext.from_defaults(vector_store=reloaded_store, persist_dir=str(tmp_path))
    index = load_index_from_storage(ctx, embed_model=embed_model)
    spy = PromptSpy(session, monkeypatch)
    after = engine(index, session).query(QUESTION)
    assert [n.node.metadata["sac_text"] for n in after.source_nodes] == [
        n.node.metadata["sac_text"] for n in before.source_nodes
    ]
    assert after.source_nodes[0].node.metadata["sac_text"] == CORPUS[1]
    assert str(after) == str(before)
    check_answer(session, after, spy.prompts[0])


def test_lookalike_references_are_refused(index, session, embed_model):
    real = session.attach([CORPUS[2]])[0].reference  # signed, but not retrieved for this question
    foreign = SACSession(session.model).attach([CORPUS[2]])[0].reference
    for fake in [real[:-3] + "00⟧", foreign, f"⟦sac:000000000000:{'0' * 32}⟧"]:
        with pytest.raises(ForgedReferenceError):
            engine(index, session).query(f"{QUESTION} {fake}")
    # A document whose metadata (shown to the LLM) carries a look-alike: refused too.
    doc = Document(text=CORPUS[1], metadata={"note": foreign})
    bad = VectorStoreIndex.from_documents([doc], embed_model=embed_model)
    with pytest.raises(ForgedReferenceError):
        engine(bad, session, similarity_top_k=1).query(QUESTION)
    # In "literal" mode look-alikes stay text: only the retrieved memory is decoded.
    literal = tiny_session(on_invalid="literal", max_new_tokens=TOKENS)
    literal.model = session.model
    segments = []
    original = literal.model.generate

    def record(segs, **kw):
        segments.extend(segs)
        return original(segs, **kw)

    literal.model.generate = record
    try:
        engine(bad, literal, similarity_top_k=1).query(QUESTION)
    finally:
        del literal.model.generate
    chunks = [s for s in segments if not isinstance(s, str)]
    assert len(chunks) == 1 and any(foreign in s for s in segments if isinstance(s, str))


def test_memory_store_path(tmp_path, session):
    store = MemoryStore.create(tmp_path / "store", session.model, embedder=HashingEmbedder())
    store.add(CORPUS, METADATA, progress=False)
    with_store = SACSession(session.model, store=store, max_new_tokens=TOKENS)
    comp = SACCompressor(with_store)
    query_engine = RetrieverQueryEngine.from_args(
        SACStoreRetriever(store, similarity_top_k=2),
        llm=SACLLM(with_store, max_new_tokens=TOKENS),
        node_postprocessors=[comp],
    )
    response = query_engine.query(QUESTION)
    assert comp.last_report.from_store == 2 and comp.last_report.compressed == 0
    top = response.source_nodes[0].node
    assert top.metadata["sac_text"] == CORPUS[1] and top.metadata["source"] == "doc1.txt"
    chunk = with_store.registry.entry(top.text).chunk
    stored = store.memories([top.metadata["sac_id"]])[0]
    assert chunk.dtype == stored.dtype and chunk.length == stored.length
    store.close()


def test_references_survive_repacking_into_several_refine_calls(index, session, monkeypatch):
    spy = PromptSpy(session, monkeypatch)
    llm = SACLLM(
        session, max_new_tokens=TOKENS, context_window=700
    )  # the refine template takes ~570: ~2 nodes per call
    query_engine = index.as_query_engine(llm=llm, node_postprocessors=[SACCompressor(session)], similarity_top_k=4)
    response = query_engine.query(QUESTION)
    assert len(response.source_nodes) == 4 and len(spy.prompts) >= 2
    refs = {n.node.text for n in response.source_nodes}
    seen = [r for p in spy.prompts for r in session.registry.references_in(p)]
    assert set(seen) == refs  # every reference reached the LLM whole
    for p in spy.prompts:
        rest = p
        for r in refs:
            rest = rest.replace(r, "")
        assert "⟦" not in rest and "⟧" not in rest  # no cut reference left behind
