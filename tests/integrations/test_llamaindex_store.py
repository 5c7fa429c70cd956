"""PomaiDBVectorStore for LlamaIndex: the conformance suite, plus what is PomaiDB's own.

The suite (llamaindex_conformance.py) covers the LlamaIndex contract; the tests
here cover settings, id hashing and collisions, per-metric similarities, the
async paths' independence from the blocking engine calls, reopening in another
process, and the namespace-package layout.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore, codec
from llama_index.vector_stores.pomaidb import base as store_module

import pomaidb_core as pdb
from tests.integrations.llamaindex_conformance import (
    DIM,
    FILTER_CASES,
    HashEmbedding,
    LlamaIndexVectorStoreSuite,
    corpus_nodes,
    reference_match,
    similarity,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def open_store(path: Path, **kwargs: Any) -> PomaiDBVectorStore:
    return PomaiDBVectorStore(path=str(path), shards=2, **kwargs)


class TestPomaiDBConformance(LlamaIndexVectorStoreSuite):
    metric = "cosine"

    @pytest.fixture
    def vector_store(self, tmp_path: Path) -> Iterator[PomaiDBVectorStore]:
        self.opened = [open_store(tmp_path / "db", metric=self.metric)]
        yield self.opened[0]
        for store in self.opened:
            store.close()

    def reopen(self, store: PomaiDBVectorStore) -> PomaiDBVectorStore:
        store.close()
        again = open_store(Path(store.path), membrane=store.membrane, metric=store.metric)
        self.opened.append(again)
        return again


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PomaiDBVectorStore]:
    with open_store(tmp_path / "db") as opened:
        yield opened


def vector(seed: int, dim: int = DIM) -> list[float]:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32).tolist()


# -- settings -------------------------------------------------------------------


def test_dim_is_inferred_from_the_first_added_node(store: PomaiDBVectorStore) -> None:
    assert store.dim is None
    store.add([TextNode(id_="a", text="a", embedding=vector(0, 7))])
    assert store.dim == 7
    assert store.client.membrane("llamaindex").dim == 7


def test_node_with_another_dimension_is_rejected_and_nothing_is_written(
    store: PomaiDBVectorStore,
) -> None:
    store.add([TextNode(id_="a", text="a", embedding=vector(0, 4))])
    with pytest.raises(pdb.InvalidArgumentError):
        store.add([TextNode(id_="b", text="b", embedding=vector(1, 5))])
    assert [n.node_id for n in store.get_nodes()] == ["a"]


def test_node_without_embedding_is_rejected(store: PomaiDBVectorStore) -> None:
    with pytest.raises(ValueError):
        store.add([TextNode(id_="a", text="no embedding")])


def test_reopening_with_another_metric_is_rejected(tmp_path: Path) -> None:
    with open_store(tmp_path / "db", metric="l2") as first:
        first.add([TextNode(id_="a", text="a", embedding=vector(0))])
    with pytest.raises(pdb.InvalidArgumentError, match="metric"):
        open_store(tmp_path / "db", metric="cosine")
    with pytest.raises(pdb.InvalidArgumentError):
        open_store(tmp_path / "db", metric="l2", dim=DIM + 1)
    with open_store(tmp_path / "db", metric="l2") as again:
        assert again.dim == DIM


def test_explicit_dim_creates_the_membrane_before_any_add(tmp_path: Path) -> None:
    with open_store(tmp_path / "db", dim=12, metric="ip", membrane="m") as store:
        assert store.client.membrane("m").dim == 12
        assert store.client.membrane("m").metric == "ip"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "dot"},
        {"dim": 0},
        {"dim": 2.5},
    ],
)
def test_bad_settings_are_rejected_before_opening(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(pdb.InvalidArgumentError):
        open_store(tmp_path / "db", **kwargs)
    assert not (tmp_path / "db").exists()


def test_path_and_db_are_mutually_exclusive(tmp_path: Path) -> None:
    with pytest.raises(pdb.InvalidArgumentError):
        PomaiDBVectorStore()
    with pdb.open(str(tmp_path / "db")) as db, pytest.raises(pdb.InvalidArgumentError):
        PomaiDBVectorStore(path=str(tmp_path / "db"), db=db)


def test_store_on_a_shared_db_leaves_it_open_on_close(tmp_path: Path) -> None:
    with pdb.open(str(tmp_path / "db"), shards=2) as db:
        store = PomaiDBVectorStore(db=db, membrane="nodes")
        store.add([TextNode(id_="a", text="a", embedding=vector(0))])
        store.close()
        assert db.membrane("nodes").count() == 1


def test_unsupported_query_modes_and_arguments_are_rejected(store: PomaiDBVectorStore) -> None:
    store.add([TextNode(id_="a", text="a", embedding=vector(0))])
    bad_queries = [
        (VectorStoreQuery(query_embedding=vector(1), mode=VectorStoreQueryMode.HYBRID), {}),
        (VectorStoreQuery(query_embedding=None, similarity_top_k=1), {}),
        (VectorStoreQuery(query_embedding=vector(1), similarity_top_k=0), {}),
        (
            VectorStoreQuery(query_embedding=vector(1), mode=VectorStoreQueryMode.MMR),
            {"mmr_threshold": 1.5},
        ),
        (
            VectorStoreQuery(
                query_embedding=vector(1),
                filters=MetadataFilters(
                    filters=[
                        MetadataFilter(key="k", operator=FilterOperator.IN, value="not a list")
                    ]
                ),
            ),
            {},
        ),
    ]
    for query, kwargs in bad_queries:
        with pytest.raises(pdb.InvalidArgumentError):
            store.query(query, **kwargs)


# -- ids --------------------------------------------------------------------------


def test_engine_id_is_a_stable_64_bit_hash_of_the_node_id() -> None:
    # Frozen: these values are on disk in every existing store.
    assert codec.engine_id("node-1") == codec.engine_id("node-1")
    assert 0 <= codec.engine_id("") < 2**64
    assert len({codec.engine_id(f"n{i}") for i in range(10_000)}) == 10_000


def test_both_stores_map_a_string_id_to_one_engine_id() -> None:
    from langchain_pomaidb.ids import engine_id as langchain_id

    for name in ("node-1", "", "ünïcode", "x" * 300):
        assert codec.engine_id(name) == langchain_id(name)
    # BLAKE2b-64 of b"node-1", read big-endian (frozen: stores on disk hold these ids)
    digest = __import__("hashlib").blake2b(b"node-1", digest_size=8).digest()
    assert codec.engine_id("node-1") == int.from_bytes(digest, "big")


def test_a_store_written_with_little_endian_ids_is_still_read_and_written(tmp_path: Path) -> None:
    """Stores made before the two integrations shared one id keep their records reachable."""
    nodes = [TextNode(id_=f"old-{i}", text=f"text {i}", embedding=vector(i)) for i in range(5)]
    with pdb.open(tmp_path / "db", shards=2) as db:  # what the old store wrote
        m = db.create_membrane(store_module.DEFAULT_MEMBRANE, dim=DIM, metric="cosine")
        for node in nodes:
            m.put(codec.engine_id(node.node_id, "little"), np.asarray(node.embedding),
                  codec.encode_metadata(node), text=node.text)
    with open_store(tmp_path / "db") as store:
        assert [n.node_id for n in store.get_nodes(node_ids=["old-3", "old-1"])] == ["old-3", "old-1"]
        store.add([TextNode(id_="old-2", text="rewritten", embedding=vector(7))])  # an upsert
        store.delete_nodes(node_ids=["old-4"])
        left = store.get_nodes()
        assert sorted(n.node_id for n in left) == ["old-0", "old-1", "old-2", "old-3"]
        assert next(n for n in left if n.node_id == "old-2").get_content() == "rewritten"
        assert store.client.membrane(store.membrane).count() == 4  # no duplicate of old-2


def put_foreign_record(store: PomaiDBVectorStore, node_id: str, holder: str) -> None:
    """Make `node_id`'s engine id hold the node `holder`, as a hash collision would."""
    other = TextNode(id_=holder, text="the holder", embedding=vector(9))
    store.client.membrane(store.membrane).put(
        codec.engine_id(node_id), np.asarray(other.embedding), codec.encode_metadata(other)
    )


