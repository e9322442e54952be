"""Composed memories with one context header (``shared_header``, off by default): every memory after the first leaves
out the entries of its BOS and context prefix, as passages joined as text hold one; SAC anchors and memories without
a recorded header are placed whole, and by default every memory keeps its own."""

from __future__ import annotations

import copy

import pytest
import torch
from support.reference_biased import reference_greedy

from sac_rag import SACConfig, SACModel
from sac_rag.memory.chunk import HEADER, MemoryChunk
from sac_rag.memory.compose import PlacedMemory, place
from sac_rag.store import MemoryStore
from sac_rag.testing import text_of_tokens, tiny_llama, tiny_model, tiny_tokenizer
from sac_rag.text.prompt import header_length

QUESTION = "Where was Alan Turing born?"
TEXTS = [text_of_tokens(n, seed=n) for n in (40, 30, 50)]


@pytest.fixture(scope="module")
def pair() -> tuple[SACModel, torch.nn.Module]:
    base = tiny_llama()
    plain = copy.deepcopy(base)
    config = SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8, memory_kind="compact", compact_keep=0.3)
    return SACModel(base, tiny_tokenizer(), config), plain


def memory_entries(model: SACModel, memories, *, shared_header: bool = False) -> list[int]:
    """Entries each placed memory puts in the cache of the first layer, per kv head, padding and masked ones
    left out."""
    generator = model.generator(shared_header=shared_header)
    composed = generator.compose(generator.build_prompt(QUESTION, memories))
    out = []
    for step in composed.steps:
        if isinstance(step, PlacedMemory):
            bias = step.bias[0] if step.bias is not None else torch.zeros(step.keys[0].shape[1:3])
            out.append(int(torch.isfinite(bias).sum(-1).max()))
    return out


def test_memories_of_context_sequences_record_their_header(pair):
    model, _ = pair
    header = header_length(model.tokenizer, model.config)
    assert header == len(model.tokenizer.encode(model.config.context_prefix, add_special_tokens=False)) + 1
    assert {m.meta[HEADER] for m in model.compress(TEXTS)} == {header}
    assert {m.meta[HEADER] for m in model.encode_full_kv(TEXTS)} == {header}
    assert HEADER not in model.compress(TEXTS[0], add_context_prefix=False)[0].meta  # no header to leave out
    sac = tiny_model(chunk_size=64)
    assert HEADER not in sac.compress(TEXTS[0])[0].meta  # anchors: the sink stands for the sequence start


def test_full_kv_memories_after_the_first_leave_their_header_out(pair):
    model, _ = pair
    full = model.encode_full_kv(TEXTS)
    header = full[0].meta[HEADER]
    lengths = [m.length for m in full]
    assert memory_entries(model, full) == lengths
    assert memory_entries(model, full, shared_header=True) == [lengths[0]] + [n - header for n in lengths[1:]]
    assert memory_entries(model, full[:1], shared_header=True) == lengths[:1]  # a lone memory keeps its header


def test_composed_compact_memories_decode_as_the_reference_with_one_header(pair):
    model, plain = pair
    memories = model.compress(TEXTS)
    segments = model.generator().build_prompt(QUESTION, memories)
    shared_steps, shared_ids = reference_greedy(plain, segments, max_new_tokens=6, shared_header=True)
    own_steps, own_ids = reference_greedy(plain, segments, max_new_tokens=6)
    assert not torch.allclose(shared_steps[0], own_steps[0], atol=1e-3)  # the header's entries matter
    for shared, steps, ids in ((True, shared_steps, shared_ids), (False, own_steps, own_ids)):
        decoder = model.generator(shared_header=shared).decoder
        with torch.no_grad():
            _, logits, _ = decoder.prefill(segments)
        torch.testing.assert_close(logits, steps[0], atol=1e-4, rtol=1e-4)
        assert list(decoder.greedy(segments, 6, set())) == ids
    # each compact memory after the first masks exactly its entries of header positions
    header = memories[1].meta[HEADER]
    counts = [int(((m.positions >= 0) & (m.positions >= header)).sum(-1)[0].max()) for m in memories[1:]]
    assert memory_entries(model, memories, shared_header=True)[1:] == counts


def test_a_memory_read_back_from_a_store_keeps_its_header(pair, tmp_path):
    model, _ = pair
    with MemoryStore.create(tmp_path / "store", model, embedder=lambda texts: torch.ones(len(texts), 4).numpy()) as s:
        ids = s.add(TEXTS, progress=False)
        read = s.memories(ids)
    assert [m.meta[HEADER] for m in read] == [header_length(model.tokenizer, model.config)] * len(TEXTS)
    made = model.compress(TEXTS)
    assert memory_entries(model, read, shared_header=True) == memory_entries(model, made, shared_header=True)


def test_placing_without_a_header_keeps_exactly_the_later_entries(pair):
    model, _ = pair
    full = model.encode_full_kv(TEXTS[0])[0]
    order = torch.randperm(full.n_anchors, generator=torch.Generator().manual_seed(0))
    shuffled = MemoryChunk(full.keys[:, :, order], full.values[:, :, order], full.positions[order], full.length)
    shifter, dtype = model.shifter, full.keys.dtype
    for chunk in (full, shuffled):  # entries in token order (a suffix is kept) or not (they are picked)
        placed = place(chunk, 7, shifter, dtype, "cpu", skip=3)
        whole = place(chunk, 7, shifter, dtype, "cpu")
        kept = (chunk.positions >= 3).nonzero().squeeze(1)
        assert placed.keys[0].shape[2] == full.length - 3
        torch.testing.assert_close(placed.keys[0], whole.keys[0][:, :, kept], rtol=0, atol=0)
        torch.testing.assert_close(placed.values[1], whole.values[1][:, :, kept], rtol=0, atol=0)
