"""The langchain-tests standard integration suite for SACEmbeddings (offline: a hashing embedder)."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from langchain_sac import SACEmbeddings
from sac_rag.testing import HashingEmbedder


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")
class TestSACEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[SACEmbeddings]:
        return SACEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embedder": HashingEmbedder()}