def test_add_that_collides_with_another_node_raises_and_writes_nothing(
    store: PomaiDBVectorStore,
) -> None:
    store.add([TextNode(id_="seed", text="seed", embedding=vector(0))])
    put_foreign_record(store, "victim", holder="holder")
    newcomers = [
        TextNode(id_="fine", text="f", embedding=vector(1)),
        TextNode(id_="victim", text="v", embedding=vector(2)),
    ]
    with pytest.raises(pdb.AlreadyExistsError, match="'holder'"):
        store.add(newcomers)
    assert sorted(n.node_id for n in store.get_nodes()) == ["holder", "seed"]


async def test_async_add_that_collides_raises_too(store: PomaiDBVectorStore) -> None:
    store.add([TextNode(id_="seed", text="seed", embedding=vector(0))])
    put_foreign_record(store, "victim", holder="holder")
    with pytest.raises(pdb.AlreadyExistsError):
        await store.async_add([TextNode(id_="victim", text="v", embedding=vector(2))])


def test_reads_and_deletes_by_id_never_touch_the_colliding_node(
    store: PomaiDBVectorStore,
) -> None:
    store.add([TextNode(id_="seed", text="seed", embedding=vector(0))])
    put_foreign_record(store, "victim", holder="holder")
    assert store.get_nodes(node_ids=["victim"]) == []
    store.delete_nodes(node_ids=["victim"])
    assert sorted(n.node_id for n in store.get_nodes()) == ["holder", "seed"]


