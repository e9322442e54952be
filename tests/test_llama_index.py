"""LlamaIndex integration end to end on a tiny model: SACCompressor, SACLLM, FAISS, memory store."""

from __future__ import annotations

import asyncio

import faiss
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.vector_stores.faiss import FaissVectorStore
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

from llama_index.embeddings.sac import SACEmbedding
from llama_index.llms.sac import SACLLM
from llama_index.postprocessor.sac import SACCompressor
from llama_index.retrievers.sac import SACStoreRetriever
from sac_rag.bridge import ForgedReferenceError, SACSession
from sac_rag.store import MemoryStore

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


def test_compressor_keeps_ids_scores_metadata_and_hides_figures(session):
    nodes = [
        NodeWithScore(
            node=TextNode(id_=f"n{i}", text=t, metadata=dict(m), excluded_llm_metadata_keys=["page"]), score=s
        )
        for i, (t, m, s) in enumerate(zip(CORPUS[:3], METADATA, [0.9, 0.5, None]))
    ]
    nodes.append(NodeWithScore(node=TextNode(id_="empty", text=""), score=0.1))
    comp = SACCompressor(session)
    out = comp.postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["n0", "n1", "n2", "empty"]
    assert [n.score for n in out] == [0.9, 0.5, None, 0.1]
    assert out[3] is nodes[3]  # nothing to compress: passed through
    for before, after in zip(nodes[:3], out[:3]):
        node = after.node
        assert node.text == node.metadata["sac_ref"] and node.text.startswith("⟦sac:")
        assert {k: node.metadata[k] for k in before.node.metadata} == before.node.metadata
        assert node.metadata["sac_text"] == before.node.text
        assert before.node.text.startswith(CORPUS[0][:5]) or before.node.text in CORPUS  # input untouched
        llm_view = node.get_content(MetadataMode.LLM)
        assert node.text in llm_view and "source: doc" in llm_view
        assert "sac_" not in llm_view and "page" not in llm_view
        assert "sac_" not in node.get_content(MetadataMode.EMBED)
        chunk = session.registry.entry(node.text).chunk
        assert node.metadata["sac_tokens"] == chunk.length and node.metadata["sac_memory_bytes"] == chunk.nbytes
    report = comp.last_report
    assert report.passages == 3 and report.full_kv_bytes > report.memory_bytes > 0
    assert comp.to_dict()["class_name"] == "SACCompressor" and comp.to_dict()["keep_text"] is True
    assert SACLLM.class_name() == "SACLLM" and SACLLM(session).metadata.num_output == 64


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


def test_async_query_and_llm_do_not_block_the_loop(index, session):
    plain = str(engine(index, session).query(QUESTION))
    llm = SACLLM(session, max_new_tokens=TOKENS)
    prompt = f"{session.attach([CORPUS[0]])[0].reference}\nAnswer:"

    async def stream_text():
        return "".join([r.delta async for r in await llm.astream_complete(prompt, formatted=True)])

    async def chat_text():
        from llama_index.core.llms import ChatMessage

        return (await llm.achat([ChatMessage(role="user", content=prompt)])).message.content

    with slow_model(session, 0.4):
        response, ticks = asyncio.run(ticks_during(engine(index, session).aquery(QUESTION)))
        assert str(response) == plain and ticks >= 15
        completion, ticks = asyncio.run(ticks_during(llm.acomplete(prompt, formatted=True)))
        assert ticks >= 15
        streamed, ticks = asyncio.run(ticks_during(stream_text()))
        assert streamed == completion.text and ticks >= 15
        _, ticks = asyncio.run(ticks_during(chat_text()))
        assert ticks >= 15
        nodes = [NodeWithScore(node=TextNode(text="an unseen passage about foxes"), score=1.0)]
        _, ticks = asyncio.run(ticks_during(SACCompressor(session).apostprocess_nodes(nodes, query_str="fox")))
        assert ticks >= 15
    assert completion.text == llm.complete(prompt, formatted=True).text


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


@pytest.mark.parametrize("store_id", FOREIGN_STORE_IDS)
def test_store_ids_from_other_sources_never_pull_stored_memory(tmp_path, session, store_id):
    """Issue 12: a node whose metadata names a store id gets the memory of its own text, never the stored one."""
    store = corpus_store(session, tmp_path / "store")
    with_store = SACSession(session.model, store=store, max_new_tokens=TOKENS)
    nodes = [
        NodeWithScore(node=TextNode(text=UPLOADED, metadata={"sac_id": store_id}), score=0.9),
        NodeWithScore(node=TextNode(text=CORPUS[2]), score=0.5),
    ]
    comp = SACCompressor(with_store)
    for out in (comp.postprocess_nodes(nodes), asyncio.run(comp.apostprocess_nodes(nodes))):
        assert comp.last_report.from_store == 0 and comp.last_report.passages == 2
        assert [n.node.metadata["sac_text"] for n in out] == [UPLOADED, CORPUS[2]]
        for n in out:
            assert_memory_is_own_text(with_store, n.node.text, n.node.metadata["sac_text"])
    store.close()


def test_nodes_without_text_pass_through(session):
    empty = NodeWithScore(node=TextNode(text="", metadata={"sac_id": 0}), score=0.9)
    full = NodeWithScore(node=TextNode(text=CORPUS[1]), score=0.8)
    out = SACCompressor(session).postprocess_nodes([empty, full])
    assert out[0] is empty and out[1].node.text.startswith("⟦sac:")


def test_model_errors_are_not_swallowed_into_empty_response(index, session):
    from llama_index.llms.sac import SACGenerationError

    chunk = session.model.compress([CORPUS[1]])[0]
    chunk.fingerprint = "another-compressor"  # memory the decoder must refuse
    ref = session.registry.register(chunk)
    with pytest.raises(SACGenerationError, match="re-compress"):
        SACLLM(session).complete(f"{ref}\nAnswer:", formatted=True)


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
