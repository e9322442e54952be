"""The framework-neutral bridge between string-based frameworks and SAC memory.

Signed memory references stand for memory chunks inside prompt strings; a :class:`SACSession` owns the
registry that resolves them, a cache of compressed passages and, optionally, a memory store. The
framework packages (``langchain-sac``, ``llama-index-*-sac``) are thin adapters over it.
"""

from sac_rag.bridge.cache import ChunkCache, text_key
from sac_rag.bridge.figures import REF_KEY, STORE_ID_KEY, TEXT_KEY, CompressionReport, passage_figures
from sac_rag.bridge.provenance import MemoryStoreLike, verified_store_ids
from sac_rag.bridge.references import (
    ForgedReferenceError,
    MemoryReferenceError,
    ReferenceSigner,
    UnresolvableReferenceError,
)
from sac_rag.bridge.registry import MemoryRegistry, PromptSegment
from sac_rag.bridge.session import PassageMemory, SACSession
from sac_rag.bridge.util import iterate_in_thread, json_safe

__all__ = [
    "REF_KEY",
    "STORE_ID_KEY",
    "TEXT_KEY",
    "ChunkCache",
    "CompressionReport",
    "ForgedReferenceError",
    "MemoryReferenceError",
    "MemoryRegistry",
    "MemoryStoreLike",
    "PassageMemory",
    "PromptSegment",
    "ReferenceSigner",
    "SACSession",
    "UnresolvableReferenceError",
    "iterate_in_thread",
    "json_safe",
    "passage_figures",
    "text_key",
    "verified_store_ids",
]
