"""MemoryRegistry: holds the memory chunks a session handed out as references, and resolves prompts."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from sac_rag.bridge.references import ForgedReferenceError, ReferenceSigner, UnresolvableReferenceError
from sac_rag.memory.chunk import MemoryChunk

PromptSegment = str | MemoryChunk
OnInvalid = Literal["error", "literal"]


@dataclass
class Entry:
    """A registered memory: its chunk, the passage text (if known) and free metadata."""

    reference: str
    chunk: MemoryChunk
    text: str | None = None
    meta: dict = field(default_factory=dict)
    key: str | None = None


class MemoryRegistry:
    """Maps signed references to memory chunks (bounded, least recently used dropped first).

    Args:
        capacity: how many memories are held; older ones are dropped and their references then
            raise :class:`UnresolvableReferenceError`.
        on_invalid: what :meth:`resolve` does with reference-shaped text this registry never
            signed (forged, mangled, or from another session): ``"error"`` (default) raises
            :class:`ForgedReferenceError`; ``"literal"`` keeps it as plain text. Either way it
            never pulls in memory.
        signer: the :class:`ReferenceSigner` (a fresh random key by default).
    """

    def __init__(
        self, capacity: int = 1024, on_invalid: OnInvalid = "error", signer: ReferenceSigner | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if on_invalid not in ("error", "literal"):
            raise ValueError(f"on_invalid must be 'error' or 'literal', got {on_invalid!r}")
        self.capacity = capacity
        self.on_invalid = on_invalid
        self._signer = signer or ReferenceSigner()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, chunk: MemoryChunk, *, key: str | None = None, text: str | None = None, meta=None) -> str:
        """Hold ``chunk`` and return its reference; a ``key`` already held (e.g. a content hash) keeps its reference."""
        with self._lock:
            if key is not None and (ref_id := self._by_key.get(key)) is not None:
                self._entries.move_to_end(ref_id)
                return self._entries[ref_id].reference
            ref_id, reference = self._signer.new_reference()
            self._entries[ref_id] = Entry(reference, chunk, text, dict(meta or {}), key)
            if key is not None:
                self._by_key[key] = ref_id
            while len(self._entries) > self.capacity:
                _, old = self._entries.popitem(last=False)
                if old.key is not None:
                    del self._by_key[old.key]
            return reference

    def entry(self, reference: str) -> Entry:
        """The entry behind a reference; raises if it was not signed here or is no longer held."""
        ref_id = self._signer.verify(reference)
        if ref_id is None:
            raise ForgedReferenceError(f"{reference[:60]!r} is not a memory reference signed by this session")
        with self._lock:
            entry = self._entries.get(ref_id)
            if entry is None:
                raise UnresolvableReferenceError(
                    f"memory {reference} is no longer held (registry capacity {self.capacity}): retrieve it again"
                )
            self._entries.move_to_end(ref_id)
            return entry

    def text(self, reference: str) -> str | None:
        """The passage text a reference stands for, when it was registered with one."""
        return self.entry(reference).text

    def resolve(self, prompt: str) -> list[PromptSegment]:
        """Split ``prompt`` into text and the memory chunks its references stand for (empty text dropped)."""
        segments: list[PromptSegment] = []
        pos = 0
        pending = ""
        for ref in self._signer.scan(prompt):
            pending += prompt[pos : ref.start]
            pos = ref.end
            if ref.ref_id is None and self.on_invalid == "literal":
                pending += ref.text
                continue
            chunk = self.entry(ref.text).chunk
            if pending:
                segments.append(pending)
            pending = ""
            segments.append(chunk)
        pending += prompt[pos:]
        if pending:
            segments.append(pending)
        return segments

    def references_in(self, prompt: str) -> list[str]:
        """The valid references of ``prompt``, in order (forged ones skipped)."""
        return [r.text for r in self._signer.scan(prompt) if r.ref_id is not None]
