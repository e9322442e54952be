"""Issue 18, class 1: a long-running session never answers from a passage's old text after it is re-indexed.

A store passage attached by its id, then replaced under the same id (``upsert``, as ``sac-rag index`` does
when a file changes), must come back with the new text's memory and a new reference, through the session
and through both framework integrations; the old reference keeps the old memory it was handed out for.
"""

from __future__ import annotations

import pytest
from llama_index.core.schema import QueryBundle

from langchain_sac import SACRetriever
from llama_index.postprocessor.sac import SACCompressor
from llama_index.retrievers.sac import SACStoreRetriever
from sac_rag.bridge import REF_KEY, SACSession
from sac_rag.testing import CORPUS, corpus_store, same_chunk, tiny_session

NEW_TEXT = "Alan Turing was born in 1912 in Maida Vale. He broke ciphers at Bletchley Park."
QUESTION = "Where was Alan Turing born?"


@pytest.fixture
def store_session(tmp_path):
    base = tiny_session()
    store = corpus_store(base, tmp_path / "store")
    session = SACSession(base.model, store=store, max_new_tokens=4)
    turing = next(r.id for r in store.get(store.ids()) if r.text == CORPUS[1])
    yield session, store, turing
    store.close()


def reindex(store, passage_id: int) -> None:
    """Replace the passage under ``passage_id`` with NEW_TEXT, as ``sac-rag index`` does when its file changed."""
    store.upsert([NEW_TEXT], ids=[passage_id], progress=False)


def check_fresh(session: SACSession, store, passage_id: int, old_ref: str, new_ref: str) -> None:
    old_chunk = session.registry.entry(old_ref).chunk
    new_chunk = session.registry.entry(new_ref).chunk
    assert new_ref != old_ref
    assert session.registry.text(new_ref) == NEW_TEXT and session.registry.text(old_ref) == CORPUS[1]
    assert same_chunk(new_chunk, store.memories([passage_id])[0])
    assert not same_chunk(new_chunk, old_chunk)
    # what the LLM side reads for the new reference is the new text's memory
    (segment,) = [s for s in session.resolve(f"context {new_ref} question") if not isinstance(s, str)]
    assert same_chunk(segment, store.memories([passage_id])[0])


def test_session_attach_after_reindex_gives_the_new_memory(store_session):
    session, store, turing = store_session
    (old,) = session.attach([CORPUS[1]], [turing])
    reindex(store, turing)
    (new,) = session.attach([NEW_TEXT], [turing])
    check_fresh(session, store, turing, old.reference, new.reference)
    assert new.figures["sac_cached"] is False
    # the old text under the old id is no longer the stored passage: compressed from its own text
    (again,) = session.attach([CORPUS[1]], [turing])
    assert same_chunk(again.chunk, session.model.compress([CORPUS[1]])[0])


def test_a_passage_replaced_while_its_memory_is_read_is_compressed_from_its_text(store_session):
    session, store, turing = store_session
    read = store.memories

    def racing(ids):  # another writer replaces the passage between the id's check and the memory read
        reindex(store, turing)
        return read(ids)

    store.memories = racing
    try:
        (got,) = session.attach([CORPUS[1]], [turing])
    finally:
        del store.memories
    assert got.figures.get("sac_cached") is False and same_chunk(got.chunk, session.model.compress([CORPUS[1]])[0])


def test_langchain_retriever_after_reindex(store_session):
    session, store, turing = store_session
    retriever = SACRetriever(session=session, k=len(CORPUS))
    old = next(d for d in retriever.invoke(QUESTION) if d.metadata["sac_id"] == turing)
    reindex(store, turing)
    new = next(d for d in retriever.invoke(QUESTION) if d.metadata["sac_id"] == turing)
    assert new.metadata["sac_text"] == NEW_TEXT and new.page_content == new.metadata[REF_KEY]
    check_fresh(session, store, turing, old.page_content, new.page_content)


def test_llama_index_compressor_after_reindex(store_session):
    session, store, turing = store_session
    retriever, compressor = SACStoreRetriever(store, similarity_top_k=len(CORPUS)), SACCompressor(session)

    def turing_node():
        nodes = compressor.postprocess_nodes(retriever.retrieve(QUESTION), QueryBundle(QUESTION))
        return next(n.node for n in nodes if n.node.metadata["sac_id"] == turing)

    old = turing_node()
    reindex(store, turing)
    new = turing_node()
    assert new.metadata["sac_text"] == NEW_TEXT and compressor.last_report.from_store == len(CORPUS)
    check_fresh(session, store, turing, old.text, new.text)
