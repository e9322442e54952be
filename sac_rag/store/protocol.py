"""PassageStore: what every kind of store answers, a single :class:`~sac_rag.store.MemoryStore` and a
:class:`~sac_rag.scale.ShardedStore` alike; :func:`sac_rag.scale.open_store` returns one or the other.

Callers that read, search, delete, verify or report on a store (``SACRAG``, ``SACSession``, the
``sac-rag`` commands) take a ``PassageStore``. Adding passages is not part of it: a single store adds them
itself (``add``, ``upsert``), a sharded one is written by :func:`sac_rag.scale.index_with_ray`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sac_rag.embedding import Embedder
    from sac_rag.memory.chunk import MemoryChunk
    from sac_rag.model import SACModel
    from sac_rag.store.inspect import VerifyReport
    from sac_rag.store.manifest import PassageRow
    from sac_rag.store.repair import RepairReport
    from sac_rag.store.store import Hit


@runtime_checkable
class PassageStore(Protocol):
    """A store of passages, their embeddings and their memories, opened from ``path``.

    ``search`` raises ``ValueError`` for a query that is not a non-empty string or a ``k`` below 1 (it is
    where a query is checked); ``get``, ``memories`` and ``delete`` raise ``ValueError`` for an id that is
    malformed or not in the store. ``model`` is the compressor the store was opened with (None: opened
    without one, which reading, searching and deleting do not need).
    """

    path: Path

    @property
    def fingerprint(self) -> str:
        """The compressor that made the store's memories."""
        ...

    @property
    def model(self) -> SACModel | None: ...

    @property
    def embedder(self) -> Embedder: ...

    def __len__(self) -> int: ...

    def ids(self) -> list[int]: ...

    def search(self, query: str, k: int = 5) -> list[Hit]: ...

    def get(self, ids: Sequence[int]) -> list[PassageRow]: ...

    def memories(self, ids: Sequence[int]) -> list[MemoryChunk]: ...

    def delete(self, ids: Sequence[int]) -> int: ...

    def compact(self, *, progress: bool = False) -> dict: ...

    def stats(self) -> dict: ...

    def verify(self, *, progress: bool = False) -> VerifyReport: ...

    def repair(self, *, progress: bool = False) -> RepairReport: ...

    def close(self) -> None: ...

    def __enter__(self) -> PassageStore: ...

    def __exit__(self, *exc: object) -> None: ...
