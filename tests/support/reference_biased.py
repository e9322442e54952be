"""A straightforward implementation of decoding over compact (biased) memories, to check the optimised one against.

Every memory's padded K/V is rotated whole with the model's own rotary embedding and kept, padding included
(masked by its ``-inf`` bias); the bias is laid over the whole cache; attention is eager, key/value heads
repeated per query head; the greedy loop feeds one token at a time. It shares no decoding code with sac_rag:
it runs a plain transformers model (the decoder's weights, no adapter) through ``DynamicCache``.
"""

from __future__ import annotations

import math

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from sac_rag.memory.chunk import MemoryChunk

NAME = "sac_rag_test_reference_biased"


def _attention(module, query, key, value, attention_mask, scaling, dropout=0.0, reference_bias=None, **kwargs):
    groups = query.shape[1] // key.shape[1]
    keys, values = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = query @ keys.transpose(2, 3) * scaling  # [1, Hq, q, kv]
    q_len, kv_len = scores.shape[-2:]
    bias = reference_bias[module.layer_idx]  # [Hkv, past]: every cache entry before this forward
    full = torch.zeros(query.shape[1], q_len, kv_len, dtype=scores.dtype)
    full[:, :, : bias.shape[1]] = bias.repeat_interleave(groups, dim=0)[:, None, :]
    future = torch.arange(kv_len)[None, :] > torch.arange(kv_len - q_len, kv_len)[:, None]
    full[:, future] = -math.inf
    weights = torch.softmax(scores + full, dim=-1)
    return (weights @ values).transpose(1, 2).contiguous(), weights


AttentionInterface.register(NAME, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def _rotate(model, keys: torch.Tensor, delta: int) -> torch.Tensor:
    cos, sin = model.model.rotary_emb(keys, torch.tensor([[delta]]))
    half = keys.shape[-1] // 2
    return keys * cos + torch.cat([-keys[..., half:], keys[..., :half]], dim=-1) * sin


@torch.no_grad()
def reference_greedy(
    model, segments: list, max_new_tokens: int, shared_header: bool = False
) -> tuple[list[torch.Tensor], list[int]]:
    """Logits of every step and the greedy ids of ``model`` (a plain causal LM) reading ``segments``: MemoryChunks
    and token-id lists laid out one after the other from position 1. With ``shared_header``, every memory after the
    first masks (``-inf``) its entries of the first ``meta["header"]`` tokens."""
    model.set_attn_implementation(NAME)
    config = model.config
    heads = config.num_key_value_heads
    bias = [torch.zeros(heads, 0) for _ in range(config.num_hidden_layers)]
    cache, position = DynamicCache(), 1

    def feed(ids: list[int]) -> torch.Tensor:
        nonlocal position
        positions = torch.arange(position, position + len(ids))[None]
        out = model(input_ids=torch.tensor([ids]), position_ids=positions, cache=cache, reference_bias=bias)
        for layer in range(len(bias)):
            bias[layer] = torch.cat([bias[layer], torch.zeros(heads, len(ids))], dim=1)
        position += len(ids)
        return out.logits[0, -1].float()

    placed = 0
    for seg in segments:
        if isinstance(seg, MemoryChunk):
            keys = _rotate(model, seg.keys, position - seg.offset)
            seg_bias = seg.bias if seg.bias is not None else torch.zeros(seg.keys.shape[:3])
            if shared_header and placed:
                header = seg.positions.expand(seg.keys.shape[:3]) < seg.meta.get("header", 0)
                seg_bias = seg_bias.masked_fill(header, -math.inf)
            placed += 1
            for layer in range(len(bias)):
                cache.update(keys[layer][None], seg.values[layer][None], layer)
                bias[layer] = torch.cat([bias[layer], seg_bias[layer]], dim=1)
            position += seg.length
        else:
            logits = feed(list(seg))
    steps, ids = [logits], [int(logits.argmax())]
    while len(ids) < max_new_tokens:
        steps.append(feed(ids[-1:]))
        ids.append(int(steps[-1].argmax()))
    return steps, ids
