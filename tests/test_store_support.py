"""Shared builders for the store, pipeline and CLI tests (no tests here)."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from helpers import sac_model
from tiny import randomize_sac, tiny_llama, tiny_tokenizer

from sac_rag import SACConfig, SACModel

TESTS = Path(__file__).parent
PASSAGES = [
    "Paris is the capital of France.",
    "Alan Turing was born in 1912 in London.",
    "The quick brown fox jumps over the lazy dog.",
    "Semantic anchor compression keeps every fifth token as memory.",
    "He studied mathematics at Cambridge.",
]


def bow_embedder(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words embedder (64 hashed buckets): word overlap decides retrieval."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
    return out + 1e-3


bow_embedder.name = "test-bow64"


def numbered_text(i: int) -> str:
    """Distinct passages for bulk tests."""
    return f"passage {i} tells about topic {i % 7} and number {i * 13 % 101}."


def model(ratio: int = 5) -> SACModel:
    return sac_model(ratio=ratio)


def tiny_checkpoint(directory: Path) -> Path:
    """A saved tiny SAC checkpoint whose base is a saved tiny Llama: loadable by ``--model DIR``."""
    base_dir, ckpt = directory / "base", directory / "sac"
    if not ckpt.is_dir():
        tiny_llama().save_pretrained(base_dir)
        tiny_tokenizer().save_pretrained(base_dir)
        sac = SACModel.from_base(str(base_dir), SACConfig(ratio=5, lora_rank=8, lora_alpha=16), device="cpu")
        randomize_sac(sac)
        sac.save_pretrained(ckpt)
    return ckpt


class Hang(AssertionError):
    """Raised by :func:`deadline` when the code inside runs past its limit."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM: it interrupts a blocking
    ``open`` of a FIFO or a ``flock`` wait too; main thread only)."""

    def expired(signum, frame):
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
