"""sac_rag against a literal implementation of the spec, with an official-format adapter (fp32)."""

import pytest
import torch
from support.reference_sac import official_adapter, reference_compress, reference_generate

from sac_rag.testing import BUILDERS, text_of_tokens, tiny_model, tiny_tokenizer

PREFIX_TOKENS = 10  # BOS + "### Context:\n" in the tiny tokenizer


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("ratio", [5, 15])
@pytest.mark.parametrize("L", [137, 511, 512, 700, 1100])
def test_anchor_kv_and_greedy_tokens_match_reference(arch, ratio, L, tmp_path):
    tok = tiny_tokenizer()
    model = tiny_model(arch, ratio=ratio, randomize=False)
    adapter = official_adapter(BUILDERS[arch](), model.config.mem_size, rank=8, seed=ratio + L)
    torch.save(adapter, tmp_path / "instruction_adapter.pt")
    model.load_official_adapter(tmp_path / "instruction_adapter.pt")

    context = text_of_tokens(L - PREFIX_TOKENS, seed=L)
    (memory,) = model.compress([context])
    K, V, ref_L = reference_compress(BUILDERS[arch](), tok, adapter, context, ratio)
    assert memory.length == ref_L == L
    for layer in range(model.base_model.config.num_hidden_layers):
        torch.testing.assert_close(memory.keys[layer], K[layer][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(memory.values[layer], V[layer][0], atol=1e-5, rtol=1e-5)

    question = "Where was Alan Turing born?"
    ref_ids, ref_logits = reference_generate(BUILDERS[arch](), tok, adapter, context, question, ratio, max_new=12)
    ids = model.generator().generate_ids(question, memories=[memory], max_new_tokens=12)
    assert ids == ref_ids
    _, logits, _ = model.generator().decoder.prefill(model.generator().build_prompt(question, [memory]))
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
