"""The question path as optimised for time to first token, against the straightforward one: compact memories
trimmed per layer and read by packed biased attention (checked against tests/support/reference_biased.py), the
attention sink computed once per model and placed like a memory, and timed prefills that change nothing."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from support.models import randomize_reader
from support.reference_biased import reference_greedy

from sac_rag import SACConfig, SACModel
from sac_rag.decoding.phases import Phases
from sac_rag.memory.compose import Sink, compose
from sac_rag.testing import text_of_tokens, tiny_llama, tiny_model, tiny_qwen2, tiny_tokenizer

QUESTION = "Where was Alan Turing born?"
TEXTS = [text_of_tokens(n, seed=n) for n in (70, 45, 90)]


def compact_pair(make_base) -> tuple[SACModel, torch.nn.Module]:
    """A compact-memory model and a plain copy of its base (the decoder's weights, untouched by PEFT)."""
    base = make_base()
    plain = copy.deepcopy(base)
    config = SACConfig(ratio=5, chunk_size=64, lora_rank=4, lora_alpha=8, memory_kind="compact", compact_keep=0.3)
    return SACModel(base, tiny_tokenizer(), config), plain


@pytest.fixture(scope="module", params=[tiny_llama, tiny_qwen2], ids=["llama", "qwen2"])
def pair(request):
    return compact_pair(request.param)


@pytest.mark.parametrize("shape", ["one", "three", "text around"])
def test_compact_decoding_equals_the_straightforward_reference(pair, shape):
    model, plain = pair
    memories = model.compress(TEXTS)
    if shape == "one":
        segments = model.generator().build_prompt(QUESTION, memories[:1])
    elif shape == "three":
        segments = model.generator().build_prompt(QUESTION, memories)
    else:  # text before, between and after memories; one memory of another kind among them
        full = model.encode_full_kv(TEXTS[1:2])[0]
        segments = model.generator().build_prompt(["Read:", memories[0], "then", full, memories[2], QUESTION])
    assert any(getattr(s, "bias", None) is not None for s in segments)
    steps, expected = reference_greedy(plain, segments, max_new_tokens=10)
    decoder = model.generator().decoder
    with torch.no_grad():
        _, logits, _ = decoder.prefill(segments)
    torch.testing.assert_close(logits, steps[0], atol=1e-4, rtol=1e-4)
    assert list(decoder.greedy(segments, 10, set())) == expected  # one-token steps read the memories too
    # several tokens after the memories in one forward: the causal part of the mask
    longer = [*segments[:-1], list(segments[-1]) + expected[:6]]
    with torch.no_grad():
        _, logits, _ = decoder.prefill(longer)
    torch.testing.assert_close(logits, steps[6], atol=1e-4, rtol=1e-4)


def test_trimming_does_not_depend_on_where_the_padding_sits(pair):
    model, _ = pair
    memories = model.compress(TEXTS[:2])
    g = torch.Generator().manual_seed(0)
    shuffled = []
    for m in memories:  # each head's entries in another column order, padding scattered among them
        order = torch.randperm(m.n_anchors, generator=g)
        shuffled.append(
            replace(
                m,
                keys=m.keys[:, :, order],
                values=m.values[:, :, order],
                bias=m.bias[:, :, order],
                positions=m.positions[:, :, order],
            )
        )
    real = torch.isfinite(shuffled[0].bias)
    assert bool((~real[..., :-1] & real[..., 1:]).any())  # a padding column before a real entry
    with torch.no_grad():
        _, expected, _ = model.generator().decoder.prefill(model.generator().build_prompt(QUESTION, memories))
        _, got, _ = model.generator().decoder.prefill(model.generator().build_prompt(QUESTION, shuffled))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture()
def sink_model() -> SACModel:
    model = tiny_model(attention_sink=True, reader_rank=4, reader_alpha=8.0)
    randomize_reader(model)
    return model


def straightforward_logits(model: SACModel, segments) -> torch.Tensor:
    """The sink run through the decoder with the prompt, as its own feed (compose given no sink K/V)."""
    composed = compose(segments, model.shifter, model.dtype, model.device)
    with torch.no_grad():
        return model.generator().decoder.prefill(composed)[1]


def test_the_cached_sink_gives_the_logits_of_the_sink_run_with_every_prompt(sink_model):
    model = sink_model
    memories = model.compress(TEXTS[:2])
    decoder = model.generator().decoder
    bos = model.tokenizer.bos_token_id
    for k in (1, 2):
        segments = model.generator().build_prompt(QUESTION, memories[:k])
        assert isinstance(segments[0], Sink)
        with torch.no_grad():
            cached = decoder.prefill(segments)[1]
        assert torch.equal(cached, straightforward_logits(model, segments))
    assert model.generator().decoder.sink_memory(bos) is decoder.sink_memory(bos)  # one per model, shared
    plain = model.generator(reader=False).decoder.sink_memory(bos)  # the base without its reader has a sink of its own
    assert not torch.allclose(plain.values, decoder.sink_memory(bos).values)


def test_the_sink_is_recomputed_when_the_weights_change(sink_model):
    model = sink_model
    bos = model.tokenizer.bos_token_id
    segments = model.generator().build_prompt(QUESTION, model.compress(TEXTS[:1]))
    with torch.no_grad():
        before = model.generator().decoder.prefill(segments)[1]
    old_sink = model.generator().decoder.sink_memory(bos)
    randomize_reader(model, seed=8)  # in place, as loading or a training step changes them
    new_sink = model.generator().decoder.sink_memory(bos)
    assert new_sink is not old_sink and not torch.allclose(new_sink.values, old_sink.values)
    (bos_kv,) = model.encode_sequences([[bos]], full_kv=True)  # the decoder reading BOS at position 1, now
    torch.testing.assert_close(new_sink.keys, bos_kv.keys, atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        after = model.generator().decoder.prefill(segments)[1]
    assert not torch.allclose(after, before) and torch.equal(after, straightforward_logits(model, segments))


def test_a_sink_that_a_gradient_must_reach_is_computed_afresh(sink_model):
    model = sink_model
    bos = model.tokenizer.bos_token_id
    cached = model.generator().decoder.sink_memory(bos)
    reader = list(model.reader_parameters().values())
    for p in reader:
        p.requires_grad_(True)  # as when training the reader
    fresh = model.generator().decoder.sink_memory(bos)
    assert fresh is not cached and fresh.values.requires_grad
    fresh.values.sum().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum()) for p in reader)
    with torch.no_grad():
        assert model.generator().decoder.sink_memory(bos) is cached  # no gradient wanted: the kept one, unchanged


def test_a_timed_prefill_records_each_phase_and_changes_nothing(sink_model):
    model = sink_model
    segments = model.generator().build_prompt(QUESTION, model.compress(TEXTS[:2]))
    phases = Phases()
    with torch.no_grad():
        timed = model.generator().decoder.prefill(segments, phases=phases)[1]
        plain = model.generator().decoder.prefill(segments)[1]
    assert torch.equal(timed, plain)
    assert {"compose", "sink", "cache", "attention", "forward", "head"} <= set(phases.seconds)
    assert all(s >= 0 for s in phases.seconds.values()) and phases.seconds["forward"] > 0
