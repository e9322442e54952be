"""The memory store: passages with FAISS embeddings and reusable SAC anchor-KV memories on disk.

``PassageStore`` is what a single store and a sharded one (``sac_rag.scale.ShardedStore``) both answer;
``store_kind`` tells which is on disk, and ``sac_rag.scale.open_store`` opens either (it lives one floor up,
where both classes can be imported).
"""

from sac_rag.store.codec import DEFAULT_MEMORY_DTYPE, MEMORY_DTYPES, memory_dtype_for
from sac_rag.store.errors import StoreCorrupted, StoreError, StoreExists, StoreMismatch
from sac_rag.store.inspect import VerifyReport
from sac_rag.store.layout import store_kind
from sac_rag.store.manifest import PassageRow
from sac_rag.store.protocol import PassageStore
from sac_rag.store.repair import RepairReport
from sac_rag.store.store import Hit, MemoryStore

__all__ = [
    "DEFAULT_MEMORY_DTYPE",
    "MEMORY_DTYPES",
    "Hit",
    "MemoryStore",
    "PassageRow",
    "PassageStore",
    "RepairReport",
    "StoreCorrupted",
    "StoreError",
    "StoreExists",
    "StoreMismatch",
    "VerifyReport",
    "memory_dtype_for",
    "store_kind",
]
