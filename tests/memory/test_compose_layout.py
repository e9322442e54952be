"""Placing compact (biased) memories: each chunk's layout (the columns its layers use, gathered) is made once and
kept with the chunk, so that a question only rotates keys; what is placed stays what the padded chunk gives."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
import torch

from sac_rag.memory import compose
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.memory.compose import place
from sac_rag.testing import text_of_tokens, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(memory_kind="compact", compact_keep=0.3)


def plain_chunk(model) -> MemoryChunk:
    """A compact memory in plain tensors (compression gives inference tensors, which cannot change outside it)."""
    c = model.compress([text_of_tokens(60, seed=3)])[0]
    return replace(c, keys=c.keys.clone(), values=c.values.clone(), bias=c.bias.clone(), positions=c.positions.clone())


@pytest.fixture()
def chunk(model) -> MemoryChunk:
    return plain_chunk(model)


def expected(model, chunk: MemoryChunk, position: int) -> tuple[list, list, list]:
    """Per layer, the padded chunk rotated whole (the model's :meth:`shift`), then cut to the columns some head of
    the layer uses: keys, values, bias."""
    keys = model.shifter.shift(chunk.keys, position - chunk.offset)
    used = torch.isfinite(chunk.bias).any(dim=1)
    cut = [(layer, used[layer].nonzero().squeeze(1)) for layer in range(chunk.keys.shape[0])]
    return (
        [keys[layer][:, cols][None] for layer, cols in cut],
        [chunk.values[layer][:, cols][None] for layer, cols in cut],
        [chunk.bias[layer][:, cols] for layer, cols in cut],
    )


def assert_placed(model, chunk: MemoryChunk, position: int) -> compose.PlacedMemory:
    placed = place(chunk, position, model.shifter, model.dtype, model.device)
    keys, values, bias = expected(model, chunk, position)
    for got, want in zip(placed.keys, keys):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for got, want in zip(placed.values, values):
        assert torch.equal(got, want)
    for got, want in zip(placed.bias, bias):
        assert torch.equal(got, want)
    return placed


def test_a_chunk_is_laid_out_once_and_only_its_keys_are_rotated_per_placement(model, chunk):
    first = assert_placed(model, chunk, 1)
    moved = assert_placed(model, chunk, 77)
    # values and bias are read from the same layout; keys at another position are rotated afresh
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(first.values + first.bias, moved.values + moved.bias))
    assert moved.keys[0].data_ptr() != first.keys[0].data_ptr()


def test_a_moved_memory_equals_one_made_in_place(model, chunk):
    there = replace(chunk, keys=model.shifter.shift(chunk.keys, 50), offset=chunk.offset + 50)
    for position in (chunk.offset + 50, 200):
        a = place(chunk, position, model.shifter, model.dtype, model.device)
        b = place(there, position, model.shifter, model.dtype, model.device)
        for x, y in zip(a.keys, b.keys):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_a_layout_follows_its_chunk_when_the_chunk_changes(model, chunk):
    assert_placed(model, chunk, 30)
    chunk.values.mul_(2)  # in place: its version moves
    assert_placed(model, chunk, 30)
    chunk.keys = chunk.keys.flip(-1)  # replaced
    assert_placed(model, chunk, 30)
    used = torch.isfinite(chunk.bias)
    chunk.bias = torch.where(used, chunk.bias + 1, chunk.bias)
    assert_placed(model, chunk, 30)


def test_a_layout_made_in_inference_mode_serves_a_forward_with_gradients(model, chunk):
    with torch.inference_mode():
        place(chunk, 5, model.shifter, model.dtype, model.device)
    placed = place(chunk, 5, model.shifter, model.dtype, model.device)
    weight = torch.ones((), requires_grad=True)
    (placed.values[0] * weight).sum().backward()  # an inference tensor here would refuse to be saved for backward
    assert weight.grad is not None


def test_a_chunk_that_a_gradient_must_reach_is_laid_out_afresh(model, chunk):
    chunk.keys.requires_grad_(True)
    placed = place(chunk, 9, model.shifter, model.dtype, model.device)
    sum(k.sum() for k in placed.keys).backward()
    assert chunk.keys.grad is not None and bool(chunk.keys.grad.abs().sum() > 0)
    assert id(chunk) not in compose._LAYOUTS


def test_a_layout_goes_with_its_chunk(model):
    chunk = plain_chunk(model)
    place(chunk, 3, model.shifter, model.dtype, model.device)
    key = id(chunk)
    assert key in compose._LAYOUTS
    del chunk
    gc.collect()
    assert key not in compose._LAYOUTS