def test_two_node_ids_with_one_engine_id_in_a_batch_are_rejected(
    store: PomaiDBVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "engine_id", lambda node_id: 42)
    nodes = [
        TextNode(id_="x", text="x", embedding=vector(0)),
        TextNode(id_="y", text="y", embedding=vector(1)),
    ]
    with pytest.raises(pdb.InvalidArgumentError, match="same engine id"):
        store.add(nodes)


# -- similarities per metric ----------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_similarities_are_the_documented_score_of_each_metric(tmp_path: Path, metric: str) -> None:
    nodes = corpus_nodes()
    query = np.asarray(vector(77), dtype=np.float64)
    with open_store(tmp_path / "db", metric=metric) as store:
        store.add(nodes)
        result = store.query(VectorStoreQuery(query_embedding=query.tolist(), similarity_top_k=8))
        vectors = np.array([n.embedding for n in nodes])
        scores = similarity(metric, query, vectors)
        order = np.argsort(-scores, kind="stable")[:8]
        assert result.ids == [nodes[i].node_id for i in order]
        np.testing.assert_allclose(result.similarities, scores[order], rtol=1e-4, atol=1e-4)
        best = store.query(VectorStoreQuery(query_embedding=nodes[3].embedding))
        expected_best = {"cosine": 1.0, "l2": 0.0}.get(
            metric, float(np.dot(*[nodes[3].embedding] * 2))
        )
        assert best.ids == ["node-3"]
        assert best.similarities[0] == pytest.approx(expected_best, abs=1e-4)


# -- segments, tombstones and compaction ----------------------------------------------------


