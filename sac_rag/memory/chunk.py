"""MemoryChunk: the compressed memory of one passage, as plain tensors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from sac_rag.memory.geometry import full_kv_nbytes


@dataclass
class MemoryChunk:
    """The anchor K/V a SAC compressor kept for one passage.

    Attributes:
        keys: ``[num_layers, num_kv_heads, n_anchors, head_dim]``, after RoPE, rotated at
            position ids ``offset + positions``.
        values: same shape as ``keys``.
        positions: ``[n_anchors]`` int64, the anchors' position ids relative to the passage's
            first token (0-based token indices).
        length: number of tokens of the passage as compressed (BOS and prefix included).
        offset: the position id the passage's first token had when its keys were rotated.
        fingerprint: identifies the compressor (base model + adapter + config) that made it.
        meta: free JSON-safe information (e.g. the compressor's ratio).
    """

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    length: int
    offset: int = 1
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keys.ndim != 4 or self.keys.shape != self.values.shape:
            raise ValueError(
                "keys and values must both be [num_layers, num_kv_heads, n_anchors, head_dim], "
                f"got {tuple(self.keys.shape)} and {tuple(self.values.shape)}"
            )
        if self.positions.ndim != 1 or self.positions.shape[0] != self.keys.shape[2]:
            raise ValueError(f"positions must be [n_anchors={self.keys.shape[2]}], got {tuple(self.positions.shape)}")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    @property
    def n_anchors(self) -> int:
        return self.keys.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.keys.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the anchor K/V tensors."""
        return self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()

    def full_kv_nbytes(self, dtype: torch.dtype | None = None) -> int:
        """Bytes a full KV cache of the same passage would take (every token, not just anchors)."""
        layers, heads, _, dim = self.keys.shape
        return full_kv_nbytes((layers, heads, dim), self.length, dtype or self.dtype)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> MemoryChunk:
        """A copy with keys/values converted (positions stay int64)."""
        return replace(
            self,
            keys=self.keys.to(device=device, dtype=dtype),
            values=self.values.to(device=device, dtype=dtype),
            positions=self.positions.to(device=device),
            meta=dict(self.meta),
        )
