"""SACStoreRetriever: a LlamaIndex retriever over a sac_rag memory store whose nodes carry their store ids."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import MetadataMode

from llama_index.retrievers.sac import SACStoreRetriever
from sac_rag.bridge import STORE_ID_KEY
from sac_rag.testing import CORPUS, METADATA, corpus_store, tiny_session

QUESTION = "Where was Alan Turing born?"


@pytest.fixture
def store(tmp_path):
    store = corpus_store(tiny_session(), tmp_path / "store")
    yield store
    store.close()


def test_class():
    names_of_base_classes = [b.__name__ for b in SACStoreRetriever.__mro__]
    assert BaseRetriever.__name__ in names_of_base_classes


def test_nodes_are_the_store_hits_with_their_ids(store):
    retriever = SACStoreRetriever(store, similarity_top_k=3)
    nodes = retriever.retrieve(QUESTION)
    hits = store.search(QUESTION, 3)
    assert [n.node.metadata[STORE_ID_KEY] for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    top = nodes[0].node
    assert top.text == CORPUS[1] and top.node_id == "sac-1"
    assert {k: top.metadata[k] for k in METADATA[1]} == METADATA[1]
    assert all(STORE_ID_KEY not in top.get_content(mode) for mode in (MetadataMode.LLM, MetadataMode.EMBED))
    assert len(SACStoreRetriever(store, similarity_top_k=1).retrieve(QUESTION)) == 1


def test_async_retrieval_equals_sync(store):
    retriever = SACStoreRetriever(store, similarity_top_k=2)

    def view(nodes: list) -> list[tuple]:
        return [(n.node.node_id, n.node.text, n.score) for n in nodes]

    assert view(asyncio.run(retriever.aretrieve(QUESTION))) == view(retriever.retrieve(QUESTION))
