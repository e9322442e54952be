"""Query-agnostic importance of every cached entry (KVzip, arXiv 2505.23416).

After the passage's own prefill, the decoder is teacher-forced on a repeat prompt followed by the
passage again. An entry's score in (layer, kv head) is the largest softmax attention it receives from
any repeat position and any query head of that kv head's group: an entry the decoder needs to
reconstruct its context is one it will need to answer about it. The repeat pass's RoPE'd queries are
kept too: they are the reference queries of the refit (:mod:`sac_rag.compaction.refit`).

Long passages are repeated in pieces (each piece on top of the passage's cache, which is cropped back
in between), so no pass holds more than ``repeat_chunk`` repeat queries; attention probabilities are
reduced layer by layer as they are computed, never kept for all layers at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from sac_rag.decoding.attention import biased_attention

REPEAT_PROMPT = "\n\nRepeat the previous context exactly.\n"
REPEAT_CHUNK = 512  # passage tokens repeated per pass


@dataclass
class PassageAnalysis:
    """What compaction needs to know about one passage, from the decoder itself.

    Attributes:
        keys, values: ``[layers, kv_heads, T, head_dim]`` every token's K/V (keys RoPE'd at ``offset + i``).
        scores: ``[layers, kv_heads, T]`` float32 importance (max attention received in the repeat pass).
        queries: ``[layers, kv_heads, M, head_dim]`` the repeat pass's RoPE'd queries of each kv head's group.
        offset: the position id of the passage's first token.
    """

    keys: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    queries: torch.Tensor
    offset: int

    @property
    def length(self) -> int:
        return self.keys.shape[2]


class _Probe:
    """Collects, per layer, the max attention each passage entry receives and the queries (one pass)."""

    def __init__(self, layers: int, length: int) -> None:
        self.length = length
        self.scores: list[torch.Tensor | None] = [None] * layers
        self.queries: list[list[torch.Tensor]] = [[] for _ in range(layers)]

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor) -> None:
        q = query[0].float()  # [Hq, Q, d]
        k = key[0].float()  # [Hkv, T + Q, d]
        heads, n_q, dim = q.shape
        kv_heads, n_kv = k.shape[0], k.shape[1]
        groups = heads // kv_heads
        logits = torch.einsum("hqd,hkd->hqk", q, k.repeat_interleave(groups, dim=0)) / math.sqrt(dim)
        rows = torch.arange(n_q, device=q.device)[:, None] + (n_kv - n_q)
        logits = logits.masked_fill(rows < torch.arange(n_kv, device=q.device)[None, :], -math.inf)
        probs = torch.softmax(logits, dim=-1)[..., : self.length]  # [Hq, Q, T]
        best = probs.amax(dim=1).view(kv_heads, groups, self.length).amax(dim=1)  # [Hkv, T]
        previous = self.scores[layer]
        self.scores[layer] = best if previous is None else torch.maximum(previous, best)
        self.queries[layer].append(q.reshape(kv_heads, groups * n_q, dim))


def analyse_passage(
    transformer: nn.Module,
    ids: Sequence[int],
    repeat_ids: Sequence[int],
    *,
    offset: int = 1,
    decoder_mode: Callable[[], AbstractContextManager],
    repeat_chunk: int = REPEAT_CHUNK,
) -> PassageAnalysis:
    """Prefill ``ids`` (the passage as the decoder will read it, BOS first) at ``offset``, then score every
    entry by repeat passes of ``repeat_ids`` followed by ``ids[1:]`` in pieces of ``repeat_chunk`` tokens."""
    device = next(transformer.parameters()).device
    length = len(ids)
    cache = DynamicCache()
    with decoder_mode():
        transformer(
            input_ids=torch.tensor([list(ids)], device=device),
            position_ids=torch.arange(offset, offset + length, device=device)[None],
            cache=cache,
            use_cache=True,
        )
    keys = torch.stack([layer.keys[0] for layer in cache.layers])  # [L, Hkv, T, d]
    values = torch.stack([layer.values[0] for layer in cache.layers])
    probe = _Probe(keys.shape[0], length)
    body = list(ids[1:]) or list(ids)
    for start in range(0, len(body), repeat_chunk):
        piece = list(repeat_ids) + body[start : start + repeat_chunk]
        if cache.get_seq_length() > length:
            cache.crop(length - cache.get_seq_length())  # a negative count: drop the last repeat piece
        positions = torch.arange(offset + length, offset + length + len(piece), device=device)[None]
        with decoder_mode(), biased_attention(transformer.config):
            transformer(
                input_ids=torch.tensor([piece], device=device),
                position_ids=positions,
                cache=cache,
                use_cache=True,
                attention_probe=probe,
            )
    scores = torch.stack(probe.scores)  # type: ignore[arg-type]
    queries = torch.stack([torch.cat(q, dim=1) for q in probe.queries])
    return PassageAnalysis(keys.clone(), values.clone(), scores, queries, offset)
