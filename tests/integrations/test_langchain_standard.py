"""langchain-tests' standard VectorStoreIntegrationTests, sync and async, get_by_ids included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_pomaidb import PomaiDBVectorStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests


class TestPomaiDBVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = PomaiDBVectorStore(self.get_embeddings(), path=tmp_path / "db", shards=2)
        try:
            yield store
        finally:
            store.close()
