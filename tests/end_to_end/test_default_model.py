"""The real offline default model, end to end (slow: run with ``-m slow``)."""

import pytest
import torch
from support.reference_sac import official_adapter, reference_compress, reference_generate

from sac_rag import SACConfig, SACModel
from sac_rag.home import DEFAULT_BASE_MODEL, resolve_model_path
from sac_rag.store import memory_dtype_for
from sac_rag.store.codec import pack_memory

pytestmark = pytest.mark.slow

PASSAGE = (
    "Alan Turing was an English mathematician, computer scientist and logician. He was born on 23 June 1912 "
    "in Maida Vale, London, and studied mathematics at King's College, Cambridge."
)


def _load_base():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(DEFAULT_BASE_MODEL)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def test_default_model_compresses_and_answers():
    model = SACModel.default()
    assert model.config.memory_kind == "compact"
    (sac,) = model.compress([PASSAGE], kind="sac")
    assert sac.keys.shape[:2] == (30, 3) and sac.n_anchors == -(-(sac.length - 2) // 5)
    assert sac.full_kv_nbytes() / sac.nbytes == pytest.approx(sac.length / sac.n_anchors)
    (memory,) = model.compress([PASSAGE])  # the default kind: compact, 1/5 of the full K/V's bytes as stored
    stored = sum(t.numel() * t.element_size() for t in pack_memory(memory, memory_dtype_for(model)).values())
    assert memory_dtype_for(model) == "int8" and memory.meta["dtype"] == "int8"
    assert memory.bias is not None and stored <= memory.full_kv_nbytes() * model.config.compact_keep
    answer = model.generate("Where was Alan Turing born?", memories=[memory], max_new_tokens=16)
    assert "London" in answer or "Maida Vale" in answer
    raw = model.generate(
        model.config.context_prefix
        + PASSAGE
        + model.config.question_prefix
        + "Where was Alan Turing born?"
        + model.config.answer_prefix,
        max_new_tokens=16,
    )
    assert "Maida Vale" in raw or "London" in raw  # the base model itself reads the raw text correctly


def test_real_model_matches_the_spec_reference(tmp_path):
    model_hf, tok = _load_base()  # the reference's own copy: SACModel wraps (mutates) the one it is given
    model = SACModel.from_base(
        _load_base()[0], SACConfig(ratio=5, lora_rank=8, lora_alpha=16, base_model=DEFAULT_BASE_MODEL), tokenizer=tok
    )
    adapter = official_adapter(model_hf, model.config.mem_size, rank=8, seed=3)
    adapter = {k: v * 0.2 if "lora" in k else v * 0.05 for k, v in adapter.items()}
    torch.save(adapter, tmp_path / "adapter.pt")
    model.load_official_adapter(tmp_path / "adapter.pt")
    (memory,) = model.compress([PASSAGE])
    K, V, L = reference_compress(model_hf, tok, adapter, PASSAGE, 5)
    assert memory.length == L
    for layer in (0, 15, 29):
        torch.testing.assert_close(memory.keys[layer], K[layer][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(memory.values[layer], V[layer][0], atol=1e-4, rtol=1e-4)
    ref_ids, _ = reference_generate(model_hf, tok, adapter, PASSAGE, "Where was Turing born?", 5, max_new=8)
    assert model.generator().generate_ids("Where was Turing born?", memories=[memory], max_new_tokens=8) == ref_ids
