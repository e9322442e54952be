"""Chunking and anchor layout (docs/sac.md sections 3 and 4).

Everything here is in *local* token indices, independent of the position ids a context is
encoded at: the token at index ``i`` of a context gets position id ``offset + i`` (the official
offset is 1). The anchor layout only depends on indices, so a memory shifted to another offset
keeps the same anchors.
"""

from __future__ import annotations

from dataclasses import dataclass


def anchor_local_indices(n: int, ratio: int) -> list[int]:
    """Indices, within a chunk of ``n`` tokens, of its anchors: uniform midpoints every ``ratio``.

    The first anchor sits ``(ratio - 1) // 2`` tokens into the chunk; a chunk too short for that
    gets exactly one anchor, on its first token.
    """
    if n < 1:
        raise ValueError(f"a chunk has at least one token, got {n}")
    start = (ratio - 1) // 2
    if start >= n:
        return [0]
    return list(range(start, n, ratio))


@dataclass(frozen=True)
class ChunkLayout:
    """One encoder chunk of a context: ``[start, start + length)`` and its anchors' local indices."""

    start: int
    length: int
    anchors: tuple[int, ...]

    @property
    def anchor_indices(self) -> list[int]:
        """The anchors' indices in the whole context."""
        return [self.start + a for a in self.anchors]


def chunk_layout(num_tokens: int, chunk_size: int, ratio: int) -> list[ChunkLayout]:
    """Cut a context of ``num_tokens`` tokens into ``chunk_size`` chunks and place their anchors."""
    if num_tokens < 1:
        raise ValueError("cannot compress an empty context")
    layout = []
    for start in range(0, num_tokens, chunk_size):
        n = min(chunk_size, num_tokens - start)
        layout.append(ChunkLayout(start, n, tuple(anchor_local_indices(n, ratio))))
    return layout


def anchor_indices(num_tokens: int, chunk_size: int, ratio: int) -> list[int]:
    """All anchors' indices in a context of ``num_tokens`` tokens, chunk after chunk."""
    return [i for c in chunk_layout(num_tokens, chunk_size, ratio) for i in c.anchor_indices]
