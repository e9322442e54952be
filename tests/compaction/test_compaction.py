"""Compaction memories (per-head selection + attention-matching refit): exactness at full budget, the refit's
gain on held-out queries, re-positioning, composition, storage, verify/repair and corruption."""

from __future__ import annotations

import json
import math

import pytest
import torch
from support.store import PASSAGES, bow_embedder

from sac_rag import SACConfig, SACModel
from sac_rag.compaction.compactor import compact_analysis, compact_entries
from sac_rag.compaction.refit import attention_output, refit
from sac_rag.compaction.select import entry_budget, select_entries
from sac_rag.memory.geometry import full_kv_nbytes
from sac_rag.store import MEMORY_DTYPES, MemoryStore, StoreCorrupted
from sac_rag.store.codec import pack_memory, unpack_memory
from sac_rag.testing import tiny_llama, tiny_qwen2, tiny_tokenizer
from sac_rag.text.prompt import context_ids

TEXT = "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge. Paris is the capital of France."
OTHER = "The quick brown fox jumps over the lazy dog. Semantic anchor compression keeps every fifth token."
QUESTION = "Where was Turing born?"


def compact_model(base=None, **config) -> SACModel:
    cfg = SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8, memory_kind="compact", **config)
    return SACModel(base if base is not None else tiny_llama(), tiny_tokenizer(), cfg)


@pytest.fixture(scope="module")
def model() -> SACModel:
    return compact_model(compact_keep=0.3)


def ids(model: SACModel, text: str) -> list[int]:
    return context_ids(model.tokenizer, text, model.config)


def first_logits(model: SACModel, memories) -> torch.Tensor:
    _, logits, _ = model.generator().decoder.prefill(model.generator().build_prompt(QUESTION, memories))
    return logits


@pytest.mark.parametrize("make_base", [tiny_llama, tiny_qwen2])
def test_keeping_everything_with_the_refit_reproduces_the_full_kv(make_base):
    model = compact_model(make_base())
    analysis = model.compactor().analyse(ids(model, TEXT))
    everything = torch.ones(analysis.scores.shape, dtype=torch.bool)
    memory = compact_entries(analysis, everything, refit_values=True)
    full = model.encode_full_kv([TEXT])[0]
    assert memory.entries == full.entries
    torch.testing.assert_close(first_logits(model, [memory]), first_logits(model, [full]), atol=2e-4, rtol=0)
    assert model.generate(QUESTION, [memory], max_new_tokens=8) == model.generate(QUESTION, [full], max_new_tokens=8)


def test_the_refit_lowers_the_attention_error_of_a_selection_on_held_out_queries():
    gen = torch.Generator().manual_seed(0)
    heads, length, dim, kept = 4, 120, 16, 24
    keys = torch.randn(heads, length, dim, generator=gen) * 1.5
    values = torch.randn(heads, length, dim, generator=gen)
    fit_queries, held_out = (torch.randn(heads, 400, dim, generator=gen) * 1.5 for _ in range(2))
    scores = torch.softmax(torch.einsum("bmd,btd->bmt", fit_queries, keys) / math.sqrt(dim), -1).amax(1)
    index = scores.topk(kept, -1).indices.sort(-1).values
    kept_keys = torch.gather(keys, 1, index[..., None].expand(-1, -1, dim))
    kept_values = torch.gather(values, 1, index[..., None].expand(-1, -1, dim))
    fit = refit(fit_queries, keys, values, kept_keys, kept_values, torch.ones(heads, kept, dtype=torch.bool))
    target, target_mass = attention_output(held_out, keys, values)
    selected, selected_mass = attention_output(held_out, kept_keys, kept_values)
    refitted, refitted_mass = attention_output(held_out, kept_keys, fit.values, fit.bias)
    assert (refitted - target).norm() < 0.8 * (selected - target).norm()
    assert (refitted_mass - target_mass).abs().mean() < 0.6 * (selected_mass - target_mass).abs().mean()


def test_the_refit_can_fit_to_evenly_spaced_reference_queries():
    gen = torch.Generator().manual_seed(1)
    keys, values, queries = (torch.randn(2, n, 8, generator=gen) for n in (30, 30, 91))
    mask = torch.ones(2, 10, dtype=torch.bool)
    kept = (keys[:, :10], values[:, :10])
    every = refit(queries, keys, values, *kept, mask)
    assert torch.equal(refit(queries, keys, values, *kept, mask, max_queries=91).values, every.values)
    fewer = refit(queries, keys, values, *kept, mask, max_queries=31)  # queries 0, 3, ..., 90
    spaced = refit(queries[:, ::3].contiguous(), keys, values, *kept, mask)
    assert torch.equal(fewer.bias, spaced.bias) and torch.equal(fewer.values, spaced.values)
    assert not torch.allclose(fewer.values, every.values)


