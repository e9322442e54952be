"""The framework-neutral core: signed references, registry, session (tiny model)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from sac_rag import MemoryChunk
from sac_rag.bridge import (
    ForgedReferenceError,
    MemoryRegistry,
    ReferenceSigner,
    SACSession,
    UnresolvableReferenceError,
    json_safe,
    verified_store_ids,
)
from sac_rag.store import MemoryStore
from sac_rag.testing import CORPUS, HashingEmbedder, same_chunk, slow_model, ticks_during, tiny_session


@pytest.fixture(scope="module")
def session():
    return tiny_session()


def fake_chunk(length: int = 10) -> MemoryChunk:
    return MemoryChunk(torch.zeros(2, 2, 2, 16), torch.zeros(2, 2, 2, 16), torch.tensor([4, 9]), length)


# ----------------------------------------------------------------- references
def test_signer_verifies_its_own_references_only():
    signer = ReferenceSigner()
    ref_id, ref = signer.new_reference()
    assert signer.verify(ref) == ref_id
    assert ReferenceSigner().verify(ref) is None  # another session's key
    tampered = ref[:-3] + ("0" if ref[-3] != "0" else "1") + ref[-2:]
    assert signer.verify(tampered) is None
    other_id = ("f" if ref_id[0] != "f" else "e") + ref_id[1:]
    assert signer.verify(ref.replace(ref_id, other_id)) is None  # a valid tag moved to another id
    assert signer.verify("⟦sac:1234⟧") is None
    with pytest.raises(ValueError):
        ReferenceSigner(b"short")


def test_registry_resolves_prompt_into_segments():
    reg = MemoryRegistry()
    a, b = fake_chunk(), fake_chunk(12)
    ra, rb = reg.register(a), reg.register(b)
    segs = reg.resolve(f"Context:\n{ra}\n\n{rb}{ra}\nQ: x?")
    assert segs[0] == "Context:\n" and segs[1] is a and segs[2] == "\n\n" and segs[3] is b and segs[4] is a
    assert segs[5] == "\nQ: x?"
    assert reg.resolve("no refs at all") == ["no refs at all"]
    assert reg.resolve(ra) == [a]
    assert reg.references_in(f"x {ra} y ⟦sac:000000000000:{'0' * 32}⟧") == [ra]


def test_lookalike_and_foreign_references_never_pull_memory():
    reg = MemoryRegistry()
    ra = reg.register(fake_chunk())
    other = MemoryRegistry()
    foreign = other.register(fake_chunk())
    lookalikes = [foreign, f"⟦sac:000000000000:{'0' * 32}⟧", "⟦sac:abc⟧", ra[:-2] + "x⟧", ra.upper()]
    for fake in lookalikes:
        with pytest.raises(ForgedReferenceError):
            reg.resolve(f"What is {fake}?")
    literal = MemoryRegistry(on_invalid="literal")
    rl = literal.register(fake_chunk())
    for fake in [*lookalikes[:4], foreign]:
        segs = literal.resolve(f"What is {fake}? {rl}")
        assert segs[0] == f"What is {fake}? "  # kept verbatim as text
        assert sum(isinstance(s, MemoryChunk) for s in segs) == 1  # only the one it was given


def test_evicted_reference_is_a_clear_error_and_keys_reuse_references():
    reg = MemoryRegistry(capacity=2)
    first = reg.register(fake_chunk(), key="k1")
    assert reg.register(fake_chunk(), key="k1") == first
    reg.register(fake_chunk(), key="k2")
    reg.register(fake_chunk(), key="k3")
    assert len(reg) == 2
    with pytest.raises(UnresolvableReferenceError, match="no longer held"):
        reg.resolve(f"x {first}")
    with pytest.raises(ValueError):
        MemoryRegistry(on_invalid="ignore")


# ----------------------------------------------------------------- session
def test_attach_compresses_once_and_reports(session):
    fresh = session.model.compress(CORPUS[:2])
    mems, report = session.attach_with_report([CORPUS[0], CORPUS[1], CORPUS[0]])
    for mem, expected in zip(mems, [fresh[0], fresh[1], fresh[0]]):
        assert same_chunk(mem.chunk, expected)
        assert session.resolve(mem.reference) == [mem.chunk]
    assert mems[0].reference == mems[2].reference
    assert report.passages == 3 and report.compressed + report.cached == 3
    assert report.tokens == 2 * fresh[0].length + fresh[1].length
    assert report.memory_bytes < report.full_kv_bytes and report.kv_bytes_saved > 0
    f = mems[1].figures
    assert f["sac_tokens"] == fresh[1].length and f["sac_anchors"] == fresh[1].n_anchors
    assert f["sac_memory_bytes"] == fresh[1].nbytes and f["sac_text_bytes"] == len(CORPUS[1].encode())
    again = session.attach([CORPUS[1]])[0]
    assert again.figures["sac_cached"] and again.chunk is mems[1].chunk
    with pytest.raises(ValueError, match="no text"):
        session.attach([""])


def test_generate_equals_model_generate_on_the_same_segments(session):
    a, b = session.attach(CORPUS[:2])
    prompt = f"Context:\n{a.reference}\n{b.reference}\nQuestion: who?\nAnswer:"
    expected = session.model.generate(
        ["Context:\n", a.chunk, "\n", b.chunk, "\nQuestion: who?\nAnswer:"], max_new_tokens=6
    )
    assert session.generate(prompt) == expected
    assert "".join(session.stream(prompt)) == expected
    digit = "1" if a.reference[-2] == "0" else "0"  # a changed signature digit (the key is random)
    with pytest.raises(ForgedReferenceError):
        session.generate(prompt.replace(a.reference, a.reference[:-2] + digit + "⟧"))


def test_stop_strings_cut_the_answer(session):
    prompt = f"{session.attach(CORPUS[:1])[0].reference}\nAnswer:"
    full = session.generate(prompt, max_new_tokens=12)
    assert len(full) > 3
    stop = full[2:4]
    cut = full[: full.find(stop)]
    assert session.generate(prompt, max_new_tokens=12, stop=[stop]) == cut
    assert "".join(session.stream(prompt, max_new_tokens=12, stop=[stop, "never"])) == cut


@pytest.fixture
def store_session(session, tmp_path):
    """A session over a store holding CORPUS[:2]; yields the session and the passages' ids."""
    store = MemoryStore.create(tmp_path / "store", session.model, embedder=HashingEmbedder())
    ids = store.add(CORPUS[:2], progress=False)
    yield SACSession(session.model, store=store, max_new_tokens=6), ids
    store.close()


