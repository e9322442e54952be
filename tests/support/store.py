"""Passages, a bag-of-words embedder and a saved tiny checkpoint for the store, pipeline and CLI tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sac_rag import SACConfig, SACModel
from sac_rag.store import MemoryStore
from sac_rag.testing import randomize_sac, tiny_llama, tiny_tokenizer

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


def damage_the_shard(store: Path) -> Path:
    """Flip a bit near the end of the one shard the store's manifest lists (inside its last memory)."""
    with MemoryStore.open(store) as s:
        (name,) = s.manifest.shard_rows()
    shard = store / "shards" / name
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(bytes(data))
    return shard
