"""OMP selection (the attention-matching authors' choice of keys within a head): counts, BOS, and a mass fit no
worse than keeping the highest-scored entries at the same counts."""

from __future__ import annotations

import math

import pytest
import torch

from sac_rag.compaction.refit import nnls_multiplicative
from sac_rag.compaction.select import omp_select, omp_select_entries, select_entries


def random_heads(seed: int, heads: int = 6, length: int = 80, dim: int = 16, n_queries: int = 300):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(heads, length, dim, generator=gen) * 1.5
    keys[:, 0] *= 3  # a sink-like first entry
    queries = torch.randn(heads, n_queries, dim, generator=gen) * 1.5
    return queries, keys


def mass_error(queries: torch.Tensor, keys: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Per head, the relative mass error ``|A_S w - 1|`` of the refit's NNLS (rows scaled by their full mass) on the
    kept entries."""
    s = torch.einsum("bmd,btd->bmt", queries, keys).double() / math.sqrt(queries.shape[-1])
    e = torch.exp(s - s.amax(-1, keepdim=True))
    a = e / e.sum(-1, keepdim=True)
    a = a * kept[:, None, :]
    w = nnls_multiplicative(a.transpose(1, 2) @ a, a.sum(1), kept, 2000)
    return (torch.bmm(a, w[..., None])[..., 0] - 1).norm(dim=-1)


@pytest.mark.parametrize("normalise", [True, False])
def test_omp_keeps_each_heads_count_and_bos(normalise):
    queries, keys = random_heads(0)
    counts = torch.tensor([1, 2, 5, 11, 30, 80])
    kept = omp_select(queries, keys, counts, normalise=normalise)
    assert torch.equal(kept.sum(-1), counts)
    assert bool(kept[:, 0].all())


def test_omp_fits_the_mass_no_worse_than_the_highest_scores_at_the_same_counts():
    queries, keys = random_heads(1)
    scores = torch.softmax(torch.einsum("bmd,btd->bmt", queries, keys) / math.sqrt(keys.shape[-1]), -1).amax(1)
    by_score = select_entries(scores[None], 6 * 12)[0]  # one global threshold, BOS in every head
    counts = by_score.sum(-1)
    for normalise in (True, False):
        by_omp = omp_select(queries, keys, counts, normalise=normalise)
        assert torch.equal(by_omp.sum(-1), counts)
        omp_error, score_error = mass_error(queries, keys, by_omp), mass_error(queries, keys, by_score)
        assert bool((omp_error <= score_error * (1 + 1e-6) + 1e-9).all())
        assert float(omp_error.sum()) < float(score_error.sum())


def test_omp_over_layers_is_omp_per_layer():
    queries, keys = random_heads(2, heads=6, length=40)
    counts = torch.tensor([[1, 3, 7], [12, 4, 40]])
    kept = omp_select_entries(queries.view(2, 3, *queries.shape[1:]), keys.view(2, 3, *keys.shape[1:]), counts)
    assert kept.shape == (2, 3, 40) and torch.equal(kept.sum(-1), counts)
    assert torch.equal(kept[1], omp_select(queries[3:], keys[3:], counts[1]))
