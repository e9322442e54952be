"""What makes memories: one object per memory kind, behind :meth:`SACModel.compress <sac_rag.model.SACModel.compress>`.

Each kind has its own module: SAC anchors and the full K/V (:mod:`sac_rag.memory.sac`), compaction
(:class:`sac_rag.compaction.compactor.Compactor`). A maker takes token sequences (each an official context,
BOS first) and returns one unstamped :class:`MemoryChunk` per sequence; the model stamps the fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sac_rag.memory.chunk import MemoryChunk


@runtime_checkable
class MemoryMaker(Protocol):
    """Turns token sequences into memories of one kind (``kind``, the ``meta["kind"]`` its chunks carry)."""

    kind: str

    def make(
        self, sequences: Sequence[Sequence[int]], *, position_offset: int, batch_size: int, progress: bool
    ) -> list[MemoryChunk]:
        """One memory per sequence; its first token sits at ``position_offset``."""
        ...
