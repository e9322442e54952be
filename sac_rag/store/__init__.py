"""The memory store: passages with FAISS embeddings and reusable SAC anchor-KV memories on disk."""

from sac_rag.store.codec import DEFAULT_MEMORY_DTYPE, MEMORY_DTYPES
from sac_rag.store.errors import StoreCorrupted, StoreError, StoreExists, StoreMismatch
from sac_rag.store.inspect import VerifyReport
from sac_rag.store.manifest import PassageRow
from sac_rag.store.repair import RepairReport
from sac_rag.store.store import Hit, MemoryStore

__all__ = [
    "DEFAULT_MEMORY_DTYPE",
    "MEMORY_DTYPES",
    "Hit",
    "MemoryStore",
    "PassageRow",
    "RepairReport",
    "StoreCorrupted",
    "StoreError",
    "StoreExists",
    "StoreMismatch",
    "VerifyReport",
]
