"""DeferredChunk: a MemoryChunk whose keys, values and positions are made when first read; until then its shape,
dtype, bias and the figures computed from them are known, and once made it is the MemoryChunk of what was made."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import pytest
import torch

from sac_rag.memory.chunk import DeferredChunk, MemoryChunk

SHAPE = (2, 3, 5, 4)


def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    positions = torch.arange(5).repeat(2, 3, 1)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g), positions


def bias() -> torch.Tensor:
    b = torch.zeros(SHAPE[:3])
    b[..., 4] = -torch.inf
    return b


def deferred(calls: list | None = None, made=tensors) -> DeferredChunk:
    def make():
        if calls is not None:
            calls.append(1)
        return made()

    return DeferredChunk.later(make, SHAPE, torch.float32, 9, 3, "fp", {"kind": "compact"}, bias())


def test_nothing_is_made_until_keys_values_or_positions_are_read():
    calls = []
    chunk = deferred(calls)
    plain = MemoryChunk(*tensors(), 9, 3, "fp", {"kind": "compact"}, bias())
    figures = lambda c: (c.shape, c.dtype, c.n_anchors, c.entries, c.entries_per_head, c.nbytes, c.full_kv_nbytes())  # noqa: E731
    assert figures(chunk) == figures(plain)
    assert chunk.pending is not None and plain.pending is None and calls == []
    assert torch.equal(chunk.values, plain.values)
    assert chunk.pending is None and calls == [1]
    for name in ("keys", "values", "positions", "bias"):
        assert torch.equal(getattr(chunk, name), getattr(plain, name))
    assert calls == [1]  # made once


def test_setting_a_field_while_pending_makes_the_others_first():
    chunk = deferred()
    keys = torch.zeros(SHAPE)
    chunk.keys = keys
    assert chunk.keys is keys and torch.equal(chunk.values, tensors()[1]) and chunk.pending is None


def test_copies_replacements_and_pickles_carry_the_made_tensors():
    for copied in (
        replace(deferred(), fingerprint="other"),
        copy.deepcopy(deferred()),
        pickle.loads(pickle.dumps(deferred())),
        deferred().to(torch.float64),
    ):
        assert copied.pending is None
        assert torch.equal(copied.keys.float(), tensors()[0])
        assert torch.equal(copied.bias, bias())


def test_what_is_made_is_checked_as_any_chunk():
    with pytest.raises(ValueError, match="promised"):
        _ = deferred(made=lambda: (torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(4))).keys
    with pytest.raises(ValueError, match="keys and values"):
        _ = deferred(made=lambda: (torch.zeros(SHAPE), torch.zeros(2, 3, 4, 4), torch.zeros(5))).keys
    with pytest.raises(ValueError, match="bias"):
        DeferredChunk.later(tensors, (2, 3, 6, 4), torch.float32, 9, bias=bias())
    with pytest.raises(ValueError, match="length"):
        DeferredChunk.later(tensors, SHAPE, torch.float32, 0, bias=bias())
