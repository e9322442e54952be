"""sac_rag: retrieval-augmented generation over Semantic-Anchor-Compressed (SAC) passage memories.

Data flow, one package each: ``text`` (token sequences, chunks, anchors) -> ``compression``
(LoRA compressor -> anchor K/V) -> ``memory`` (MemoryChunk, re-positioning, composition) ->
``decoding`` (the base decoder reads memories and answers).
"""

from sac_rag.config import SACConfig
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel

__all__ = ["MemoryChunk", "SACConfig", "SACModel"]
__version__ = "0.1.0"
