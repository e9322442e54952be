"""Compression figures: what a passage's memory costs against its raw text and its full KV cache."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from sac_rag.memory.chunk import MemoryChunk

#: Metadata keys the adapters add to each passage (prefix ``sac_``).
REF_KEY = "sac_ref"
TEXT_KEY = "sac_text"
#: Metadata key of a passage's memory-store id (trusted only when the stored text is the passage's own).
STORE_ID_KEY = "sac_id"


def passage_figures(chunk: MemoryChunk, text: str | None, cached: bool) -> dict:
    """JSON-safe figures of one passage's memory (the adapters put them in node/document metadata)."""
    figures = {
        "sac_memory_kind": str(chunk.meta.get("kind", "sac")),
        "sac_tokens": int(chunk.length),
        "sac_anchors": round(chunk.entries_per_head),  # per (layer, kv head): what the decoder attends to
        "sac_memory_bytes": int(chunk.nbytes),
        "sac_full_kv_bytes": int(chunk.full_kv_nbytes()),
        "sac_cached": bool(cached),
    }
    if text is not None:
        figures["sac_text_bytes"] = len(text.encode("utf-8"))
    return figures


@dataclass
class CompressionReport:
    """Totals over one batch of passages handed to the LLM as memory.

    ``memory_bytes`` (anchor K/V actually kept) is compared with ``full_kv_bytes`` (the KV cache the
    decoder would hold for the raw passages) and ``text_bytes`` (the raw UTF-8 text);
    ``positions_saved`` is how many fewer positions the decoder attends to.
    """

    passages: int = 0
    compressed: int = 0
    cached: int = 0
    from_store: int = 0
    tokens: int = 0
    anchors: int = 0
    memory_bytes: int = 0
    full_kv_bytes: int = 0
    text_bytes: int = 0
    seconds: float = 0.0
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, figures: dict, source: str) -> None:
        self.passages += 1
        setattr(self, source, getattr(self, source) + 1)
        self.tokens += figures["sac_tokens"]
        self.anchors += figures["sac_anchors"]
        self.memory_bytes += figures["sac_memory_bytes"]
        self.full_kv_bytes += figures["sac_full_kv_bytes"]
        self.text_bytes += figures.get("sac_text_bytes", 0)

    def finish(self) -> CompressionReport:
        self.seconds = time.perf_counter() - self._start
        return self

    @property
    def kv_bytes_saved(self) -> int:
        return self.full_kv_bytes - self.memory_bytes

    @property
    def positions_saved(self) -> int:
        return self.tokens - self.anchors

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d.update(kv_bytes_saved=self.kv_bytes_saved, positions_saved=self.positions_saved)
        return d