def test_queries_and_reads_over_segments_and_tombstones_match_the_oracle(
    store: PomaiDBVectorStore,
) -> None:
    nodes = corpus_nodes()
    store.add(nodes)
    store.delete("doc-1")
    store.client.freeze()
    rewritten = nodes[0].model_copy(update={"text": "rewritten", "embedding": vector(50)})
    store.add([rewritten])
    store.client.compact()
    live = [rewritten] + [n for n in nodes[1:] if n.ref_doc_id != "doc-1"]
    query = np.asarray(vector(51), dtype=np.float64)
    for name, filters in FILTER_CASES.items():
        kept = [n for n in live if reference_match(n.metadata, filters)]
        result = store.query(
            VectorStoreQuery(query_embedding=query.tolist(), similarity_top_k=5, filters=filters)
        )
        scores = similarity("cosine", query, np.array([n.embedding for n in kept]).reshape(-1, DIM))
        expected = [kept[i].node_id for i in np.argsort(-scores, kind="stable")[:5]]
        assert result.ids == expected, name
        got = store.get_nodes(filters=filters)
        assert sorted(n.node_id for n in got) == sorted(n.node_id for n in kept), name
    (node,) = store.get_nodes(node_ids=["node-0"])
    assert node.text == "rewritten"


# -- async never calls the blocking engine methods ---------------------------------------


class OffLoopOnly:
    """Wraps an engine object; calling one of its blocking methods on the event loop fails.

    The same call from a worker thread (asyncio.to_thread) is allowed: the loop stays free.
    """

    BLOCKING: ClassVar[set[str]] = {
        "put",
        "put_batch",
        "delete",
        "delete_batch",
        "delete_where",
        "get",
        "get_batch",
        "exists",
        "count",
        "search",
        "search_batch",
        "scan",
        "create_membrane",
        "get_or_create_membrane",
        "membrane",
        "membranes",
    }

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._wrapped, name)
        if name not in self.BLOCKING:
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if _on_event_loop():
                raise AssertionError(f"blocking {name}() called on the event loop")
            return attribute(*args, **kwargs)

        return guarded


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_async_methods_never_block_the_event_loop_on_the_engine(tmp_path: Path) -> None:
    nodes = corpus_nodes()
    with open_store(tmp_path / "db") as store:
        store._db = OffLoopOnly(store._db)
        await store.async_add(nodes[:1])  # creates the membrane
        store._collection = OffLoopOnly(store._collection)
        await store.async_add(nodes)
        query = VectorStoreQuery(query_embedding=vector(5), similarity_top_k=3)
        assert len((await store.aquery(query)).ids) == 3
        query.mode = VectorStoreQueryMode.MMR
        assert len((await store.aquery(query, mmr_threshold=0.5)).ids) == 3
        assert len(await store.aget_nodes(node_ids=["node-1", "node-2"])) == 2
        assert len(await store.aget_nodes(filters=FILTER_CASES["eq_string"])) == 8
        await store.adelete_nodes(node_ids=["node-1"])
        await store.adelete_nodes(filters=FILTER_CASES["all_tags"])
        await store.adelete("doc-2")
        await store.aclear()
        assert await store._collection.acount() == 0


# -- persistence across processes ----------------------------------------------------------

# Runs outside the repository (cwd elsewhere, no PYTHONPATH change) so that it imports the
# installed pomaidb, never the source tree; the suite module is loaded from its file.
REOPEN_SCRIPT = """
import importlib.util, json, sys
from llama_index.core import VectorStoreIndex
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore

spec = importlib.util.spec_from_file_location("llamaindex_conformance", sys.argv[3])
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
HashEmbedding = suite.HashEmbedding

store = PomaiDBVectorStore(path=sys.argv[1], shards=2)
index = VectorStoreIndex.from_vector_store(store, embed_model=HashEmbedding())
hits = index.as_retriever(similarity_top_k=2).retrieve(sys.argv[2])
print(json.dumps([[h.node.ref_doc_id, h.node.get_content(), h.node.metadata] for h in hits]))
store.close()
"""