def count_compressions(monkeypatch, model) -> list[list[str]]:
    """The batches ``model.compress`` is called with, recorded from now on."""
    calls, compress = [], model.compress
    monkeypatch.setattr(model, "compress", lambda texts, **kw: calls.append(list(texts)) or compress(texts, **kw))
    return calls


def test_store_memories_are_used_without_compressing(store_session, monkeypatch):
    with_store, ids = store_session
    store = with_store.store
    calls = count_compressions(monkeypatch, with_store.model)
    texts = [CORPUS[1], CORPUS[2], CORPUS[0], CORPUS[1]]
    mems, report = with_store.attach_with_report(texts, [ids[1], None, ids[0], ids[1]])
    monkeypatch.undo()
    assert calls == [[CORPUS[2]]]  # only the passage without a store id was compressed
    assert report.from_store == 3 and report.compressed == 1
    for mem, sid in [(mems[0], ids[1]), (mems[2], ids[0]), (mems[3], ids[1])]:
        assert same_chunk(mem.chunk, store.memories([sid])[0])
    assert mems[0].reference == mems[3].reference
    prompt = f"{mems[0].reference}\nAnswer:"
    assert with_store.generate(prompt) == with_store.model.generate([mems[0].chunk, "\nAnswer:"], max_new_tokens=6)


BAD_STORE_IDS = [999999, "abc", -5, "0", 1.0, True, 2**70, None, [0], {"id": 0}]


def test_a_store_id_on_another_text_never_pulls_the_stored_memory(store_session, monkeypatch):
    """Issue 12: an id in metadata must not hand the LLM a stored passage the shown text is not."""
    with_store, ids = store_session
    uploaded = "A user-uploaded note about something else entirely."
    own = with_store.model.compress([uploaded])[0]
    calls = count_compressions(monkeypatch, with_store.model)
    store_ids = [ids[0], ids[1], *BAD_STORE_IDS]
    mems, report = with_store.attach_with_report([uploaded] * len(store_ids), store_ids)
    monkeypatch.undo()
    assert calls == [[uploaded]]  # compressed from its own text, once
    assert report.from_store == 0 and report.compressed == 1 and report.cached == len(store_ids) - 1
    stored = with_store.store.memories(ids)
    for mem in mems:
        assert same_chunk(mem.chunk, own)
        assert not any(same_chunk(mem.chunk, s) for s in stored)
        assert with_store.registry.text(mem.reference) == uploaded


def test_verified_store_ids_checks_the_text_under_each_id(store_session):
    with_store, ids = store_session
    texts = [CORPUS[0], CORPUS[0], CORPUS[1], "", None, CORPUS[1]]
    got = verified_store_ids(with_store.store, texts, [ids[0], ids[1], ids[1], ids[0], ids[0], "x"])
    assert got == {0: ids[0], 2: ids[1]}


def test_async_paths_do_not_block_the_event_loop(session):
    prompt = f"{session.attach(CORPUS[:1])[0].reference}\nAnswer:"
    expected = session.generate(prompt)

    async def streamed():
        return "".join([p async for p in session.astream(prompt)])

    with slow_model(session, 0.4):
        text, ticks = asyncio.run(ticks_during(session.agenerate(prompt)))
        assert text == expected and ticks >= 15
        text, ticks = asyncio.run(ticks_during(streamed()))
        assert text == expected and ticks >= 15
        (mems, _), ticks = asyncio.run(ticks_during(session.aattach_with_report(["a brand new passage"])))
        assert ticks >= 15 and mems[0].figures["sac_cached"] is False


def test_async_stream_can_stop_early(session):
    prompt = f"{session.attach(CORPUS[:1])[0].reference}\nAnswer:"

    async def first():
        async for piece in session.astream(prompt, max_new_tokens=20):
            return piece

    assert asyncio.run(first())


def test_json_safe_and_hashing_embedder():
    value = {"a": np.float32(1.5), "b": (1, np.int64(2)), 3: float("nan"), "c": object}
    out = json_safe(value)
    assert out["a"] == 1.5 and out["b"] == [1, 2] and out["3"] is None and isinstance(out["c"], str)
    emb = HashingEmbedder(64).embed(["the brown fox", "the brown fox", "mathematics at Cambridge"])
    assert emb.shape == (3, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1)
    assert emb[0] @ emb[1] == pytest.approx(1) and emb[0] @ emb[2] < 0.9
