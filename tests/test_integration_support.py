"""Shared pieces for the integration tests (no tests here): a tiny corpus and a slowed-down model."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager

import helpers
import numpy as np
import torch

from sac_rag import MemoryChunk
from sac_rag.bridge import SACSession
from sac_rag.store import MemoryStore

CORPUS = [
    "Paris is the capital of France. The quick brown fox jumps over the lazy dog.",
    "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.",
    "Semantic anchor compression keeps every fifth token's keys and values as memory.",
    "The lazy dog sleeps all day while the brown fox runs in the forest.",
]
METADATA = [{"source": f"doc{i}.txt", "page": i, "tags": ["a", "b"]} for i in range(len(CORPUS))]


class HashingEmbedder:
    """Deterministic lower-cased word hashing into ``dim`` buckets, L2-normalised: texts sharing words are near."""

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim
        self.name = f"test-hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-12)
        return out


def tiny_session(**kwargs) -> SACSession:
    """A session over a tiny random Llama SAC model (built in about a second)."""
    kwargs.setdefault("max_new_tokens", 6)
    return SACSession(helpers.sac_model(), **kwargs)


@contextmanager
def slow_model(session: SACSession, seconds: float = 0.4):
    """Make the session's compress and generate calls block for ``seconds`` (as a real model would)."""
    model = session.model
    originals = {name: getattr(model, name) for name in ("compress", "generate", "stream")}

    def slowed(fn):
        def wrapper(*args, **kwargs):
            time.sleep(seconds)
            return fn(*args, **kwargs)

        return wrapper

    def slow_stream(*args, **kwargs):
        time.sleep(seconds)
        yield from originals["stream"](*args, **kwargs)

    model.compress = slowed(originals["compress"])
    model.generate = slowed(originals["generate"])
    model.stream = slow_stream
    try:
        yield
    finally:
        for name in originals:
            delattr(model, name)


async def ticks_during(coro, period: float = 0.01) -> tuple[object, int]:
    """Await ``coro`` while a ticker counts how often the event loop got to run it."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(period)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        return await coro, ticks
    finally:
        stop.set()
        await task


def expected_answer(model, prompt: str, ref_texts: dict[str, str], max_new_tokens: int) -> str:
    """What ``model.generate`` answers to ``prompt`` with each reference replaced by a fresh compression of its text.

    Independent of the registry: references are found by exact string match and re-compressed.
    """
    pattern = re.compile("|".join(map(re.escape, ref_texts)))
    segments, pos = [], 0
    for m in pattern.finditer(prompt):
        if m.start() > pos:
            segments.append(prompt[pos : m.start()])
        segments.append(model.compress([ref_texts[m.group()]])[0])
        pos = m.end()
    if pos < len(prompt):
        segments.append(prompt[pos:])
    assert any(not isinstance(s, str) for s in segments), "the prompt holds no reference"
    return model.generate(segments, max_new_tokens=max_new_tokens)


# ----------------------------------------------------------------- store ids from outside the store (issue 12)
UPLOADED = "A user-uploaded note: the cafeteria on the third floor opens at nine."
#: Store ids a document may carry without coming from the session's store: a real id of another passage,
#: one the store does not hold, and malformed ones. None may raise or pull stored memory.
FOREIGN_STORE_IDS = [1, 999999, "abc", -5]


def corpus_store(session: SACSession, path) -> MemoryStore:
    """A memory store at ``path`` holding CORPUS (with METADATA), compressed by the session's model."""
    store = MemoryStore.create(path, session.model, embedder=HashingEmbedder())
    store.add(CORPUS, METADATA, progress=False)
    return store


def same_chunk(a: MemoryChunk, b: MemoryChunk) -> bool:
    return torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values) and a.length == b.length


def assert_memory_is_own_text(session: SACSession, reference: str, text: str) -> None:
    """The memory behind ``reference`` is ``text`` compressed by the session's model, and no stored passage's."""
    chunk = session.registry.entry(reference).chunk
    assert same_chunk(chunk, session.model.compress([text])[0])
    stored = session.store.memories(session.store.ids())
    assert not any(same_chunk(chunk, s) for s in stored)