def test_selection_keeps_the_budget_over_all_heads_and_bos_everywhere():
    scores = torch.rand(3, 2, 50)
    kept = select_entries(scores, 40)
    assert int(kept.sum()) == 40 and bool(kept[..., 0].all())
    rest = scores.clone()
    rest[..., 0] = -1
    assert float(rest[kept & (rest >= 0)].min()) >= float(rest[~kept].max())  # one global threshold


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_a_memory_takes_at_most_its_share_of_the_full_kv_bytes(model, dtype):
    shape = model.kv_shape
    for keep in (0.5, 0.2, 0.1):
        memory = model.compactor(keep=keep, dtype=dtype).compact(ids(model, TEXT))
        assert memory.entries == entry_budget(shape, memory.length, keep, getattr(torch, dtype))
        stored = sum(t.numel() * t.element_size() for t in pack_memory(memory, dtype).values())
        assert stored <= keep * full_kv_nbytes(shape, memory.length, torch.bfloat16)  # bias, counts, scales counted
        assert bool(torch.isfinite(memory.bias[..., 0]).all())  # BOS kept in every head


def test_int8_memories_hold_twice_the_entries_and_are_what_an_int8_store_gives_back(model):
    analysis = model.compactor().analyse(ids(model, TEXT))
    bf16 = compact_analysis(analysis, 0.2, dtype=torch.bfloat16)
    int8 = compact_analysis(analysis, 0.2, dtype=torch.int8)
    assert int8.meta["dtype"] == "int8" and "dtype" not in bf16.meta
    assert 1.8 * bf16.entries <= int8.entries <= 2.1 * bf16.entries
    keys, values, positions, _ = unpack_memory(pack_memory(int8, "int8"))
    torch.testing.assert_close(keys, int8.keys.float(), atol=1e-5, rtol=0)  # already int8: stored as it is
    torch.testing.assert_close(values, int8.values.float(), atol=1e-5, rtol=0)
    assert torch.equal(positions, int8.positions)
    assert not torch.equal(
        int8.keys, analysis.keys.gather(2, int8.positions.clamp_min(0)[..., None].expand_as(int8.keys))
    )


@pytest.mark.parametrize(("dtype", "tol"), [("bfloat16", 2e-4), ("int8", 2e-3)])  # int8: rounding moves with RoPE
def test_a_memory_moved_to_another_position_equals_one_compressed_in_place(model, dtype, tol):
    first = model.encode_full_kv([OTHER])[0]
    compactor = model.compactor(dtype=dtype)
    at_start = compactor.compact(ids(model, TEXT), offset=1)
    in_place = compactor.compact(ids(model, TEXT), offset=1 + first.length)
    assert torch.equal(at_start.positions, in_place.positions)
    moved = first_logits(model, [first, at_start])
    torch.testing.assert_close(moved, first_logits(model, [first, in_place]), atol=tol, rtol=0)


def test_two_composed_memories_answer_like_the_full_blocks_and_the_refit_helps(model):
    full = model.encode_full_kv([TEXT, OTHER])
    reference = first_logits(model, full)
    exact = [
        compact_entries(a, torch.ones(a.scores.shape, dtype=torch.bool), refit_values=True)
        for a in (model.compactor().analyse(ids(model, t)) for t in (TEXT, OTHER))
    ]
    torch.testing.assert_close(first_logits(model, exact), reference, atol=2e-4, rtol=0)
    analyses = [model.compactor().analyse(ids(model, t)) for t in (TEXT, OTHER)]
    refitted = first_logits(model, [compact_analysis(a, 0.3) for a in analyses])
    selected = first_logits(model, [compact_analysis(a, 0.3, refit_values=False) for a in analyses])
    assert (refitted - reference).norm() < (selected - reference).norm()


def test_compress_stamps_the_decoder_and_the_settings_and_sac_memories_keep_their_identity():
    sac = SACModel(tiny_llama(), tiny_tokenizer(), SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8))
    before = sac.fingerprint
    assert "memory_kind" not in sac.config.identity()
    sac.config.compact_keep = 0.1  # compaction settings do not touch a SAC model's identity
    assert sac.fingerprint == before
    compact = compact_model(compact_keep=0.2)
    other = compact_model(compact_keep=0.1)
    bf16 = compact_model(compact_keep=0.2, compact_dtype="bfloat16")
    assert len({before, compact.fingerprint, other.fingerprint, bf16.fingerprint}) == 4
    assert "compact_dtype" not in bf16.config.compaction_identity()  # bfloat16 memories keep their fingerprints
    memory = compact.compress(TEXT)[0]
    assert memory.fingerprint == compact.fingerprint and memory.meta["kind"] == "compact"
    segments = compact.generator().build_prompt(QUESTION, [memory])
    assert all(type(s).__name__ not in ("LMMarker", "Sink") for s in segments)  # no [LM], no sink: BOS is kept
    with pytest.raises(ValueError, match="re-compress"):
        other.generator().build_prompt(QUESTION, [memory])


