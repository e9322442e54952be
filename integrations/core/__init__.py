"""Framework-neutral core of the integrations: signed references, registry, session."""

from integrations.core.cache import ChunkCache, text_key
from integrations.core.figures import REF_KEY, TEXT_KEY, CompressionReport, passage_figures
from integrations.core.references import (
    ForgedReferenceError,
    MemoryReferenceError,
    ReferenceSigner,
    UnresolvableReferenceError,
)
from integrations.core.registry import MemoryRegistry, PromptSegment
from integrations.core.session import MemoryStoreLike, PassageMemory, SACSession
from integrations.core.util import iterate_in_thread, json_safe

__all__ = [
    "REF_KEY",
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
]
