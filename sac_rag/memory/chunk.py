"""MemoryChunk: the compressed memory of one passage, as plain tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from sac_rag.memory.geometry import entry_nbytes, full_kv_nbytes

#: ``meta`` key: how many of the passage's first tokens are its context header (BOS and the context prefix), for a
#: memory that holds every token's entries (full K/V, compact); composed after another memory, it leaves them out
#: (:func:`sac_rag.memory.compose.compose`). Missing: no header to leave out (SAC anchors, memories made before).
HEADER = "header"


@dataclass
class MemoryChunk:
    """The K/V entries a memory keeps of one passage: a SAC compressor's anchors, every token (full K/V),
    or a compaction's per-head entries (:mod:`sac_rag.compaction`).

    Attributes:
        keys: ``[num_layers, num_kv_heads, n_anchors, head_dim]``, after RoPE, rotated at
            position ids ``offset + positions``.
        values: same shape as ``keys``.
        positions: ``[n_anchors]`` int64, the anchors' position ids relative to the passage's
            first token (0-based token indices); ``[num_layers, num_kv_heads, n_anchors]`` when each
            head keeps its own entries (``-1`` on padding).
        length: number of tokens of the passage as compressed (BOS and prefix included).
        offset: the position id the passage's first token had when its keys were rotated.
        fingerprint: identifies the compressor (base model + adapter + config) that made it.
        meta: free JSON-safe information (e.g. the compressor's ratio; ``kind``: "sac", "full_kv", "compact";
            :data:`HEADER`: the tokens of its context header).
        bias: ``[num_layers, num_kv_heads, n_anchors]`` float32 logit bias the decoder adds to each entry's
            attention score, ``-inf`` on padding (heads keep different numbers of entries); ``None``: no bias.
    """

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    length: int
    offset: int = 1
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)
    bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.keys.ndim != 4 or self.keys.shape != self.values.shape:
            raise ValueError(
                "keys and values must both be [num_layers, num_kv_heads, n_anchors, head_dim], "
                f"got {tuple(self.keys.shape)} and {tuple(self.values.shape)}"
            )
        per_head = (*self.keys.shape[:3],)
        if tuple(self.positions.shape) not in ((self.keys.shape[2],), per_head):
            raise ValueError(
                f"positions must be [n_anchors={self.keys.shape[2]}] or {list(per_head)}, "
                f"got {tuple(self.positions.shape)}"
            )
        if self.bias is not None and tuple(self.bias.shape) != per_head:
            raise ValueError(f"bias must be {list(per_head)}, got {tuple(self.bias.shape)}")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")

    @property
    def shape(self) -> torch.Size:
        """``keys.shape``: ``[num_layers, num_kv_heads, n_anchors, head_dim]``."""
        return self.keys.shape

    @property
    def pending(self) -> Callable | None:
        """What will make this chunk's keys, values and positions when they are first read (:class:`DeferredChunk`);
        None: they are plain tensors."""
        return None

    @property
    def n_anchors(self) -> int:
        return self.shape[2]

    @property
    def entries(self) -> int:
        """K/V entries held over all (layer, kv head) pairs (padding left out)."""
        if self.bias is None:
            return self.shape[0] * self.shape[1] * self.shape[2]
        return int(torch.isfinite(self.bias).sum())

    @property
    def entries_per_head(self) -> float:
        """K/V entries held per (layer, kv head), on average: the positions the decoder attends to in this
        memory (``n_anchors`` for SAC and full-K/V memories, whose heads all hold the same entries)."""
        return self.entries / (self.shape[0] * self.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.keys.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the K/V entries held (padding left out) and, for a biased memory, their biases and positions
        as stored (:func:`~sac_rag.memory.geometry.entry_nbytes`)."""
        if self.bias is None:
            return self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()
        return entry_nbytes(self.shape[-1], self.dtype, biased=True) * self.entries

    def full_kv_nbytes(self, dtype: torch.dtype | None = None) -> int:
        """Bytes a full KV cache of the same passage would take (every token, not just anchors)."""
        layers, heads, _, dim = self.shape
        return full_kv_nbytes((layers, heads, dim), self.length, dtype or self.dtype)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> MemoryChunk:
        """A copy with keys/values converted (positions stay int64)."""
        return replace(
            self,
            keys=self.keys.to(device=device, dtype=dtype),
            values=self.values.to(device=device, dtype=dtype),
            positions=self.positions.to(device=device),
            meta=dict(self.meta),
            bias=None if self.bias is None else self.bias.to(device=device),
        )


def _made(name: str) -> property:
    """A :class:`DeferredChunk` field, made (with the other pending ones) when first read or set."""
    held = f"_{name}"

    def get(self: DeferredChunk) -> torch.Tensor:
        if self._pending is not None:
            self._run()
        return getattr(self, held)

    def put(self: DeferredChunk, value: torch.Tensor) -> None:
        if self._pending is not None:
            self._run()
        setattr(self, held, value)

    return property(get, put, doc=f"``{name}``, as :class:`MemoryChunk` holds it (made when first read)")


class DeferredChunk(MemoryChunk):
    """A MemoryChunk whose ``keys``, ``values`` and ``positions`` are made when first read (or set), by a callable:
    for a maker whose reader may never need them (a compact memory read from a store is placed from the layout it is
    read with, :func:`sac_rag.store.codec.unpack_chunk`). Read, set, copied or pickled, it is the MemoryChunk of the
    tensors the callable makes; its shape, dtype, bias and the rest are known without making them. Built from fields
    (``DeferredChunk(keys, values, ...)``, as :func:`dataclasses.replace` builds one) it is a plain MemoryChunk;
    :meth:`later` makes one whose tensors are pending."""

    _pending: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    keys = _made("keys")
    values = _made("values")
    positions = _made("positions")

    @classmethod
    def later(
        cls,
        make: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        shape: tuple[int, int, int, int],
        dtype: torch.dtype,
        length: int,
        offset: int = 1,
        fingerprint: str = "",
        meta: dict | None = None,
        bias: torch.Tensor | None = None,
    ) -> DeferredChunk:
        """A chunk shaped ``shape`` (of ``keys``) in ``dtype`` whose keys, values and positions ``make()`` returns
        when one of them is first read; they are checked then as any MemoryChunk's are."""
        chunk = cls.__new__(cls)
        chunk._shape, chunk._dtype = torch.Size(shape), dtype
        chunk.length, chunk.offset, chunk.fingerprint = length, offset, fingerprint
        chunk.meta = {} if meta is None else meta
        chunk.bias = bias
        if len(chunk._shape) != 4 or (bias is not None and tuple(bias.shape) != tuple(chunk._shape[:3])):
            raise ValueError(f"a chunk shaped {list(chunk._shape)} cannot hold a bias shaped {list(bias.shape)}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        chunk._pending = make
        return chunk

    def _run(self) -> None:
        keys, values, positions = self._pending()
        if keys.shape != self._shape or keys.dtype != self._dtype:
            raise ValueError(f"made keys {tuple(keys.shape)} {keys.dtype}, promised {tuple(self._shape)} {self._dtype}")
        self._keys, self._values, self._positions = keys, values, positions
        self._pending = None  # after the tensors: a reader that sees nothing pending finds them
        self.__post_init__()

    @property
    def pending(self) -> Callable | None:
        return self._pending

    @property
    def shape(self) -> torch.Size:
        return self._shape if self._pending is not None else self.keys.shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype if self._pending is not None else self.keys.dtype

    def __getstate__(self) -> dict:
        if self._pending is not None:
            self._run()
        return dict(self.__dict__)
