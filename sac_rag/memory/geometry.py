"""KV-cache geometry: the shape of a decoder's per-token K/V and the bytes a full cache of it takes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def kv_shape(config) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of a transformers model config (grouped-query heads and an explicit
    ``head_dim`` honoured)."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, heads, head_dim


def full_kv_nbytes(shape: Sequence[int], tokens: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of a full KV cache (keys and values, every token) of ``tokens`` tokens for ``shape`` =
    ``(layers, kv_heads, head_dim)``, stored as ``dtype``."""
    layers, heads, head_dim = shape
    return 2 * layers * heads * head_dim * tokens * torch.empty((), dtype=dtype).element_size()


# A biased memory stores, beside each entry's K/V, its logit bias (float16) and token position (int16).
BIAS_DTYPE = torch.float16
ENTRY_POSITION_DTYPE = torch.int16


def entry_nbytes(head_dim: int, dtype: torch.dtype = torch.bfloat16, *, biased: bool = False) -> int:
    """Bytes one (layer, kv head) entry of a memory takes: its key and value in ``dtype``, plus its bias and
    position when ``biased``."""
    kv = 2 * head_dim * torch.empty((), dtype=dtype).element_size()
    if not biased:
        return kv
    return (
        kv
        + torch.empty((), dtype=BIAS_DTYPE).element_size()
        + torch.empty((), dtype=ENTRY_POSITION_DTYPE).element_size()
    )