def test_index_reopened_in_a_new_process_retrieves_the_same_nodes(tmp_path: Path) -> None:
    from llama_index.core import Document

    docs = [
        Document(
            id_="wal",
            text="The write-ahead log is fsynced before acknowledging.",
            metadata={"kind": "storage"},
        ),
        Document(id_="cat", text="A cat naps in the afternoon sun.", metadata={"kind": "pets"}),
    ]
    with open_store(tmp_path / "db") as store:
        VectorStoreIndex.from_documents(
            docs,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=HashEmbedding(),
        )
    suite_file = Path(__file__).with_name("llamaindex_conformance.py")
    out = subprocess.run(
        [sys.executable, "-c", REOPEN_SCRIPT, str(tmp_path / "db"), docs[1].text, suite_file],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout.strip().splitlines()[-1])
    assert hits[0] == ["cat", docs[1].text, {"kind": "pets"}]
    assert [hit[0] for hit in hits] == ["cat", "wal"]


# -- packaging --------------------------------------------------------------------------


def test_integration_is_a_namespace_package_beside_llama_index_core() -> None:
    import llama_index
    import llama_index.core

    package_root = REPO_ROOT / "integrations" / "llama_index" / "llama_index"
    assert not (package_root / "__init__.py").exists()
    assert not (package_root / "vector_stores" / "__init__.py").exists()
    assert (package_root / "vector_stores" / "pomaidb" / "__init__.py").exists()
    assert getattr(llama_index, "__file__", None) is None  # a namespace package
    assert llama_index.core.__name__ == "llama_index.core"
    assert store_module.PomaiDBVectorStore is PomaiDBVectorStore


def test_nodes_metadata_layout_keeps_user_keys_filterable() -> None:
    node = TextNode(
        id_="n",
        text="t",
        metadata={
            "year": 2020,
            "nested": {"a": 1, "b": {"c": [1, "x"]}},
            "objects": [{"a": 1}],
            "ref_doc_id": "user",
        },
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc")},
    )
    stored = codec.encode_metadata(node)
    assert stored["year"] == 2020 and stored["nested"] == {"a": 1, "b": {"c": [1, "x"]}}
    assert "objects" not in stored  # a list of objects is not filterable
    assert stored["ref_doc_id"] == "doc" and stored["_node_id"] == "n"
    assert codec.decode_node(stored).metadata == node.metadata


# -- nested metadata, engine-native filters, query keywords (issue 14) -------------


def _authors_store(tmp_path: Path, **kwargs: Any) -> tuple[PomaiDBVectorStore, list[TextNode]]:
    names = ["Ann", "Bob", "Cy"]
    nodes = [
        TextNode(
            id_=f"n{i}",
            text=f"title {i} {'data' if i % 4 == 0 else 'essay'}",
            metadata={"author": {"name": names[i % 3], "born": 1940 + i}, "title": f"Part {i}"},
            embedding=vector(i),
        )
        for i in range(30)
    ]
    store = open_store(tmp_path / "db", **kwargs)
    store.add(nodes)
    return store, nodes


def _every(store: PomaiDBVectorStore, **kwargs: Any) -> list[str]:
    query = VectorStoreQuery(query_embedding=vector(99), similarity_top_k=100, **kwargs.pop("q", {}))
    return sorted(store.query(query, exact=True, **kwargs).ids, key=lambda i: int(i[1:]))


def test_dotted_metadata_filter_keys_reach_nested_metadata(tmp_path: Path) -> None:
    store, nodes = _authors_store(tmp_path)
    with store:
        filters = MetadataFilters(
            filters=[
                MetadataFilter(key="author.name", value="Ann"),
                MetadataFilter(key="author.born", operator=FilterOperator.GTE, value=1950),
            ]
        )
        expected = [n.node_id for n in nodes if n.metadata["author"]["name"] == "Ann"
                    and n.metadata["author"]["born"] >= 1950]
        assert _every(store, q={"filters": filters}) == expected
        got = store.get_nodes(filters=filters)
        assert sorted(n.node_id for n in got) == sorted(expected)


