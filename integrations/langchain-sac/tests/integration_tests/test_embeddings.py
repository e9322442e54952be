"""The langchain-tests standard integration suite for SACEmbeddings (offline: a hashing embedder)."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from ..support import SACEmbeddingsParams


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")
class TestSACEmbeddingsStandard(SACEmbeddingsParams, EmbeddingsIntegrationTests):
    pass
