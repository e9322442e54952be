"""int8 K/V: each head's vectors rotated by a fixed Hadamard matrix, then one float16 scale per (layer, kv head).

``x ≈ (q * scale) @ H``. RoPE'd keys carry a few large channels; the rotation (orthonormal, its own inverse)
spreads them over the whole head, so that one scale per head suffices: 2 x layers x kv heads scales per
memory. The store's int8 codec (:mod:`sac_rag.store.codec`) and int8 compact memories
(:mod:`sac_rag.compaction`) share these functions.
"""

from __future__ import annotations

import functools

import torch

SCALE_DTYPE = torch.float16
SCALES_PER_HEAD = 2  # one for the keys, one for the values


@functools.lru_cache(maxsize=8)
def hadamard(n: int) -> torch.Tensor:
    """An orthonormal, symmetric ``n x n`` rotation: Sylvester Hadamard blocks of the largest power of two
    dividing ``n`` on the diagonal (one block when ``n`` is a power of two, as head dims usually are)."""
    block = n & -n
    h = torch.ones(1, 1)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return torch.block_diag(*[h / block**0.5] * (n // block))


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values of the Hadamard-rotated ``x [layers, heads, n, d]`` and float16 scales, one per head."""
    y = x.float() @ hadamard(x.shape[-1]).to(x.device)
    scale = (y.abs().amax(dim=(2, 3), keepdim=True) / 127.0).clamp_min(1e-8).to(SCALE_DTYPE)
    q = torch.round(y / scale.float()).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(
    q: torch.Tensor,
    scale: torch.Tensor,
    out: torch.Tensor | None = None,
    work: torch.Tensor | None = None,
    rotation: torch.Tensor | None = None,
) -> torch.Tensor:
    """``q`` scaled back and rotated back (float32), written into ``out`` when given. ``scale`` broadcasts over
    ``q``: one per head (``[..., 1]``, rotated) or, in the earlier per-channel format, one per channel. ``work``: a
    float32 tensor shaped as ``q`` for the scaled values (else a new one). ``rotation``: the ``[d, d]`` matrix the
    scaled rows are multiplied by instead of :func:`hadamard` (rotated format only): the Hadamard followed by another
    linear map of the rows, e.g. a RoPE shift (``shifter.shift(hadamard(d), delta)``), applied in the same product."""
    x = q.float() if work is None else work.copy_(q)  # int8 * float32 in one op would be several times slower
    x.mul_(scale.float())
    if scale.shape[-1] == 1:  # rotated, one scale per head; else the earlier per-channel format
        rotation = hadamard(q.shape[-1]) if rotation is None else rotation
        return torch.matmul(x, rotation.to(x.device), out=out)
    if rotation is not None:
        raise ValueError("the per-channel int8 format is not rotated: it takes no rotation")
    return x if out is None else out.copy_(x)


def int8_round_trip(x: torch.Tensor) -> torch.Tensor:
    """``x [layers, heads, n, d]`` as int8 storage gives it back (float32)."""
    return dequantize_int8(*quantize_int8(x))
