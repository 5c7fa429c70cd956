"""PomaiDBVectorStore's async API: native (no thread pool anywhere), equal to the sync API,
and cooperative: the event loop keeps running while many searches are in flight."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_pomaidb import HashingEmbeddings, IdCollisionError, PomaiDBVectorStore, ids

import pomaidb_core as pdb

WORDS = [f"w{i}" for i in range(30)]


def corpus(n: int) -> tuple[list[str], list[dict]]:
    texts = [
        f"doc{i} {WORDS[i % 30]} {WORDS[(i * 7) % 30]} {WORDS[(i * 11) % 30]}" for i in range(n)
    ]
    metadatas = [{"i": i, "tag": f"t{i % 4}", "year": 2000 + i % 20} for i in range(n)]
    return texts, metadatas


@pytest.fixture()
async def no_thread_pool(monkeypatch):
    """Fail the test if anything hands work to an executor on the running loop."""
    loop = asyncio.get_running_loop()

    def refuse(*args, **kwargs):
        raise AssertionError("run_in_executor was used: the async path is not native")

    monkeypatch.setattr(loop, "run_in_executor", refuse)


@pytest.fixture()
def store(tmp_path):
    with PomaiDBVectorStore(HashingEmbeddings(dim=32), path=tmp_path / "db", shards=3) as opened:
        yield opened


async def test_every_async_method_runs_without_a_thread_pool_and_matches_sync(
    store, no_thread_pool
):
    texts, metadatas = corpus(120)
    doc_ids = [f"id-{i}" for i in range(120)]
    assert await store.aadd_texts(texts, metadatas, ids=doc_ids, batch_size=50) == doc_ids
    documents = [Document(page_content="extra one", metadata={"tag": "x"}, id="extra")]
    assert await store.aadd_documents(documents) == ["extra"]

    assert await store.aget_by_ids(["id-5", "nope", "extra"]) == store.get_by_ids(
        ["id-5", "nope", "extra"]
    )
    query, vector = "w3 w4", store.embeddings.embed_query("w3 w4")
    for kwargs in (
        {},
        {"filter": {"tag": "t1"}},
        {"filter": lambda d: d.metadata.get("i", 1) % 9 == 0},
    ):
        assert await store.asimilarity_search(query, k=6, **kwargs) == store.similarity_search(
            query, k=6, **kwargs
        )
        assert await store.asimilarity_search_with_score(
            query, k=6, **kwargs
        ) == store.similarity_search_with_score(query, k=6, **kwargs)
        assert await store.asimilarity_search_by_vector(
            vector, k=6, **kwargs
        ) == store.similarity_search_by_vector(vector, k=6, **kwargs)
        assert await store.asimilarity_search_with_relevance_scores(
            query, k=6, **kwargs
        ) == store.similarity_search_with_relevance_scores(query, k=6, **kwargs)
        assert await store.amax_marginal_relevance_search(
            query, k=4, fetch_k=15, lambda_mult=0.3, **kwargs
        ) == store.max_marginal_relevance_search(query, k=4, fetch_k=15, lambda_mult=0.3, **kwargs)
        assert await store.amax_marginal_relevance_search_by_vector(
            vector, k=4, fetch_k=15, **kwargs
        ) == store.max_marginal_relevance_search_by_vector(vector, k=4, fetch_k=15, **kwargs)

    threshold = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"k": 10, "score_threshold": 0.6}
    )
    assert await threshold.ainvoke(query) == threshold.invoke(query)

    assert await store.adelete() is False
    assert await store.adelete(["id-1", "missing"]) is True
    assert await store.adelete(filter={"tag": "t2"}) is True
    remaining = store.get_by_ids(doc_ids)
    assert [d.id for d in remaining] == [f"id-{i}" for i in range(120) if i != 1 and i % 4 != 2]
    assert await store.adelete(delete_all=True) is True
    assert await store.asimilarity_search(query, k=3) == []


async def test_afrom_texts_builds_a_store_natively(tmp_path, no_thread_pool):
    texts, metadatas = corpus(30)
    store = await PomaiDBVectorStore.afrom_texts(
        texts, HashingEmbeddings(dim=16), metadatas, path=tmp_path / "db", membrane="m"
    )
    with store:
        assert store.db.membranes() == ["m"]
        assert (
            len(await store.aget_by_ids([d.id for d in store.similarity_search("w1", k=30)])) == 30
        )
    documents = [Document(page_content="from documents", id="d1")]
    again = await PomaiDBVectorStore.afrom_documents(
        documents, HashingEmbeddings(dim=16), path=tmp_path / "db2"
    )
    with again:
        assert await again.aget_by_ids(["d1"]) == documents


async def test_async_writes_refuse_an_id_collision(store, monkeypatch):
    monkeypatch.setattr(ids, "engine_id", lambda doc_id: len(doc_id))
    await store.aadd_texts(["first"], ids=["ab"])
    with pytest.raises(IdCollisionError):
        await store.aadd_texts(["second"], ids=["cd"])
    await store.adelete(["cd"])
    assert await store.aget_by_ids(["ab", "cd"]) == [Document(id="ab", page_content="first")]


async def test_async_deletes_refuse_ambiguous_requests(store):
    with pytest.raises(pdb.InvalidArgumentError):
        await store.adelete(["a"], delete_all=True)
    with pytest.raises(pdb.InvalidArgumentError):
        await store.adelete(filter={})


async def test_the_event_loop_runs_other_tasks_while_many_searches_wait_on_shards(
    store, no_thread_pool
):
    texts, metadatas = corpus(3000)
    await store.aadd_texts(texts, metadatas, batch_size=1000)
    queries = [f"{WORDS[i % 30]} {WORDS[(i * 3) % 30]}" for i in range(300)]
    expected = [store.similarity_search(q, k=5, filter={"tag": "t3"}) for q in queries]

    ticks = 0
    ticking = True
    in_flight = peak = overlapped = 0

    async def ticker() -> None:
        # Runs once per loop iteration: it advances only while the loop is free.
        nonlocal ticks
        while ticking:
            ticks += 1
            await asyncio.sleep(0)

    async def search(query: str) -> list[Document]:
        nonlocal in_flight, peak, overlapped
        in_flight += 1
        peak = max(peak, in_flight)
        before = ticks
        try:
            return await store.asimilarity_search(query, k=5, filter={"tag": "t3"})
        finally:
            in_flight -= 1
            overlapped += ticks > before

    running_ticker = asyncio.create_task(ticker())
    results = await asyncio.gather(*(search(q) for q in queries))
    ticking = False
    await running_ticker

    assert results == expected
    # A search that blocked the loop would finish before the next one started (peak 1) and
    # no other task could run during it (overlapped 0). Native searches all wait together
    # on the shards while the loop keeps running everything else.
    assert peak == len(queries)
    assert overlapped == len(queries)
