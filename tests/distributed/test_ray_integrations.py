"""Both integrations' conformance suites against a Ray-backed database given as `db=`.

One database per module (starting shard actors is the slow part); every test gets a
membrane of its own, so each store starts empty as the suites expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

import pomaidb_core as pdb

pytest.importorskip("ray", reason="the Ray backend needs the `ray` extra")
pytest.importorskip("langchain_pomaidb")
pytest.importorskip("llama_index.vector_stores.pomaidb")

from langchain_pomaidb import PomaiDBVectorStore as LangChainStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore as LlamaIndexStore

from tests.integrations.llamaindex_conformance import LlamaIndexVectorStoreSuite

pytestmark = [pytest.mark.ray,
              pytest.mark.filterwarnings("ignore:membrane .* does not exist:UserWarning")]
_names = (f"m{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def ray_db(cluster, tmp_path_factory) -> Iterator[pdb.DB]:
    db = pdb.open(tmp_path_factory.mktemp("ray") / "db", backend="ray", shards=2)
    yield db
    db.shutdown()


class TestLangChainStoreOnRay(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, ray_db) -> Iterator[LangChainStore]:  # type: ignore[override]
        store = LangChainStore(self.get_embeddings(), db=ray_db, membrane=next(_names))
        yield store
        store.close()


class TestLlamaIndexStoreOnRay(LlamaIndexVectorStoreSuite):
    metric = "cosine"

    @pytest.fixture
    def vector_store(self, ray_db) -> Iterator[LlamaIndexStore]:
        self.db = ray_db
        store = LlamaIndexStore(db=ray_db, membrane=next(_names), metric=self.metric)
        yield store
        store.close()

    def reopen(self, store: LlamaIndexStore) -> LlamaIndexStore:
        store.close()
        return LlamaIndexStore(db=self.db, membrane=store.membrane, metric=store.metric)
