"""Which entries a compact memory keeps: one global threshold over every (layer, kv head, entry) score.

Heads differ a lot in how many entries they need (most a handful, a few many), so budgets are not
split evenly: the ``budget`` highest scores of the whole passage win, wherever they are. The first
entry (BOS, the decoder's attention sink) is kept in every head.
"""

from __future__ import annotations

import math

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


def omp_select(
    queries: torch.Tensor,
    keys: torch.Tensor,
    counts: torch.Tensor,
    *,
    normalise: bool = True,
    first: bool = True,
) -> torch.Tensor:
    """``[B, T]`` bool: ``counts[b]`` entries (at least one) of each head chosen by Orthogonal Matching Pursuit on the
    mass-matching objective of the refit (the attention-matching authors' selection, arXiv 2602.16284), not by score.

    Per head, ``A = exp(q.K^T / sqrt d - rowmax)`` over the reference ``queries [B, M, d]`` and the full ``keys
    [B, T, d]``; the target is each row's mass ``A.sum(1)``, or, with ``normalise`` (as the refit's NNLS scales rows),
    each row divided by its mass so every target is 1. Greedy: the entry whose column correlates most with the
    residual ``target - A[:, S] w`` joins ``S``, then ``w`` = least squares of ``A[:, S] w ~= target`` clamped to
    ``>= 1e-12``; until the head holds its count. ``first``: entry 0 (BOS) is in ``S`` from the start.

    Batched over heads (a head stops picking at its count); the solves use the Gram matrix ``A^T A`` in float64.
    Not the default selection (:func:`select_entries`): measured in ``bench/compaction_kl.py`` (docs/compaction.md).
    """
    gram, rhs = _mass_system(queries, keys, normalise)
    return _omp(gram, rhs, counts, first)


def omp_select_entries(
    queries: torch.Tensor, keys: torch.Tensor, counts: torch.Tensor, *, normalise: bool = True
) -> torch.Tensor:
    """``[layers, kv_heads, T]`` bool: :func:`omp_select` for every (layer, kv head) of ``queries [layers, kv_heads,
    M, d]`` and ``keys [layers, kv_heads, T, d]`` at ``counts [layers, kv_heads]`` (e.g.
    ``select_entries(...).sum(-1)``, so each head keeps as many entries as the global threshold gives it), BOS kept;
    the least-squares systems are built one layer at a time, the greedy runs over all heads at once."""
    systems = [_mass_system(q, k, normalise) for q, k in zip(queries, keys)]
    gram, rhs = (torch.cat(parts) for parts in zip(*systems))
    return _omp(gram, rhs, counts.flatten(), True).view(keys.shape[:3])


def _mass_system(queries: torch.Tensor, keys: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal equations ``A^T A [B, T, T]`` and ``A^T target [B, T]`` (float64) of :func:`omp_select`."""
    s = torch.einsum("bmd,btd->bmt", queries.float(), keys.float()) / math.sqrt(queries.shape[-1])
    a = torch.exp(s - s.amax(-1, keepdim=True)).to(torch.float64)  # [B, M, T]
    if normalise:
        a = a / a.sum(-1, keepdim=True)
    target = a.sum(-1, keepdim=True)  # [B, M, 1]
    return torch.bmm(a.transpose(1, 2), a), torch.bmm(a.transpose(1, 2), target)[..., 0]


def _omp(gram: torch.Tensor, rhs: torch.Tensor, counts: torch.Tensor, first: bool) -> torch.Tensor:
    """The greedy of :func:`omp_select` from its normal equations; the chosen columns of ``gram`` are gathered as they
    are picked, so each step touches ``[heads, T, step]`` of it."""
    batch, length = rhs.shape
    device = gram.device
    counts = counts.to(device).clamp(1, length).to(torch.long)
    width = int(counts.max())
    chosen = torch.zeros(batch, length, dtype=torch.bool, device=device)
    order = torch.zeros(batch, width, dtype=torch.long, device=device)  # entries in the order they were chosen
    columns = torch.zeros(batch, length, width, dtype=gram.dtype, device=device)  # gram[:, :, order]
    weights = torch.zeros(batch, width, dtype=gram.dtype, device=device)
    rows = torch.arange(batch, device=device)
    for step in range(width):
        active = rows[counts > step]
        if step == 0 and first:
            pick = torch.zeros(len(active), dtype=torch.long, device=device)
        else:
            corr = rhs[active] - torch.bmm(columns[active, :, :step], weights[active, :step, None])[..., 0]
            pick = corr.masked_fill(chosen[active], -math.inf).argmax(-1)
        order[active, step] = pick
        chosen[active, pick] = True
        columns[active, :, step] = gram[active, :, pick]
        sel = order[active, : step + 1]
        g_sel = torch.gather(columns[active, :, : step + 1], 1, sel[..., None].expand(-1, -1, step + 1))  # [b, k, k]
        r_sel = torch.gather(rhs[active], 1, sel)[..., None]
        weights[active, : step + 1] = _solve_normal(g_sel, r_sel).clamp_min(1e-12)
    return chosen


def _solve_normal(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Least squares from its normal equations ``gram w = rhs`` (``[b, k, k]``, ``[b, k, 1]``): Cholesky with a
    relative jitter of 1e-12, the SVD-based solver for the heads whose Gram is too badly conditioned for it."""
    jitter = 1e-12 * torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)[:, None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    factor, info = torch.linalg.cholesky_ex(gram + jitter * eye)
    w = torch.cholesky_solve(rhs, factor)
    bad = (info != 0) | ~torch.isfinite(w).all(-1).all(-1)
    if bool(bad.any()):
        w[bad] = torch.linalg.lstsq(gram[bad], rhs[bad], driver="gelsd").solution
    return w[..., 0]