def test_pomaidb_filter_takes_engine_operators_and_ands_with_filters(tmp_path: Path) -> None:
    store, nodes = _authors_store(tmp_path)
    with store:
        native = {"author.born": {"$between": [1945, 1960]}, "title": {"$ilike": "part 1%"}}
        expected = [n.node_id for n in nodes if 1945 <= n.metadata["author"]["born"] <= 1960
                    and n.metadata["title"].startswith("Part 1")]
        assert expected and _every(store, pomaidb_filter=native) == expected
        bob = MetadataFilters(filters=[MetadataFilter(key="author.name", value="Bob")])
        both = [i for i in expected if nodes[int(i[1:])].metadata["author"]["name"] == "Bob"]
        assert _every(store, q={"filters": bob}, pomaidb_filter=native) == both
        like = {"$not": [{"title": {"$like": "Part _"}}]}
        assert _every(store, pomaidb_filter=like) == [f"n{i}" for i in range(10, 30)]
        for bad in ({"title": {"$like": "x\\"}}, {"born": {"$between": [2, 1]}}, "title == x"):
            with pytest.raises(pdb.InvalidArgumentError):
                store.query(VectorStoreQuery(query_embedding=vector(1)), pomaidb_filter=bad)


def test_pomaidb_filter_through_a_retriever(tmp_path: Path) -> None:
    store, nodes = _authors_store(tmp_path)
    with store:
        index = VectorStoreIndex.from_vector_store(store, embed_model=HashEmbedding(dim=DIM))
        retriever = index.as_retriever(
            similarity_top_k=50, vector_store_kwargs={"pomaidb_filter": {"author.name": "Cy"}}
        )
        got = sorted(hit.node.node_id for hit in retriever.retrieve("title"))
        assert got == sorted(n.node_id for n in nodes if n.metadata["author"]["name"] == "Cy")


@pytest.mark.parametrize("mode", [VectorStoreQueryMode.MMR, VectorStoreQueryMode.DEFAULT])
async def test_mmr_prefetch_k_and_factor_together_raise_value_error(
    store: PomaiDBVectorStore, mode: VectorStoreQueryMode
) -> None:
    store.add([TextNode(id_="a", text="a", embedding=vector(0))])
    query = VectorStoreQuery(query_embedding=vector(1), mode=mode)
    both = {"mmr_prefetch_k": 8, "mmr_prefetch_factor": 2}
    with pytest.raises(ValueError, match="not both"):
        store.query(query, **both)
    with pytest.raises(ValueError, match="not both"):
        await store.aquery(query, **both)
    assert store.query(query, mmr_prefetch_k=8).ids == ["a"]


async def test_unknown_query_keywords_warn_and_known_ones_do_not(
    store: PomaiDBVectorStore,
) -> None:
    store.add([TextNode(id_="a", text="a", embedding=vector(0))])
    query = VectorStoreQuery(query_embedding=vector(1), mode=VectorStoreQueryMode.MMR)
    with pytest.warns(UserWarning, match=r"\['mmr_treshold', 'qdrant_filters'\]"):
        store.query(query, mmr_treshold=0.2, qdrant_filters=None)
    with pytest.warns(UserWarning, match="mmr_treshold"):
        await store.aquery(query, mmr_treshold=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        known = dict(exact=True, mmr_threshold=0.5, mmr_prefetch_k=4, pomaidb_filter=None)
        assert store.query(query, **known).ids == ["a"]


def test_reopening_without_the_membrane_name_warns_naming_the_membranes(tmp_path: Path) -> None:
    with open_store(tmp_path / "db", membrane="papers") as first:
        first.add([TextNode(id_="a", text="a", embedding=vector(0))])
    with pytest.warns(UserWarning, match=r"'llamaindex' does not exist .* holds \['papers'\]"):
        reopened = open_store(tmp_path / "db")
    with reopened:
        assert reopened.query(VectorStoreQuery(query_embedding=vector(0))).ids == []
    with pytest.warns(UserWarning, match="papers"):
        open_store(tmp_path / "db", membrane="other", dim=DIM).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_store(tmp_path / "db", membrane="papers") as again:  # the right name: quiet
            assert again.query(VectorStoreQuery(query_embedding=vector(0))).ids == ["a"]
        open_store(tmp_path / "fresh").close()  # an empty database: quiet