@pytest.mark.parametrize(
    "bad", [{"memory_kind": "zip"}, {"compact_keep": 0}, {"compact_keep": 1.5}, {"compact_dtype": "float16"}]
)
def test_bad_compaction_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SACConfig(**bad)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "int8"])
def test_a_store_keeps_compact_memories_ragged_and_answers_from_them(tmp_path, model, dtype):
    with MemoryStore.create(tmp_path / "s", model, bow_embedder, memory_dtype=dtype) as store:
        store.add(PASSAGES, progress=False)
        hits = store.search("Turing born London", k=2)
        stored = store.memories([h.id for h in hits])
        assert store.verify().ok
    fresh = model.compress([h.text for h in hits])
    for got, want in zip(stored, fresh):
        assert torch.equal(torch.isfinite(got.bias), torch.isfinite(want.bias))
        assert torch.equal(got.positions, want.positions)
        tol = 0 if dtype == "float32" else 0.05
        torch.testing.assert_close(got.keys.float(), want.keys, atol=tol * 4, rtol=tol)
        torch.testing.assert_close(got.bias.nan_to_num(neginf=0), want.bias.nan_to_num(neginf=0), atol=1e-2, rtol=0)
        layers, heads, width, dim = want.keys.shape
        per_entry = 2 * dim * MEMORY_DTYPES[dtype].itemsize + 8  # K/V, then bias and position at most
        assert want.entries < layers * heads * width  # heads are ragged ...
        assert got.meta["stored_nbytes"] <= want.entries * per_entry + layers * heads * 8  # ... and stored so
    if dtype == "float32":
        assert model.generate(QUESTION, stored, max_new_tokens=6) == model.generate(QUESTION, fresh, max_new_tokens=6)


def test_a_corrupted_bias_is_detected_named_and_repaired(tmp_path, model):
    path = tmp_path / "s"
    with MemoryStore.create(path, model, bow_embedder) as store:
        store.add(PASSAGES[:2], progress=False)
    shard = next((path / "shards").iterdir())
    data = bytearray(shard.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    name = next(n for n in header if n.endswith(".b"))  # one memory's biases
    data[8 + header_len + header[name]["data_offsets"][0] + 1] ^= 0x40
    shard.write_bytes(bytes(data))
    with MemoryStore.open(path, model, bow_embedder) as store:
        report = store.verify()
        assert not report.ok
        assert any(shard.name in p and "memories of passages" in p for p in report.problems), report.problems
        both = [h.id for h in store.search("Paris capital France Turing", k=2)]
        with pytest.raises(StoreCorrupted, match="checksum"):
            store.memories(both)
        assert store.repair().after.ok
        assert len(store.memories(both)) == 2


def test_a_store_refuses_a_model_of_another_memory_kind(tmp_path, model):
    with MemoryStore.create(tmp_path / "s", model, bow_embedder) as store:
        store.add(PASSAGES[:2], progress=False)
    sac = SACModel(tiny_llama(), tiny_tokenizer(), SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8))
    with pytest.raises(Exception, match="fingerprint|compressor|model"):
        MemoryStore.open(tmp_path / "s", sac, bow_embedder).close()


@pytest.mark.parametrize("make_base", [tiny_llama, tiny_qwen2])
def test_scores_match_kvzip_computed_in_one_plain_pass(make_base):
    """Cross-check with KVzip's definition as kvpress computes it (``KVzipPress.score_kvzip``): the passage,
    the repeat prompt and the passage again in one causal pass, eager attention probabilities; an entry's
    score is their maximum over the repeat positions and over the query heads of its kv group."""
    model = compact_model(make_base())
    compactor = model.compactor()
    passage = ids(model, TEXT)
    analysis = compactor.analyse(passage)
    sequence = passage + list(compactor.repeat_ids) + passage[1:]
    config = model.transformer.config
    previous, config._attn_implementation = config._attn_implementation, "eager"
    try:
        with torch.no_grad(), compactor.decoder_mode():
            out = model.transformer(
                input_ids=torch.tensor([sequence]),
                position_ids=torch.arange(1, len(sequence) + 1)[None],
                output_attentions=True,
            )
    finally:
        config._attn_implementation = previous
    length, kv_heads = len(passage), analysis.scores.shape[1]
    for layer, probs in enumerate(out.attentions):
        received = probs[0, :, length:, :length].amax(dim=1)  # [query heads, passage entries]
        expected = received.view(kv_heads, -1, length).amax(dim=1)
        torch.testing.assert_close(analysis.scores[layer], expected.float(), atol=1e-5, rtol=1e-4)
