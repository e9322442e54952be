"""Shared pieces for the integration tests (no tests here): a tiny corpus and a slowed-down model."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

import helpers

from integrations.core import SACSession

CORPUS = [
    "Paris is the capital of France. The quick brown fox jumps over the lazy dog.",
    "Alan Turing was born in 1912 in London. He studied mathematics at Cambridge.",
    "Semantic anchor compression keeps every fifth token's keys and values as memory.",
    "The lazy dog sleeps all day while the brown fox runs in the forest.",
]
METADATA = [{"source": f"doc{i}.txt", "page": i, "tags": ["a", "b"]} for i in range(len(CORPUS))]


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
