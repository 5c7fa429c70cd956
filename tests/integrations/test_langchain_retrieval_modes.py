"""LangChain retrieval modes: dense, keyword (BM25) and hybrid, on the store and per call, through
as_retriever too; each compared with the engine's own search on the same membrane."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_pomaidb import PomaiDBVectorStore

import pomaidb_core as pdb

TEXTS = ["the tls handshake failed with error E1234", "connection reset by peer",
         "handshake timeout on port 443", "disk quota exceeded", "E1234 is not documented"]
META = [{"n": i, "even": i % 2 == 0} for i in range(len(TEXTS))]


@pytest.fixture
def store(tmp_path):
    with PomaiDBVectorStore(DeterministicFakeEmbedding(size=16), path=tmp_path, shards=2) as s:
        s.add_texts(TEXTS, META, ids=[f"d{i}" for i in range(len(TEXTS))])
        yield s


def engine_ids(hits):
    return [h.metadata["_lc_id"] for h in hits]


def test_page_content_is_the_record_text_not_a_metadata_copy(store):
    record = store.db.membrane("langchain").scan().__next__()
    assert record.text in TEXTS and "_lc_text" not in record.metadata
    assert {d.page_content for d in store.similarity_search("x", k=5)} == set(TEXTS)


def test_keyword_mode_ranks_by_bm25_like_the_engine(store):
    membrane = store.db.membrane("langchain")
    expected = engine_ids(membrane.search(None, k=3, text="E1234 handshake"))
    docs = store.similarity_search("E1234 handshake", k=3, retrieval_mode="keyword")
    assert [d.id for d in docs] == expected and len(docs) == 3
    filtered = store.similarity_search("E1234", k=3, filter={"even": True}, retrieval_mode="keyword")
    assert [d.id for d in filtered] == ["d4", "d0"]  # the shorter text scores higher


def test_hybrid_mode_on_the_store_and_through_the_retriever(store):
    membrane = store.db.membrane("langchain")
    query = "E1234 handshake"
    vector = store.embedding.embed_query(query)
    expected = engine_ids(membrane.search(vector, k=4, text=query))
    hybrid = PomaiDBVectorStore(store.embedding, db=store.db, retrieval_mode="hybrid")
    assert [d.id for d in hybrid.similarity_search(query, k=4)] == expected
    retriever = store.as_retriever(search_kwargs={"k": 4, "retrieval_mode": "hybrid"})
    assert [d.id for d in retriever.invoke(query)] == expected
    assert [d.id for d in asyncio.run(retriever.ainvoke(query))] == expected
    dense = engine_ids(membrane.search(vector, k=4))
    assert [d.id for d in hybrid.similarity_search(query, k=4, retrieval_mode="dense")] == dense


def test_bad_modes_are_refused(store):
    with pytest.raises(pdb.InvalidArgumentError):
        PomaiDBVectorStore(store.embedding, db=store.db, retrieval_mode="sparse")
    with pytest.raises(pdb.InvalidArgumentError):
        store.similarity_search("x", retrieval_mode="bm25")
    with pytest.raises(pdb.InvalidArgumentError):
        store.similarity_search_by_vector([0.0] * 16, retrieval_mode="keyword")
