"""Biased attention reads each kv head's keys, values and mask once for all of its query heads: the mask is built
per kv head, never per query head, and the attention equals the straightforward one (K/V repeated per query head)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sac_rag.decoding.attention import MemoryBias, _biased_sdpa

KV_HEADS, GROUPS, DIM, MEMORY = 2, 3, 8, 11


def straightforward(query, key, value, row) -> torch.Tensor:
    """``[1, q, query heads, dim]``: softmax(q.k / sqrt d + bias) v, bias on the first memory columns, causal after."""
    q_len, kv_len = query.shape[2], key.shape[2]
    keys, values = key.repeat_interleave(GROUPS, dim=1), value.repeat_interleave(GROUPS, dim=1)
    scores = query @ keys.transpose(2, 3) / math.sqrt(DIM)
    bias = torch.zeros(query.shape[1], q_len, kv_len)
    bias[:, :, : row.shape[1]] = row.repeat_interleave(GROUPS, dim=0)[:, None, :]
    bias[:, torch.arange(kv_len)[None, :] > torch.arange(kv_len - q_len, kv_len)[:, None]] = -math.inf
    return (torch.softmax(scores + bias, dim=-1) @ values).transpose(1, 2)


@pytest.mark.parametrize("q_len", [1, 5])
def test_biased_attention_equals_the_straightforward_one(q_len):
    g = torch.Generator().manual_seed(q_len)
    query = torch.randn(1, KV_HEADS * GROUPS, q_len, DIM, generator=g)
    key, value = (torch.randn(1, KV_HEADS, MEMORY + q_len + 2, DIM, generator=g) for _ in range(2))
    row = torch.randn(KV_HEADS, MEMORY, generator=g)
    row[0, 3] = row[1, 7] = -math.inf  # padding
    module = SimpleNamespace(layer_idx=0)
    out, _ = _biased_sdpa(module, query, key, value, None, memory_bias=MemoryBias([row]), scaling=DIM**-0.5)
    torch.testing.assert_close(out, straightforward(query, key, value, row), atol=1e-5, rtol=1e-5)


def test_the_mask_is_one_per_kv_head():
    row = torch.randn(KV_HEADS, MEMORY)
    mask = MemoryBias([row]).mask(0, 4, MEMORY + 6)
    assert mask.shape == (1, KV_HEADS, 4, MEMORY + 6)
    assert torch.equal(mask[0, :, :, :MEMORY], row[:, None, :].expand(KV_HEADS, 4, MEMORY))
    hidden = mask[0, :, :, MEMORY:] < 0  # the 6 entries after the memories: 2 earlier text, then the 4 queries
    assert torch.equal(hidden[0], torch.arange(6)[None, :] > torch.arange(2, 6)[:, None])
