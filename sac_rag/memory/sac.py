"""SAC memories: the compressor's anchor K/V as :class:`MemoryChunk` s (docs/sac.md sections 3-6), and their
uncompressed reference, every token's K/V from the decoder (full per-passage KV reuse)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sac_rag.compression.encoder import AnchorKV
from sac_rag.memory.chunk import MemoryChunk

SAC_KIND = "sac"
FULL_KV_KIND = "full_kv"

#: ``encode(sequences, full_kv=, offset=, batch_size=, progress=)``: per-sequence K/V (the model's encoder).
Encode = Callable[..., list[AnchorKV]]


class EncodedMemories:
    """Memories straight from the encoder: SAC anchors (``full_kv=False``, ``ratio`` and ``chunk_size`` are
    recorded in each chunk's meta) or every token's K/V from the decoder (``full_kv=True``)."""

    def __init__(self, encode: Encode, *, full_kv: bool = False, ratio: int = 1, chunk_size: int = 0) -> None:
        self.encode = encode
        self.full_kv = full_kv
        self.kind = FULL_KV_KIND if full_kv else SAC_KIND
        self.meta = {"kind": self.kind} if full_kv else {"kind": self.kind, "ratio": ratio, "chunk_size": chunk_size}

    def make(
        self, sequences: Sequence[Sequence[int]], *, position_offset: int, batch_size: int, progress: bool
    ) -> list[MemoryChunk]:
        kvs = self.encode(
            sequences, full_kv=self.full_kv, offset=position_offset, batch_size=batch_size, progress=progress
        )
        return [
            MemoryChunk(
                kv.keys.clone(), kv.values.clone(), kv.positions, kv.length, position_offset, "", dict(self.meta)
            )
            for kv in kvs
        ]
