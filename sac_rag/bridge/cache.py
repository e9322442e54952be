"""ChunkCache: compressed memories of passage texts, keyed by text hash and compressor fingerprint."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from sac_rag.memory.chunk import MemoryChunk


def text_key(text: str, fingerprint: str) -> str:
    """The cache key of ``text`` compressed by the compressor with ``fingerprint``."""
    return f"{fingerprint}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"


class ChunkCache:
    """A thread-safe LRU cache of memory chunks (``capacity`` entries; 0 disables it)."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._items: OrderedDict[str, MemoryChunk] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> MemoryChunk | None:
        with self._lock:
            chunk = self._items.get(key)
            if chunk is not None:
                self._items.move_to_end(key)
            return chunk

    def put(self, key: str, chunk: MemoryChunk) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._items[key] = chunk
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
