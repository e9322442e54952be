"""Attention with a per-head logit bias on memory entries, through transformers' ``AttentionInterface``.

Compacted memories (:mod:`sac_rag.compaction`) carry, for every (layer, kv head), a logit bias per
entry: ``softmax(q.k / sqrt d + beta)``. The function registered here reads this layer's bias from a
:class:`MemoryBias` (the cache's first columns, the memories; the text after them gets none) and runs
SDPA on the kv heads themselves: each kv head's query heads are laid along the batch axis (one query: along the
query axis), so the keys, values and mask are never repeated per query head, and the causal part of the mask is
built once per forward.

The model switches to it only inside :func:`biased_attention`, for prompts that carry a bias; every
other forward keeps the model's own implementation, so the official path is untouched. The same
function lets a caller observe each layer's RoPE'd queries and keys (``attention_probe``), which
compaction's scoring pass uses, and time the attention (``phases``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from sac_rag.decoding.phases import Phases, timed

IMPLEMENTATION = "sac_rag_biased_sdpa"

# (layer index, query [B, Hq, q, d], key [B, Hkv, kv, d]) -> None; called before attention
AttentionProbe = Callable[[int, torch.Tensor, torch.Tensor], None]


class MemoryBias:
    """Per layer, the logit bias ``rows[layer]`` ``[kv_heads, n_layer]`` on that layer's first ``n_layer`` cache
    entries (in the query's dtype); every later entry gets none. One per forward: the causal part of the masks
    (the same for every layer, as every layer holds the same text after its memories) is built once."""

    def __init__(self, rows: Sequence[torch.Tensor]) -> None:
        self.rows = rows
        self._tail: tuple[tuple, torch.Tensor] | None = None

    def mask(self, layer: int, q_len: int, kv_len: int) -> torch.Tensor:
        """The additive mask of ``layer`` per kv head, ``[1, kv_heads, q_len, kv_len]``, which SDPA broadcasts over
        the query heads of each kv head (they are laid along the batch axis, or along the query axis for one query)."""
        row = self.rows[layer]
        heads, n = row.shape
        tail = self._causal(q_len, kv_len - n, row)
        return torch.cat([row[:, None, :].expand(heads, q_len, n), tail.expand(heads, *tail.shape)], dim=-1)[None]

    def _causal(self, q_len: int, t: int, like: torch.Tensor) -> torch.Tensor:
        """``[q_len, t]``: 0 where query ``i`` may see the ``t`` entries after the memories (the last ``q_len`` are
        the queries' own), the dtype's minimum where it may not."""
        key = (q_len, t, like.dtype, like.device)
        if self._tail is None or self._tail[0] != key:
            visible = (
                torch.arange(t, device=like.device)[None, :] <= torch.arange(t - q_len, t, device=like.device)[:, None]
            )
            tail = torch.zeros(q_len, t, dtype=like.dtype, device=like.device).masked_fill_(
                ~visible, torch.finfo(like.dtype).min
            )
            self._tail = (key, tail)
        return self._tail[1]


def _biased_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    memory_bias: MemoryBias | None = None,
    attention_probe: AttentionProbe | None = None,
    phases: Phases | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA attention plus ``memory_bias`` on this layer's first cache columns (none: the model's own SDPA)."""
    if attention_probe is not None:
        attention_probe(module.layer_idx, query, key)
    with timed(phases, "attention"):
        if memory_bias is None:
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        # One unpadded sequence whose layers may hold different numbers of memory entries: the mask transformers
        # made for the first layer's length does not fit every layer, so it is laid out here, per layer.
        batch, q_heads, q_len, dim = query.shape
        if batch != 1:
            raise ValueError(f"biased attention reads one sequence, got a batch of {batch}")
        kv_heads = key.shape[1]
        groups = q_heads // kv_heads
        mask = memory_bias.mask(module.layer_idx, q_len, key.shape[2])
        options = {"dropout_p": kwargs.get("dropout", 0.0), "scale": kwargs.get("scaling")}
        if q_len == 1:  # query heads h*groups .. (h+1)*groups - 1 read kv head h: stacked along the query axis
            out = F.scaled_dot_product_attention(query.reshape(1, kv_heads, groups, dim), key, value, mask, **options)
            return out.view(1, 1, q_heads, dim), None
        # the query heads of a kv head along the batch axis, the K/V and the mask broadcast to them (never repeated)
        q = query[0].unflatten(0, (kv_heads, groups)).transpose(0, 1)  # [groups, kv_heads, q_len, dim]
        out = F.scaled_dot_product_attention(
            q,
            key.expand(groups, -1, -1, -1),
            value.expand(groups, -1, -1, -1),
            mask.expand(groups, -1, -1, -1),
            **options,
        )
        return out.permute(2, 1, 0, 3).reshape(1, q_len, q_heads, dim), None


AttentionInterface.register(IMPLEMENTATION, _biased_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)


@contextmanager
def biased_attention(model_config) -> Iterator[None]:
    """Inside, a model with ``model_config`` runs :func:`_biased_sdpa` (which reads the ``memory_bias``,
    ``attention_probe`` and ``phases`` forward kwargs); its own implementation comes back on exit. Callers hold
    the model's lock (the config is shared state)."""
    previous = model_config._attn_implementation
    model_config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        model_config._attn_implementation = previous
