"""SACEmbeddings: the langchain-tests unit suite, and the embedder's own vectors."""

from __future__ import annotations

import asyncio

import numpy as np
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_sac import SACEmbeddings
from sac_rag.testing import CORPUS, HashingEmbedder

from ..support import SACEmbeddingsParams


class TestSACEmbeddingsStandard(SACEmbeddingsParams, EmbeddingsUnitTests):
    pass


def test_vectors_are_the_embedders():
    embedder = HashingEmbedder()
    embeddings = SACEmbeddings(embedder)
    assert np.allclose(embeddings.embed_documents(CORPUS), embedder.embed(CORPUS))
    assert np.allclose(embeddings.embed_query(CORPUS[0]), embedder.embed(CORPUS[:1])[0])
    assert embeddings.embed_documents([]) == []
    assert asyncio.run(embeddings.aembed_query(CORPUS[1])) == embeddings.embed_query(CORPUS[1])
