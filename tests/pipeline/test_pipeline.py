"""SACRAG: answers equal the model's own over the retrieved memories; raw-text mode; streaming; figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.store import PASSAGES, bow_embedder

from sac_rag.pipeline import SACRAG
from sac_rag.store import MemoryStore
from sac_rag.testing import tiny_model


@pytest.fixture(scope="module")
def sac():
    return tiny_model()


@pytest.fixture
def rag(tmp_path, sac):
    store = MemoryStore.create(tmp_path / "s", sac, bow_embedder, memory_dtype="float32")
    store.add(PASSAGES, metadata=[{"n": i} for i in range(len(PASSAGES))], progress=False)
    yield SACRAG(store, sac, max_new_tokens=6)
    store.close()


def test_query_answers_from_the_composed_memories_of_the_hits(rag, sac):
    question = "Where was Alan Turing born in 1912?"
    result = rag.query(question, k=2)
    ids = [h.id for h in result.sources]
    assert ids[0] == 1 and len(ids) == 2 and result.sources[0].score >= result.sources[1].score
    expected = sac.generate(question, memories=sac.compress([PASSAGES[i] for i in ids]), max_new_tokens=6)
    assert result.answer == expected
    f = result.figures
    chunks = rag.store.memories(ids)
    assert f.mode == "sac" and f.passages == 2
    assert f.passage_tokens == sum(c.length for c in chunks) and f.anchors == sum(c.n_anchors for c in chunks)
    assert f.bytes_read == sum(c.meta["stored_nbytes"] for c in chunks) < f.full_kv_bytes
    question_tokens = len(sac.generator().build_prompt(question, chunks)[-1])
    assert f.prefilled_tokens == question_tokens
    assert all(t >= 0 for t in (f.retrieval_s, f.load_s, f.compose_s, f.prefill_s, f.decode_s)) and f.total_s > 0


def test_raw_text_mode_reads_the_same_passages_as_text(rag, sac):
    question = "What is the capital of France?"
    result = rag.query(question, k=2, raw_text=True)
    texts = [h.text for h in result.sources]
    assert texts[0] == PASSAGES[0]
    config = sac.config
    prompt = [config.context_prefix, "\n\n".join(texts), config.question_prefix, question, config.answer_prefix]
    assert result.answer == sac.generate(prompt, max_new_tokens=6)
    f = result.figures
    assert f.mode == "raw_text" and f.anchors == 0 and f.bytes_read == 0
    assert f.prefilled_tokens > f.passage_tokens > 0
    assert f.prefilled_tokens > rag.query(question, k=2).figures.prefilled_tokens


def test_query_builds_and_composes_the_prompt_once(rag, sac, monkeypatch):
    from sac_rag.decoding.generate import MemoryDecoder
    from sac_rag.decoding.generator import Generator
    from sac_rag.memory.geometry import full_kv_nbytes

    calls = {"build_prompt": 0, "compose": 0}

    def counting(name, original):
        def counted(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return counted

    monkeypatch.setattr(Generator, "build_prompt", counting("build_prompt", Generator.build_prompt))
    monkeypatch.setattr(MemoryDecoder, "compose", counting("compose", MemoryDecoder.compose))  # whoever composes
    question = "Where was Alan Turing born in 1912?"
    for raw_text in (False, True):
        calls.update(build_prompt=0, compose=0)
        result = rag.query(question, k=2, raw_text=raw_text)
        assert calls == {"build_prompt": 1, "compose": 1}
        f = result.figures
        if raw_text:  # every passage token's K and V, in bfloat16
            assert f.full_kv_bytes == full_kv_nbytes(sac.kv_shape, f.passage_tokens) > 0
            prompt = [sac.config.context_prefix, "\n\n".join(h.text for h in result.sources)]
            prompt += [sac.config.question_prefix, question, sac.config.answer_prefix]
            ids = sac.generator().generate_ids(prompt, max_new_tokens=6)
        else:
            memories = rag.store.memories([h.id for h in result.sources])
            ids = sac.generator().generate_ids(question, memories, max_new_tokens=6)
        assert f.answer_tokens == len(ids) > 0  # the generated ids, a final EOS included
        assert f.compose_s > 0


def test_stream_yields_the_answer_in_pieces(rag):
    question = "What does semantic anchor compression keep?"
    pieces = list(rag.stream(question, k=3))
    assert pieces and "".join(pieces) == rag.last_result.answer == rag.query(question, k=3).answer


def test_errors(tmp_path, sac):
    empty = MemoryStore.create(tmp_path / "e", sac, bow_embedder)
    with pytest.raises(ValueError, match="is empty"):
        SACRAG(empty, sac).query("anything?")
    with pytest.raises(ValueError, match="non-empty"):
        SACRAG(empty, sac).query("  ")
    with pytest.raises(ValueError, match="compressor"):
        SACRAG(empty, tiny_model(ratio=4))
    empty.close()


def test_load_gives_fresh_compressors_one_fingerprint(tmp_path, ckpt):
    from sac_rag import SACModel

    ckpt = Path(ckpt)
    base = str(ckpt.parent / "base")
    fresh = {SACModel.load(base).fingerprint for _ in range(2)}
    assert len(fresh) == 1  # separate runs (index, then ask) can share a store
    assert SACModel.load(str(ckpt)).fingerprint not in fresh
    assert SACModel.load(ckpt).fingerprint == SACModel.from_pretrained(ckpt).fingerprint  # a Path works too
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        SACModel.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="checkpoint directory or a model name"):
        SACModel.load("  ")
