"""Which entries a compact memory keeps: one global threshold over every (layer, kv head, entry) score.

Heads differ a lot in how many entries they need (most a handful, a few many), so budgets are not
split evenly: the ``budget`` highest scores of the whole passage win, wherever they are. The first
entry (BOS, the decoder's attention sink) is kept in every head.
"""

from __future__ import annotations

import torch

from sac_rag.memory.geometry import entry_nbytes, full_kv_nbytes
from sac_rag.memory.quant import SCALE_DTYPE, SCALES_PER_HEAD

COUNT_BYTES = 4  # a stored memory's per-(layer, kv head) entry count is int32


def head_overhead_nbytes(dtype: torch.dtype) -> int:
    """Bytes a stored memory spends per (layer, kv head) besides its entries: the entry count, and the K and V
    scales when ``dtype`` is int8."""
    scales = SCALES_PER_HEAD * SCALE_DTYPE.itemsize if dtype == torch.int8 else 0
    return COUNT_BYTES + scales


def entry_budget(kv_shape: tuple[int, int, int], length: int, keep: float, dtype: torch.dtype = torch.bfloat16) -> int:
    """Entries a memory of a ``length``-token passage may hold, its K/V stored as ``dtype``, so that it takes at
    most ``keep`` of the full K/V's bytes in bfloat16, biases, positions, counts and scales included (never
    fewer than one per head). int8 entries take half the bytes, so twice as many fit."""
    layers, heads, dim = kv_shape
    allowed = keep * full_kv_nbytes(kv_shape, length, torch.bfloat16) - layers * heads * head_overhead_nbytes(dtype)
    return max(layers * heads, int(allowed // entry_nbytes(dim, dtype, biased=True)))


def select_entries(scores: torch.Tensor, budget: int) -> torch.Tensor:
    """``[layers, kv_heads, T]`` bool: the ``budget`` best-scored entries over all heads, the first
    entry of every head included."""
    flat = scores.float().clone()
    flat[..., 0] = torch.inf
    flat = flat.flatten()
    budget = min(max(budget, scores.shape[0] * scores.shape[1]), flat.numel())
    kept = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    kept[torch.topk(flat, budget).indices] = True
    return kept.view(scores.shape)


def gather_kept(kept: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Kept entries of each ``[layers, kv_heads, T, ...]`` tensor, per head, in token order, padded to the
    largest head: returns the padding mask ``[layers, kv_heads, n]``, the token indices (``-1`` on
    padding) and the gathered tensors (zeros on padding)."""
    counts = kept.sum(-1)
    width = int(counts.max())
    order = torch.sort((~kept).to(torch.int8), dim=-1, stable=True).indices[..., :width]  # kept first, in order
    mask = torch.arange(width, device=kept.device) < counts[..., None]
    index = torch.where(mask, order, torch.full_like(order, -1))
    out = []
    for t in tensors:
        extra = t.shape[3:]
        idx = order.view(*order.shape, *([1] * len(extra))).expand(*order.shape, *extra)
        g = torch.gather(t, 2, idx)
        out.append(g * mask.view(*mask.shape, *([1] * len(extra))).to(g.dtype))
    return mask, index, out
