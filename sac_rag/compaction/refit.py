"""Attention matching (arXiv 2602.16284): refit a few kept keys so they stand for a whole block.

For each head, reference queries ``q`` (what the decoder will ask of the block) see the block's full
keys ``K`` and values ``V``. A compact block keeps keys ``K'`` (a subset of ``K``, or other keys such
as SAC anchors). Two closed-form steps make it answer those queries like the full block:

1. **Mass.** Weights ``w >= 0`` with ``sum_j w_j exp(q.k'_j / sqrt d) ~= sum_i exp(q.k_i / sqrt d)`` for
   every reference query (non-negative least squares, each row scaled by its full mass); the memory
   stores the logit bias ``beta = log w``.
2. **Output.** Values ``V'`` by ridge least squares, pulled towards the kept values, so that
   ``softmax(q.K'/sqrt d + beta) V' ~= softmax(q.K/sqrt d) V``.

A block that matches its own mass and output composes: attention over several blocks (and the
question's tokens) is the mass-weighted mean of each block's output, so nothing else needs to know.

Every step is batched over heads (``[B, ...]`` tensors, ``B`` = layers x kv heads or a slice of them);
rows of a ragged head are padded with ``mask = False`` and come back with ``beta = -inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NNLS_ITERATIONS = 300
RIDGE = 1e-3  # the values' ridge, relative to the mean diagonal of P^T P
MIN_WEIGHT = 1e-6  # weights are clamped here, so beta stays finite (>= log 1e-6 = -13.8)


@dataclass
class Refit:
    """A refitted block: ``bias [B, n]`` (``-inf`` on padding) and ``values [B, n, d]``."""

    bias: torch.Tensor
    values: torch.Tensor


def nnls_multiplicative(gram: torch.Tensor, rhs: torch.Tensor, mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Batched non-negative least squares ``min_{w >= 0} |A w - b|^2`` from ``gram = A^T A`` and
    ``rhs = A^T b``, for ``A, b >= 0`` (then ``rhs >= 0``): multiplicative updates (Lee & Seung), which
    keep ``w`` non-negative and need no active set, so every head of a batch is solved at once.

    Starts from the best uniform weight; padded entries (``mask = False``) stay at zero.
    """
    ones = mask.to(gram.dtype)[..., None]  # [B, n, 1]
    scale = (rhs[..., None] * ones).sum((1, 2)) / (ones.transpose(1, 2) @ gram @ ones).flatten().clamp_min(1e-30)
    w = scale[:, None, None] * ones
    rhs = rhs[..., None]
    for _ in range(iterations):
        w = w * rhs / (torch.bmm(gram, w) + 1e-30)
    return (w * ones)[..., 0]


def refit(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kept_keys: torch.Tensor,
    kept_values: torch.Tensor,
    mask: torch.Tensor,
    *,
    full_mask: torch.Tensor | None = None,
    ridge: float = RIDGE,
    iterations: int = NNLS_ITERATIONS,
    max_queries: int | None = None,
) -> Refit:
    """Fit the bias and values of ``kept_keys`` so the block answers ``queries`` like ``keys``/``values``.

    Args:
        queries: ``[B, M, d]`` reference queries, RoPE'd at the positions the decoder will use.
        keys, values: ``[B, T, d]`` the full block (keys RoPE'd as stored).
        kept_keys, kept_values: ``[B, n, d]`` the compact block's keys and initial values.
        mask: ``[B, n]`` bool, which kept entries are real (ragged heads are padded).
        full_mask: ``[B, T]`` bool, which full entries belong to the block (default: all).
        max_queries: at most this many reference queries, evenly spaced among them (default: all).
    Scores and exponentials are computed in float32 (shifted by each query's largest score), the Gram
    matrices and solves in float64, where they are badly conditioned.
    """
    dtype = torch.float64
    if max_queries is not None and queries.shape[1] > max_queries:
        queries = queries[:, torch.linspace(0, queries.shape[1] - 1, max_queries).round().long()]
    q, k, v = queries.float(), keys.float(), values.float()
    kk, kv = kept_keys.float(), kept_values.to(dtype)
    inv = 1.0 / math.sqrt(q.shape[-1])
    s_full = torch.einsum("bmd,btd->bmt", q, k) * inv
    if full_mask is not None:
        s_full = s_full.masked_fill(~full_mask[:, None, :], -math.inf)
    s_kept = (torch.einsum("bmd,bnd->bmn", q, kk) * inv).masked_fill(~mask[:, None, :], -math.inf)
    top = torch.maximum(s_full.amax(-1), s_kept.amax(-1))[..., None]  # [B, M, 1] shared shift
    full_exp = torch.exp(s_full - top)
    mass = full_exp.sum(-1)  # [B, M]
    target = (torch.bmm(full_exp, v) / mass[..., None]).to(dtype)  # the full block's output
    a = (torch.exp(s_kept - top) / mass[..., None]).to(dtype)  # rows scaled by their full mass: targets are 1
    gram = torch.bmm(a.transpose(1, 2), a)
    w = nnls_multiplicative(gram, a.sum(1), mask, iterations)
    bias = torch.log(w.clamp_min(MIN_WEIGHT)).masked_fill(~mask, -math.inf)

    p = torch.softmax(s_kept.to(dtype) + bias[:, None, :], dim=-1)  # [B, M, n]
    p = torch.nan_to_num(p)  # a head with no kept entry (all -inf) gives no weights
    ptp = torch.bmm(p.transpose(1, 2), p)
    diag = torch.diagonal(ptp, dim1=-2, dim2=-1)
    lam = ridge * (diag.sum(-1) / mask.sum(-1).clamp_min(1)).clamp_min(1e-12)  # [B]
    eye = torch.eye(ptp.shape[-1], dtype=dtype)
    lhs = ptp + lam[:, None, None] * eye
    rhs = torch.bmm(p.transpose(1, 2), target) + lam[:, None, None] * kv
    new_values = torch.cholesky_solve(rhs, torch.linalg.cholesky(lhs))  # lhs is symmetric positive definite
    new_values = torch.where(mask[..., None], new_values, kv)
    return Refit(bias.to(torch.float32), new_values.to(values.dtype))


def attention_output(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head attention of ``queries [B, M, d]`` over one block: its output ``[B, M, d]`` and its log mass
    ``log sum_j exp(s_j + beta_j)`` ``[B, M]`` (what a block contributes to a composed softmax)."""
    s = torch.einsum("bmd,btd->bmt", queries.double(), keys.double()) / math.sqrt(queries.shape[-1])
    if bias is not None:
        s = s + bias.double()[:, None, :]
    return torch.einsum("bmt,btd->bmd", torch.softmax(s, -1), values.double()), torch.logsumexp(s, -1)
