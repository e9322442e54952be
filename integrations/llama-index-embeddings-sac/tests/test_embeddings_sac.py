"""SACEmbedding: a sac_rag embedder as a LlamaIndex embedding model."""

from __future__ import annotations

import asyncio

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from llama_index.embeddings.sac import SACEmbedding
from sac_rag.testing import CORPUS, HashingEmbedder


def test_class():
    names_of_base_classes = [b.__name__ for b in SACEmbedding.__mro__]
    assert BaseEmbedding.__name__ in names_of_base_classes
    assert SACEmbedding.class_name() == "SACEmbedding"


def test_vectors_are_the_embedders():
    embedder = HashingEmbedder()
    model = SACEmbedding(embedder, embed_batch_size=2)
    assert model.model_name == embedder.name and model.to_dict()["class_name"] == "SACEmbedding"
    expected = embedder.embed(CORPUS)
    assert np.allclose(model.get_text_embedding_batch(CORPUS), expected)  # in batches of 2
    assert np.allclose(model.get_query_embedding(CORPUS[1]), expected[1])
    assert np.allclose(asyncio.run(model.aget_text_embedding_batch(CORPUS)), expected)
    assert np.allclose(asyncio.run(model.aget_query_embedding(CORPUS[2])), expected[2])
    assert SACEmbedding(embedder, model_name="named").model_name == "named"
