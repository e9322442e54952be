"""Encode contexts chunk by chunk, bidirectionally, and keep only the anchors' per-layer K/V."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache

from sac_rag.text.anchors import ChunkLayout, chunk_layout

COMPRESS_BATCH_SIZE = 8  # sequences compressed per forward pass, by default


@dataclass
class AnchorKV:
    """Anchor K/V of one context: ``[num_layers, num_kv_heads, n_anchors, head_dim]`` each."""

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor  # anchors' token indices in the context
    length: int


@dataclass
class _ChunkJob:
    seq: int
    layout: ChunkLayout


def chunk_mask(lengths: Sequence[int], dtype: torch.dtype, device: torch.device, causal: bool = False) -> torch.Tensor:
    """Additive ``[B, 1, n, n]`` mask: every token sees every real token of its chunk (only earlier ones
    when ``causal``), never a pad."""
    n = max(lengths)
    valid = torch.arange(n, device=device)[None, :] < torch.tensor(list(lengths), device=device)[:, None]
    hidden = ~valid[:, None, None, :]
    if causal:
        hidden = hidden | torch.ones(n, n, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(len(lengths), 1, n, n, dtype=dtype, device=device).masked_fill(hidden, torch.finfo(dtype).min)


def encode_anchor_kv(
    transformer: nn.Module,
    embed: nn.Module,
    role_tokens: torch.Tensor | None,
    sequences: Sequence[Sequence[int]],
    *,
    chunk_size: int,
    ratio: int,
    offset: int = 1,
    batch_size: int = COMPRESS_BATCH_SIZE,
    pad_id: int = 0,
    causal: bool = False,
    progress: bool = False,
) -> list[AnchorKV]:
    """Anchor K/V of each token sequence (differentiable: callers choose grad or inference mode).

    Every sequence is cut into ``chunk_size`` chunks; chunks of all sequences are encoded in batches
    (longest first, right-padded, pads never attended), token ``i`` at position id ``offset + i``.
    ``transformer`` is the compressor's inner decoder stack (LoRA enabled), called with a 4-D mask.
    With ``role_tokens=None``, ``ratio=1`` and ``causal=True`` this is a plain forward pass keeping
    every token's K/V (full-KV reuse).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    jobs = [_ChunkJob(s, c) for s, seq in enumerate(sequences) for c in chunk_layout(len(seq), chunk_size, ratio)]
    if role_tokens is not None and any(len(j.layout.anchors) > role_tokens.shape[0] for j in jobs):
        raise ValueError(f"a chunk has more anchors than the {role_tokens.shape[0]} anchor embeddings")
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].layout.length)
    device = embed.weight.device
    results: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="compressing chunks", unit="chunk", disable=not progress)
    for b0 in range(0, len(order), batch_size):
        batch = [jobs[i] for i in order[b0 : b0 + batch_size]]
        lengths = [j.layout.length for j in batch]
        n = max(lengths)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long, device=device)
        for row, job in enumerate(batch):
            c = job.layout
            ids[row, : c.length] = torch.tensor(sequences[job.seq][c.start : c.start + c.length], device=device)
        embeds = embed(ids)
        if role_tokens is not None:
            rows = torch.tensor([r for r, j in enumerate(batch) for _ in j.layout.anchors], device=device)
            cols = torch.tensor([a for j in batch for a in j.layout.anchors], device=device)
            slots = torch.tensor([s for j in batch for s in range(len(j.layout.anchors))], device=device)
            embeds = embeds.index_put((rows, cols), embeds[rows, cols] + role_tokens[slots].to(embeds.dtype))
        starts = torch.tensor([j.layout.start for j in batch], device=device)
        position_ids = offset + starts[:, None] + torch.arange(n, device=device)[None, :]
        cache = DynamicCache()
        transformer(
            inputs_embeds=embeds,
            attention_mask=chunk_mask(lengths, embeds.dtype, device, causal),
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        keys = torch.stack([layer.keys for layer in cache.layers], dim=1)  # [B, layers, kv, n, d]
        values = torch.stack([layer.values for layer in cache.layers], dim=1)
        for row, job in enumerate(batch):
            idx = torch.tensor(job.layout.anchors, device=device)
            results[order[b0 + row]] = (keys[row][:, :, idx], values[row][:, :, idx])
        bar.update(len(batch))
    bar.close()

    by_seq: list[list[int]] = [[] for _ in sequences]
    for i, job in enumerate(jobs):
        by_seq[job.seq].append(i)
    out: list[AnchorKV] = []
    for seq, mine_idx in zip(sequences, by_seq):
        mine = [(jobs[i], results[i]) for i in mine_idx]
        out.append(
            AnchorKV(
                keys=torch.cat([kv[0] for _, kv in mine], dim=2),
                values=torch.cat([kv[1] for _, kv in mine], dim=2),
                positions=torch.tensor([p for job, _ in mine for p in job.layout.anchor_indices], dtype=torch.long),
                length=len(seq),
            )
        )
    return out
