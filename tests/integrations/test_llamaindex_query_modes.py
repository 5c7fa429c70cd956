"""LlamaIndex query modes TEXT_SEARCH, SPARSE and HYBRID, and filter-only queries, each compared
with the engine's own search on the same membrane."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.pomaidb import PomaiDBVectorStore

import pomaidb_core as pdb

TEXTS = ["the tls handshake failed with error E1234", "connection reset by peer",
         "handshake timeout on port 443", "disk quota exceeded", "E1234 is not documented"]


def embedding(i: int) -> list[float]:
    return [float(i == j) + 0.1 for j in range(4)]


@pytest.fixture
def store(tmp_path):
    nodes = [TextNode(id_=f"n{i}", text=t, embedding=embedding(i % 4),
                      metadata={"parity": "odd" if i % 2 else "even"}) for i, t in enumerate(TEXTS)]
    for i, node in enumerate(nodes):
        node.relationships = {}
        node.metadata["i"] = i
    s = PomaiDBVectorStore(path=str(tmp_path), shards=2)
    s.add(nodes)
    yield s
    s.close()


def node_ids(hits):
    return [h.metadata["_node_id"] for h in hits]


@pytest.mark.parametrize("mode", [VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE])
def test_keyword_modes_rank_by_bm25_like_the_engine(store, mode):
    membrane = store.client.membrane("llamaindex")
    query = VectorStoreQuery(query_str="E1234 handshake", mode=mode, similarity_top_k=2,
                             sparse_top_k=3)
    result = store.query(query)
    assert result.ids == node_ids(membrane.search(None, k=3, text="E1234 handshake"))
    assert [n.text for n in result.nodes] == [TEXTS[int(i[1:])] for i in result.ids]
    assert asyncio.run(store.aquery(query)).ids == result.ids


def test_hybrid_mode_with_filters_alpha_and_node_ids(store):
    membrane = store.client.membrane("llamaindex")
    vector = embedding(2)
    filters = MetadataFilters(filters=[ExactMatchFilter(key="parity", value="even")])
    query = VectorStoreQuery(query_embedding=vector, query_str="E1234 handshake",
                             mode=VectorStoreQueryMode.HYBRID, hybrid_top_k=3, filters=filters)
    expected = node_ids(membrane.search(vector, k=3, filter={"parity": "even"}, text="E1234 handshake"))
    assert store.query(query).ids == expected and set(expected) <= {"n0", "n2", "n4"}
    weighted = VectorStoreQuery(query_embedding=vector, query_str="E1234", alpha=0.0,
                                mode=VectorStoreQueryMode.HYBRID, similarity_top_k=2,
                                node_ids=["n1", "n4", "n0"])
    # alpha = 0: keyword side only (LlamaIndex's convention), restricted to node_ids.
    assert store.query(weighted).ids == ["n4", "n0"]


def test_a_query_with_filters_and_no_embedding_returns_the_matching_nodes(store):
    filters = MetadataFilters(filters=[ExactMatchFilter(key="parity", value="odd")])
    result = store.query(VectorStoreQuery(filters=filters, similarity_top_k=10))
    assert sorted(result.ids) == ["n1", "n3"]
    assert {n.text for n in result.nodes} == {TEXTS[1], TEXTS[3]}
    assert sorted(asyncio.run(store.aquery(VectorStoreQuery(doc_ids=[], similarity_top_k=3))).ids) == []
    with pytest.raises(pdb.InvalidArgumentError):
        store.query(VectorStoreQuery(similarity_top_k=3))


def test_the_node_text_is_the_record_text(store):
    (rec,) = [r for r in store.client.membrane("llamaindex").scan() if r.metadata["_node_id"] == "n3"]
    assert rec.text == TEXTS[3] and TEXTS[3] not in rec.metadata["_node_content"]
    assert store.get_nodes(node_ids=["n3"])[0].text == TEXTS[3]
