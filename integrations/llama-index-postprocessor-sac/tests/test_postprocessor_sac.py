"""SACCompressor on a tiny model: nodes keep their ids, scores and metadata; text becomes a memory reference."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from llama_index.postprocessor.sac import SACCompressor
from sac_rag.bridge import SACSession
from sac_rag.testing import (
    CORPUS,
    FOREIGN_STORE_IDS,
    METADATA,
    UPLOADED,
    assert_memory_is_own_text,
    corpus_store,
    same_chunk,
    slow_model,
    ticks_during,
    tiny_model,
    tiny_session,
)

QUESTION = "Where was Alan Turing born?"


@pytest.fixture(scope="module")
def session() -> SACSession:
    return tiny_session()


def scored_nodes() -> list[NodeWithScore]:
    nodes = [
        NodeWithScore(
            node=TextNode(id_=f"n{i}", text=t, metadata=dict(m), excluded_llm_metadata_keys=["page"]), score=s
        )
        for i, (t, m, s) in enumerate(zip(CORPUS[:3], METADATA, [0.9, 0.5, None]))
    ]
    return [*nodes, NodeWithScore(node=TextNode(id_="empty", text=""), score=0.1)]


def test_class():
    names_of_base_classes = [b.__name__ for b in SACCompressor.__mro__]
    assert BaseNodePostprocessor.__name__ in names_of_base_classes
    assert SACCompressor.class_name() == "SACCompressor"


def test_nodes_keep_ids_scores_metadata_and_figures_are_hidden(session):
    nodes = scored_nodes()
    comp = SACCompressor(session)
    out = comp.postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["n0", "n1", "n2", "empty"]
    assert [n.score for n in out] == [0.9, 0.5, None, 0.1]
    assert out[3] is nodes[3]  # nothing to compress: passed through
    for before, after in zip(nodes[:3], out[:3]):
        node = after.node
        assert node.text == node.metadata["sac_ref"] and node.text.startswith("⟦sac:")
        assert {k: node.metadata[k] for k in before.node.metadata} == before.node.metadata
        assert node.metadata["sac_text"] == before.node.text and before.node.text in CORPUS  # input untouched
        llm_view = node.get_content(MetadataMode.LLM)
        assert node.text in llm_view and "source: doc" in llm_view
        assert "sac_" not in llm_view and "page" not in llm_view
        assert "sac_" not in node.get_content(MetadataMode.EMBED)
        chunk = session.registry.entry(node.text).chunk
        assert node.metadata["sac_tokens"] == chunk.length and node.metadata["sac_memory_bytes"] == chunk.nbytes
        assert node.metadata["sac_memory_kind"] == "sac"
    report = comp.last_report
    assert report.passages == 3 and report.full_kv_bytes > report.memory_bytes > 0
    assert comp.to_dict()["class_name"] == "SACCompressor" and comp.to_dict()["keep_text"] is True
    hidden = SACCompressor(session, keep_text=False).postprocess_nodes(nodes[:1])
    assert "sac_text" not in hidden[0].node.metadata


def test_async_compression_keeps_the_event_loop_running():
    session = tiny_session()
    nodes = [NodeWithScore(node=TextNode(text="an unseen passage about foxes"), score=1.0)]
    with slow_model(session, 0.4):
        out, ticks = asyncio.run(ticks_during(SACCompressor(session).apostprocess_nodes(nodes, query_str="fox")))
    assert ticks >= 15 and out[0].node.text.startswith("⟦sac:")
    assert same_chunk(session.registry.entry(out[0].node.text).chunk, session.model.compress([nodes[0].node.text])[0])


@pytest.mark.parametrize("kind", ["sac", "compact"])
def test_memories_are_of_the_models_memory_kind(kind):
    model = tiny_model(memory_kind=kind)
    session = tiny_session(model)
    out = SACCompressor(session).postprocess_nodes([NodeWithScore(node=TextNode(text=CORPUS[1]), score=1.0)])
    chunk = session.registry.entry(out[0].node.text).chunk
    assert out[0].node.metadata["sac_memory_kind"] == kind == chunk.meta["kind"]
    assert same_chunk(chunk, model.compress([CORPUS[1]])[0])
    other = "sac" if kind == "compact" else "compact"
    model.set_memory_kind(other)  # one line switches the kind; the cached memory of the other kind is not reused
    again = SACCompressor(session).postprocess_nodes([NodeWithScore(node=TextNode(text=CORPUS[1]), score=1.0)])
    assert again[0].node.metadata["sac_memory_kind"] == other and not again[0].node.metadata["sac_cached"]


def test_stored_memory_is_read_for_the_stored_text(tmp_path, session):
    store = corpus_store(session, tmp_path / "store")
    with_store = SACSession(session.model, store=store)
    comp = SACCompressor(with_store)
    out = comp.postprocess_nodes([NodeWithScore(node=TextNode(text=CORPUS[1], metadata={"sac_id": 1}), score=0.9)])
    assert comp.last_report.from_store == 1 and comp.last_report.compressed == 0
    assert same_chunk(with_store.registry.entry(out[0].node.text).chunk, store.memories([1])[0])
    store.close()


@pytest.mark.parametrize("store_id", FOREIGN_STORE_IDS)
def test_store_ids_from_other_sources_never_pull_stored_memory(tmp_path, session, store_id):
    """Issue 12: a node whose metadata names a store id gets the memory of its own text, never the stored one."""
    store = corpus_store(session, tmp_path / "store")
    with_store = SACSession(session.model, store=store)
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
