"""The langchain-tests standard integration suite for SACRetriever (offline: a tiny model, an in-memory store)."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_sac import SACRetriever

from ..support import QUESTION, shared_session, vector_store


@pytest.mark.asyncio  # the suite's async test needs it; the sync ones only warn, silenced here
@pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")
class TestSACRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[SACRetriever]:
        return SACRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"session": shared_session(), "base": vector_store(), "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION
