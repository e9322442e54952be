"""SACSession: the framework-neutral bridge between string-based frameworks and a SACModel.

One session owns a :class:`MemoryRegistry` (and with it the secret key that signs references), a
:class:`ChunkCache` and optionally a memory store. Retrieval-side adapters call :meth:`attach` to
turn passages into references; LLM-side adapters call :meth:`generate` / :meth:`stream` (or their
async forms) on prompts that carry those references. Give both sides the same session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sac_rag.bridge.cache import ChunkCache, text_key
from sac_rag.bridge.figures import REF_KEY, CompressionReport, passage_figures
from sac_rag.bridge.provenance import MemoryStoreLike, verified_store_ids
from sac_rag.bridge.registry import MemoryRegistry, OnInvalid, PromptSegment
from sac_rag.bridge.util import iterate_in_thread
from sac_rag.config import DEFAULT_MAX_NEW_TOKENS
from sac_rag.memory.chunk import MemoryChunk
from sac_rag.model import SACModel


@dataclass
class PassageMemory:
    """One passage attached to a session: its reference, its chunk, and its figures (JSON-safe)."""

    reference: str
    chunk: MemoryChunk
    figures: dict


class SACSession:
    """Compresses passages into signed memory references and answers prompts that contain them.

    Args:
        model: the :class:`SACModel` that compresses and decodes.
        store: optional memory store; a passage given with the id of a stored passage whose text is
            exactly its own takes its memory from the store (any other id is ignored).
        cache_size: how many compressed passages (by text hash + model fingerprint) are kept.
        registry_size: how many memories the registry holds for references handed out.
        on_invalid: how prompts with reference-shaped text never signed here are treated
            (``"error"``: :class:`ForgedReferenceError`; ``"literal"``: left as text).
        max_new_tokens: default answer length.
        batch_size: compression batch size.
    """

    def __init__(
        self,
        model: SACModel,
        *,
        store: MemoryStoreLike | None = None,
        cache_size: int = 256,
        registry_size: int = 1024,
        on_invalid: OnInvalid = "error",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 8,
    ) -> None:
        self.model = model
        self.store = store
        self.cache = ChunkCache(cache_size)
        self.registry = MemoryRegistry(registry_size, on_invalid)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    # ----------------------------------------------------------------- retrieval side
    def attach(self, texts: Sequence[str], store_ids: Sequence[Any] | None = None) -> list[PassageMemory]:
        """Memories for passages, registered; returns one :class:`PassageMemory` each, in order.

        Every passage needs its text. A passage whose store id names a passage of the session's store
        with exactly that text takes its memory from the store; any other store id (foreign, unknown,
        malformed) is ignored, and the passage comes from the cache or is compressed, with the others,
        in one batch.
        """
        return self.attach_with_report(texts, store_ids)[0]

    def attach_with_report(
        self, texts: Sequence[str], store_ids: Sequence[Any] | None = None
    ) -> tuple[list[PassageMemory], CompressionReport]:
        """:meth:`attach`, also returning the batch's :class:`CompressionReport`."""
        report = CompressionReport()
        ids = list(store_ids) if store_ids is not None else [None] * len(texts)
        if len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} store ids")
        found = self._from_store(texts, ids)
        found.update(self._from_cache_or_model(texts, skip=found))
        out = []
        for i, text in enumerate(texts):
            chunk, source, key = found[i]
            figures = passage_figures(chunk, text, cached=source == "cached")
            figures[REF_KEY] = self.registry.register(chunk, key=key, text=text)
            report.add(figures, source)
            out.append(PassageMemory(figures[REF_KEY], chunk, figures))
        return out, report.finish()

    def _from_store(self, texts: Sequence[str], ids: list[Any]) -> dict[int, tuple[MemoryChunk, str, str]]:
        """``{index: (chunk, "from_store", key)}`` for the passages whose store id is verified against their text.

        The key holds the text's hash as well as the id: a passage re-indexed under the same id with new
        text is a new memory, never the one registered for its old text. Ids are verified again after
        their memories are read, so a passage replaced in between is compressed from its text instead.
        """
        if self.store is None or all(sid is None for sid in ids):
            return {}
        verified = verified_store_ids(self.store, texts, ids)
        unique = sorted(set(verified.values()))
        by_id = dict(zip(unique, self.store.memories(unique), strict=True)) if unique else {}
        still = verified_store_ids(self.store, texts, ids) if unique else {}
        fp = self.model.fingerprint
        return {
            i: (by_id[sid], "from_store", f"store:{sid}:{text_key(texts[i], fp)}")
            for i, sid in verified.items()
            if still.get(i) == sid
        }

    def _from_cache_or_model(
        self, texts: Sequence[str], skip: Collection[int]
    ) -> dict[int, tuple[MemoryChunk, str, str]]:
        """``{index: (chunk, "cached" | "compressed", key)}``; texts not cached are compressed in one batch."""
        fp = self.model.fingerprint
        found: dict[int, tuple[MemoryChunk, str, str]] = {}
        todo: dict[str, list[int]] = {}  # cache key -> indices with that text
        for i, text in enumerate(texts):
            if i in skip:
                continue
            if not isinstance(text, str) or not text:
                raise ValueError(f"passage {i} has no text to compress")
            key = text_key(text, fp)
            cached = self.cache.get(key)
            if cached is not None:
                found[i] = (cached, "cached", key)
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            fresh = self.model.compress([texts[idx[0]] for idx in todo.values()], batch_size=self.batch_size)
            for (key, idx), chunk in zip(todo.items(), fresh, strict=True):
                self.cache.put(key, chunk)
                for n, i in enumerate(idx):
                    found[i] = (chunk, "compressed" if n == 0 else "cached", key)
        return found

    async def aattach_with_report(
        self, texts: Sequence[str], store_ids: Sequence[Any] | None = None
    ) -> tuple[list[PassageMemory], CompressionReport]:
        """:meth:`attach_with_report` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.attach_with_report, texts, store_ids)

    # ----------------------------------------------------------------- LLM side
    def resolve(self, prompt: str) -> list[PromptSegment]:
        """The prompt as text and memory segments (see :meth:`MemoryRegistry.resolve`)."""
        return self.registry.resolve(prompt)

    def stream(
        self, prompt: str, *, max_new_tokens: int | None = None, stop: Sequence[str] | None = None
    ) -> Iterator[str]:
        """Answer text pieces for a prompt with references, ending before any ``stop`` string."""
        segments = self.resolve(prompt)  # raises here, before any generation, on a bad reference
        pieces = self.model.stream(segments, max_new_tokens=max_new_tokens or self.max_new_tokens)
        return _until_stop(pieces, stop) if stop else pieces

    def generate(self, prompt: str, *, max_new_tokens: int | None = None, stop: Sequence[str] | None = None) -> str:
        """The whole answer to a prompt with references (greedy; :meth:`SACModel.generate` on its segments)."""
        if stop:
            return "".join(self.stream(prompt, max_new_tokens=max_new_tokens, stop=stop))
        return self.model.generate(self.resolve(prompt), max_new_tokens=max_new_tokens or self.max_new_tokens)

    async def agenerate(
        self, prompt: str, *, max_new_tokens: int | None = None, stop: Sequence[str] | None = None
    ) -> str:
        """:meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, prompt, max_new_tokens=max_new_tokens, stop=stop)

    def astream(
        self, prompt: str, *, max_new_tokens: int | None = None, stop: Sequence[str] | None = None
    ) -> AsyncIterator[str]:
        """:meth:`stream` from a worker thread, as an async iterator."""
        self.resolve(prompt)  # fail fast, in the caller, on a bad reference
        return iterate_in_thread(lambda: self.stream(prompt, max_new_tokens=max_new_tokens, stop=stop))


def _until_stop(pieces: Iterator[str], stop: Sequence[str]) -> Iterator[str]:
    """Pass text pieces through up to (not including) the first stop string, holding back possible prefixes."""
    hold = max(len(s) for s in stop) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = min((i for i in (buffer.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            if buffer[:cut]:
                yield buffer[:cut]
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer
