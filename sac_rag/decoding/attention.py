"""Attention with a per-head logit bias on memory entries, through transformers' ``AttentionInterface``.

Compacted memories (:mod:`sac_rag.compaction`) carry, for every (layer, kv head), a logit bias per
entry: ``softmax(q.k / sqrt d + beta)``. transformers' SDPA attention already takes an additive
``position_bias``; the function registered here picks this layer's slice of the prompt's bias, lays it
over the cache's first columns (the memories; the text after them gets none) and hands it to SDPA.

The model switches to it only inside :func:`biased_attention`, for prompts that carry a bias; every
other forward keeps the model's own implementation, so the official path is untouched. The same
function lets a caller observe each layer's RoPE'd queries and keys (``attention_probe``), which
compaction's scoring pass uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

IMPLEMENTATION = "sac_rag_biased_sdpa"

# (layer index, query [B, Hq, q, d], key [B, Hkv, kv, d]) -> None; called before attention
AttentionProbe = Callable[[int, torch.Tensor, torch.Tensor], None]


def _biased_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    memory_bias: torch.Tensor | None = None,
    attention_probe: AttentionProbe | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA attention plus ``memory_bias[layer] [kv_heads, n]`` on this layer's first ``n`` cache columns."""
    if attention_probe is not None:
        attention_probe(module.layer_idx, query, key)
    if memory_bias is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    # One unpadded sequence whose layers may hold different numbers of memory entries: the mask transformers
    # made for the first layer's length does not fit every layer, so causality is laid out here, per layer.
    q_len, kv_len = query.shape[2], key.shape[2]
    groups = query.shape[1] // key.shape[1]
    bias = memory_bias[module.layer_idx].to(device=query.device, dtype=query.dtype)  # [Hkv, n]
    full = torch.zeros(1, query.shape[1], q_len, kv_len, dtype=query.dtype, device=query.device)
    full[0, :, :, : bias.shape[1]] = bias.repeat_interleave(groups, dim=0)[:, None, :]
    if q_len > 1:
        rows = torch.arange(q_len, device=query.device)[:, None] + (kv_len - q_len)
        future = rows < torch.arange(kv_len, device=query.device)[None, :]
        full = full.masked_fill(future, torch.finfo(query.dtype).min)
    kwargs.pop("is_causal", None)
    return sdpa_attention_forward(module, query, key, value, None, is_causal=False, position_bias=full, **kwargs)


AttentionInterface.register(IMPLEMENTATION, _biased_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)


@contextmanager
def biased_attention(model_config) -> Iterator[None]:
    """Inside, a model with ``model_config`` runs :func:`_biased_sdpa` (which reads the ``memory_bias`` and
    ``attention_probe`` forward kwargs); its own implementation comes back on exit. Callers hold the
    model's lock (the config is shared state)."""
    previous = model_config._attn_implementation
    model_config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        model_config._attn_implementation = previous
