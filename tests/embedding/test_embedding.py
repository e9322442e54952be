"""Embedders: the offline default, sentence-transformers by name, callables; output checks."""

from __future__ import annotations

import numpy as np
import pytest

from sac_rag.embedding import DEFAULT_EMBEDDER, CallableEmbedder, SentenceTransformerEmbedder, resolve_embedder


def test_callable_is_wrapped_and_normalised():
    def fn(texts):
        return [[3.0, 4.0]] * len(texts)

    embedder = resolve_embedder(fn)
    assert isinstance(embedder, CallableEmbedder) and embedder.name.endswith("fn")
    out = embedder.embed(["a", "b"])
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8]] * 2)
    fn.name = "mine"
    assert CallableEmbedder(fn).name == "mine" and resolve_embedder(embedder) is embedder


@pytest.mark.parametrize(("output", "message"), [([[1.0, 2.0]], "shape"), ([[np.nan], [1.0]], "non-finite")])
def test_bad_output_is_refused(output, message):
    with pytest.raises(ValueError, match=message):
        CallableEmbedder(lambda texts: output, "bad").embed(["a", "b"])


def test_resolve():
    assert resolve_embedder(None).name == DEFAULT_EMBEDDER
    assert resolve_embedder("some/model").name == "some/model"
    with pytest.raises(TypeError, match="embedder must be"):
        resolve_embedder(42)


def test_default_offline_model_ranks_by_meaning():
    embedder = SentenceTransformerEmbedder()
    vectors = embedder.embed(["Where was Alan Turing born?", "Turing's birthplace was London.", "Bananas are yellow."])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
