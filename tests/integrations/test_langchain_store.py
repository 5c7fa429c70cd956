"""PomaiDBVectorStore beyond the standard suite (sync API), each against an oracle: numpy brute
force over the same embeddings, a Python predicate for filters, and LangChain's own MMR."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from langchain_pomaidb import (
    HashingEmbeddings,
    IdCollisionError,
    PomaiDBVectorStore,
    cosine_relevance,
    ids,
)
from langchain_pomaidb.relevance import RELEVANCE_BY_METRIC

import pomaidb_core as pdb

METRICS = ["cosine", "ip", "l2"]
WORDS = [f"w{i}" for i in range(40)]


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    """Distinct texts of random words, with metadata spread over a few keys."""
    rng = np.random.default_rng(seed)
    texts = [f"doc{i} " + " ".join(rng.choice(WORDS, size=6)) for i in range(n)]
    metadatas = [
        {
            "i": i,
            "tag": f"t{i % 5}",
            "parity": "even" if i % 2 == 0 else "odd",
            "year": 2000 + i % 30,
            "labels": [f"l{i % 3}", f"m{i % 7}"],
            "rare": i % 100 == 7,
        }
        for i in range(n)
    ]
    return texts, metadatas


def oracle_scores(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ (query / np.linalg.norm(query))
    if metric == "ip":
        return vectors @ query
    return -np.sum((vectors - query) ** 2, axis=1)


def oracle_ranking(
    embedding: Embeddings, texts, metadatas, query: str, metric: str, keep=lambda i: True
) -> list[tuple[int, float]]:
    """(corpus index, score) of every kept document, best first, ties by engine id."""
    vectors = np.asarray(embedding.embed_documents(texts), dtype=np.float32).astype(np.float64)
    query_vector = np.asarray(embedding.embed_query(query), dtype=np.float32).astype(np.float64)
    scores = oracle_scores(vectors, query_vector, metric)
    kept = [i for i in range(len(texts)) if keep(i)]
    return sorted(((i, float(scores[i])) for i in kept), key=lambda p: (-p[1], doc_eid(p[0])))


def doc_id(i: int) -> str:
    return f"id-{i}"


def doc_eid(i: int) -> int:
    return ids.engine_id(doc_id(i))


def index_of(document: Document) -> int:
    return int(document.id.removeprefix("id-"))


@pytest.fixture()
def open_store(tmp_path):
    opened = []

    def open_(embedding: Embeddings, metric: str = "cosine", **kwargs) -> PomaiDBVectorStore:
        kwargs.setdefault("path", tmp_path / "db")
        kwargs.setdefault("shards", 2)
        store = PomaiDBVectorStore(embedding, metric=metric, **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def filled(open_store, n: int, embedding: Embeddings | None = None, metric="cosine", **kw):
    # Continuous random vectors: no exact score ties, so rankings compare without ambiguity.
    embedding = embedding or DeterministicFakeEmbedding(size=16)
    texts, metadatas = make_corpus(n)
    store = open_store(embedding, metric, **kw)
    store.add_texts(texts, metadatas, ids=[doc_id(i) for i in range(n)])
    return store, embedding, texts, metadatas


# -- scores and relevance ----------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_scores_are_the_engines_metric_scores_best_first(open_store, metric):
    embedding = DeterministicFakeEmbedding(size=16)  # not unit-norm: ip and l2 differ
    store, _, texts, metadatas = filled(open_store, 60, embedding, metric)
    got = store.similarity_search_with_score("w3 w5", k=8, exact=True)
    expected = oracle_ranking(embedding, texts, metadatas, "w3 w5", metric)[:8]
    assert [index_of(doc) for doc, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-4, abs=1e-4)
    assert got[0][0] == Document(
        id=doc_id(expected[0][0]),
        page_content=texts[expected[0][0]],
        metadata=metadatas[expected[0][0]],
    )


@pytest.mark.parametrize("metric", METRICS)
def test_relevance_scores_are_the_metric_map_of_the_scores_and_within_unit_interval(
    open_store, metric
):
    embedding = DeterministicFakeEmbedding(size=16)
    store, *_ = filled(open_store, 40, embedding, metric)
    scored = store.similarity_search_with_score("w1", k=40, exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangChain warns on scores outside [0, 1]
        relevant = store.similarity_search_with_relevance_scores("w1", k=40, exact=True)
    assert [doc for doc, _ in relevant] == [doc for doc, _ in scored]
    mapped = [RELEVANCE_BY_METRIC[metric](score) for _, score in scored]
    assert [r for _, r in relevant] == mapped
    assert all(0.0 <= r <= 1.0 for r in mapped)


@pytest.mark.parametrize("metric", METRICS)
def test_score_threshold_retriever_keeps_exactly_the_documents_at_or_above_it(open_store, metric):
    embedding = DeterministicFakeEmbedding(size=16)
    store, _, texts, metadatas = filled(open_store, 40, embedding, metric)
    ranking = oracle_ranking(embedding, texts, metadatas, "w7 w8", metric)
    relevances = [RELEVANCE_BY_METRIC[metric](s) for _, s in ranking]
    threshold = float((relevances[5] + relevances[6]) / 2)  # six documents pass
    retriever = store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 40, "score_threshold": threshold, "exact": True},
    )
    assert [index_of(d) for d in retriever.invoke("w7 w8")] == [i for i, _ in ranking[:6]]


def test_a_custom_relevance_function_replaces_the_metric_map(open_store):
    store, *_ = filled(open_store, 10, metric="ip", relevance_score_fn=cosine_relevance)
    ((_, score),) = store.similarity_search_with_score("doc3", k=1)
    ((_, relevance),) = store.similarity_search_with_relevance_scores("doc3", k=1)
    assert relevance == cosine_relevance(score)


# -- filters -----------------------------------------------------------------------------

FILTER_CASES = [
    ({"tag": "t1", "parity": "odd"}, lambda m: m["tag"] == "t1" and m["parity"] == "odd"),
    ({"year": {"$gte": 2025}}, lambda m: m["year"] >= 2025),
    (
        {"tag": {"$in": ["t0", "t3"]}, "year": {"$lt": 2010}},
        lambda m: m["tag"] in ("t0", "t3") and m["year"] < 2010,
    ),
    ({"labels": {"$contains": "m2"}}, lambda m: "m2" in m["labels"]),
    (
        {"$or": [{"rare": True}, {"$not": {"year": {"$ne": 2003}}}]},
        lambda m: m["rare"] or m["year"] == 2003,
    ),
    ({"missing": {"$exists": False}, "parity": {"$ne": "even"}}, lambda m: m["parity"] != "even"),
    ({"year": {"$between": [2005, 2010]}}, lambda m: 2005 <= m["year"] <= 2010),
    ({"parity": {"$like": "_v%"}, "tag": {"$ilike": "T3"}}, lambda m: m["i"] % 10 == 8),
    (
        {"$not": [{"parity": "odd"}, {"year": {"$lt": 2015}}]},
        lambda m: not (m["parity"] == "odd" and m["year"] < 2015),
    ),
]


@pytest.mark.parametrize(("engine_filter", "predicate"), FILTER_CASES)
def test_dict_filters_select_what_the_predicate_selects_best_first(
    open_store, engine_filter, predicate
):
    store, embedding, texts, metadatas = filled(open_store, 150)
    got = store.similarity_search("w2 w9", k=10, filter=engine_filter, exact=True)
    expected = oracle_ranking(
        embedding, texts, metadatas, "w2 w9", "cosine", lambda i: predicate(metadatas[i])
    )[:10]
    assert [index_of(doc) for doc in got] == [i for i, _ in expected]


def test_callable_filter_selects_what_it_accepts_best_first(open_store):
    store, embedding, texts, metadatas = filled(open_store, 150)

    def accept(document: Document) -> bool:
        return document.metadata["tag"] == "t2" and "w1" in document.page_content.split()

    got = store.similarity_search_with_score("w1 w4", k=5, filter=accept, exact=True)
    expected = oracle_ranking(
        embedding,
        texts,
        metadatas,
        "w1 w4",
        "cosine",
        lambda i: metadatas[i]["tag"] == "t2" and "w1" in texts[i].split(),
    )[:5]
    assert [index_of(doc) for doc, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


@pytest.mark.parametrize(
    "rare_filter",
    [{"rare": True}, lambda document: document.metadata["rare"]],
    ids=["dict", "callable"],
)
@pytest.mark.parametrize("frozen", [False, True], ids=["memtable", "segments"])
def test_a_selective_filter_returns_k_matches_whenever_k_exist(open_store, rare_filter, frozen):
    store, *_ = filled(open_store, 600)  # six documents are rare
    if frozen:
        store.db.freeze()  # searched through WSBR, approximately
    four = store.similarity_search("w0", k=4, filter=rare_filter)
    assert len(four) == 4 and all(doc.metadata["rare"] for doc in four)
    every = store.similarity_search("w0", k=10, filter=rare_filter)
    assert sorted(index_of(doc) for doc in every) == [7, 107, 207, 307, 407, 507]


def test_malformed_or_mistyped_filters_are_refused(open_store):
    store, *_ = filled(open_store, 5)
    with pytest.raises(pdb.InvalidArgumentError):
        store.similarity_search("w0", filter={"year": {"$between": [2, 1]}})
    with pytest.raises(pdb.InvalidArgumentError):
        store.similarity_search("w0", filter={"parity": {"$like": "odd\\"}})
    with pytest.raises(pdb.InvalidArgumentError):
        store.similarity_search("w0", filter=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filters"):
        store.similarity_search("w0", filters={"tag": "t1"})


def test_dotted_keys_filter_on_nested_metadata_which_round_trips_unshared(open_store):
    embedding = DeterministicFakeEmbedding(size=16)
    names = ["Ann", "Bob", "Cy"]
    metadatas = [
        {"i": i, "author": {"name": names[i % 3], "born": 1940 + i, "tags": [f"x{i % 2}"]}}
        for i in range(60)
    ]
    texts = [f"doc{i} w{i % 7}" for i in range(60)]
    store = open_store(embedding)
    store.add_texts(texts, metadatas, ids=[doc_id(i) for i in range(60)])
    metadatas[0]["author"]["name"] = "changed after add"  # the store kept its own copy

    spec = {"author.name": "Ann", "author.born": {"$between": [1950, 1990]}}
    got = store.similarity_search("w3", k=8, filter=spec, exact=True)
    keep = lambda i: i % 3 == 0 and 10 <= i <= 50  # noqa: E731
    expected = oracle_ranking(embedding, texts, metadatas, "w3", "cosine", keep)[:8]
    assert [index_of(doc) for doc in got] == [i for i, _ in expected]
    assert got[0].metadata["author"]["name"] == "Ann"
    got[0].metadata["author"]["name"] = "mutated"  # a private copy, too
    assert store.get_by_ids([got[0].id])[0].metadata["author"]["name"] == "Ann"

    assert store.delete(filter={"author.tags": {"$contains": "x1"}}) is True
    left = store.get_by_ids([doc_id(i) for i in range(60)])
    assert [index_of(doc) for doc in left] == list(range(0, 60, 2))


# -- deletes -----------------------------------------------------------------------------


def test_delete_by_filter_removes_exactly_the_matching_documents(open_store):
    store, _, _, metadatas = filled(open_store, 50)
    assert store.delete(filter={"tag": "t1", "parity": "odd"}) is True
    survivors = store.get_by_ids([doc_id(i) for i in range(50)])
    expected = [
        i for i, m in enumerate(metadatas) if not (m["tag"] == "t1" and m["parity"] == "odd")
    ]
    assert [index_of(doc) for doc in survivors] == expected


def test_delete_without_ids_or_filter_deletes_nothing_unless_delete_all(open_store):
    store, *_ = filled(open_store, 20)
    assert store.delete() is False
    assert store.delete(None) is False
    assert len(store.get_by_ids([doc_id(i) for i in range(20)])) == 20
    assert store.delete([]) is True
    assert store.delete(delete_all=True) is True
    assert store.get_by_ids([doc_id(i) for i in range(20)]) == []
    assert store.similarity_search("w1", k=3) == []


def test_ambiguous_or_empty_delete_requests_are_refused(open_store):
    store, *_ = filled(open_store, 5)
    with pytest.raises(pdb.InvalidArgumentError):
        store.delete(["id-1"], filter={"tag": "t1"})
    with pytest.raises(pdb.InvalidArgumentError):
        store.delete(filter={})
    with pytest.raises(pdb.InvalidArgumentError):
        store.delete(filter=lambda document: True)  # type: ignore[arg-type]
    assert len(store.get_by_ids([doc_id(i) for i in range(5)])) == 5


def test_deletes_on_a_store_never_written_succeed(open_store):
    store = open_store(HashingEmbeddings(dim=8))
    assert store.delete(["a"]) is True
    assert store.delete(filter={"tag": "x"}) is True
    assert store.delete(delete_all=True) is True
    assert store.get_by_ids(["a"]) == []


# -- ids ---------------------------------------------------------------------------------


def test_an_id_collision_is_reported_and_never_touches_the_other_document(open_store, monkeypatch):
    monkeypatch.setattr(ids, "engine_id", lambda doc_id: len(doc_id))  # "ab" ~ "cd"
    store = open_store(HashingEmbeddings(dim=16))
    store.add_texts(["alpha text"], [{"n": 1}], ids=["ab"])
    with pytest.raises(IdCollisionError, match="'ab'"):
        store.add_texts(["other text"], [{"n": 2}], ids=["cd"])
    with pytest.raises(IdCollisionError):
        store.add_documents(
            [Document(page_content="x", id="zz"), Document(page_content="y", id="yy")]
        )
    original = Document(id="ab", page_content="alpha text", metadata={"n": 1})
    assert store.get_by_ids(["cd", "ab"]) == [original]
    store.delete(["cd"])
    assert store.get_by_ids(["ab"]) == [original]
    assert store.similarity_search("anything", k=5) == [original]
    store.add_texts(["alpha again"], ids=["ab"])  # the holder itself may still be replaced
    assert store.get_by_ids(["ab"])[0].page_content == "alpha again"


def test_re_adding_ids_replaces_documents_within_and_across_calls(open_store):
    store = open_store(HashingEmbeddings(dim=16))
    returned = store.add_texts(["one", "two", "one again"], ids=["a", "b", "a"])
    assert returned == ["a", "b", "a"]
    store.add_documents([Document(page_content="two again", metadata={"v": 2}, id="b")])
    assert store.get_by_ids(["a", "b", "a"]) == [
        Document(id="a", page_content="one again"),
        Document(id="b", page_content="two again", metadata={"v": 2}),
    ]
    assert store.db.membrane("langchain").count() == 2


def test_metadata_round_trips_exactly_and_inputs_stay_untouched(open_store):
    metadata = {
        "int": 3,
        "float": 3.0,
        "big": 2**60,
        "flag": False,
        "none": None,
        "list": [1, "two", 3.5, True, None],
        "text": "ünï",
    }
    document = Document(page_content="round trip", metadata=metadata)
    snapshot = document.model_copy(deep=True)
    store = open_store(HashingEmbeddings(dim=16))
    (new_id,) = store.add_documents([document])
    assert document == snapshot and document.id is None
    (got,) = store.get_by_ids([new_id])
    (hit,) = store.similarity_search("round trip", k=1)
    for read in (got, hit):
        assert read == Document(id=new_id, page_content="round trip", metadata=metadata)
        assert {k: type(v) for k, v in read.metadata.items()} == {
            k: type(v) for k, v in metadata.items()
        }
    got.metadata["list"].append("mutated")
    assert store.get_by_ids([new_id])[0].metadata == metadata


def test_reserved_metadata_keys_are_refused_before_anything_is_written(open_store):
    store = open_store(HashingEmbeddings(dim=16))
    with pytest.raises(pdb.InvalidArgumentError, match="reserved"):
        store.add_texts(["a", "b"], [{}, {"_lc_text": "sneaky"}], ids=["1", "2"])
    assert store.get_by_ids(["1", "2"]) == []


# -- maximal marginal relevance ----------------------------------------------------------


def mmr_oracle(embedding, texts, metadatas, query, k, fetch_k, lambda_mult, keep=lambda i: True):
    ranking = oracle_ranking(embedding, texts, metadatas, query, "cosine", keep)[:fetch_k]
    vectors = np.asarray(embedding.embed_documents([texts[i] for i, _ in ranking]), np.float32)
    query_vector = np.asarray(embedding.embed_query(query), dtype=np.float32)
    picked = maximal_marginal_relevance(query_vector, vectors.tolist(), lambda_mult, k)
    return [ranking[p][0] for p in picked]


@pytest.mark.parametrize(
    ("k", "fetch_k", "lambda_mult"),
    [(4, 20, 0.5), (5, 12, 0.1), (3, 3, 0.7), (6, 30, 1.0), (4, 25, 0.0)],
)
def test_mmr_orders_the_fetched_candidates_like_the_reference(open_store, k, fetch_k, lambda_mult):
    store, embedding, texts, metadatas = filled(open_store, 120)
    got = store.max_marginal_relevance_search(
        "w5 w6 w7", k=k, fetch_k=fetch_k, lambda_mult=lambda_mult, exact=True
    )
    expected = mmr_oracle(embedding, texts, metadatas, "w5 w6 w7", k, fetch_k, lambda_mult)
    assert [index_of(doc) for doc in got] == expected


@pytest.mark.parametrize(
    "mmr_filter",
    [{"parity": "odd"}, lambda d: d.metadata["parity"] == "odd"],
    ids=["dict", "callable"],
)
def test_mmr_draws_its_candidates_from_the_filtered_documents(open_store, mmr_filter):
    store, embedding, texts, metadatas = filled(open_store, 120)
    vector = embedding.embed_query("w5 w6")
    got = store.max_marginal_relevance_search_by_vector(
        vector, k=5, fetch_k=15, lambda_mult=0.3, filter=mmr_filter, exact=True
    )
    expected = mmr_oracle(
        embedding, texts, metadatas, "w5 w6", 5, 15, 0.3, lambda i: metadatas[i]["parity"] == "odd"
    )
    assert [index_of(doc) for doc in got] == expected


def test_mmr_retriever_returns_k_documents_and_refuses_a_bad_lambda(open_store):
    store, *_ = filled(open_store, 30)
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 10})
    assert len(retriever.invoke("w1")) == 3
    with pytest.raises(pdb.InvalidArgumentError):
        store.max_marginal_relevance_search("w1", lambda_mult=2.0)


def test_mmr_on_a_store_never_written_is_empty(open_store):
    store = open_store(HashingEmbeddings(dim=16))
    assert store.max_marginal_relevance_search("anything", k=3) == []


# -- construction, persistence, sharing --------------------------------------------------

REOPEN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from langchain_pomaidb import HashingEmbeddings, PomaiDBVectorStore
    path, query = sys.argv[1], sys.argv[2]
    with PomaiDBVectorStore(HashingEmbeddings(dim=32), path=path, membrane="papers",
                            metric="l2", shards=3) as store:
        hits = store.similarity_search_with_score(query, k=5, filter={"parity": "odd"})
        docs = store.get_by_ids(["id-1", "id-2", "gone"])
        print(json.dumps({
            "hits": [[d.id, d.page_content, d.metadata, s] for d, s in hits],
            "docs": [[d.id, d.page_content, d.metadata] for d in docs],
        }))
    """
)


def test_from_texts_persists_and_a_new_process_reads_the_same_documents_and_scores(tmp_path):
    texts, metadatas = make_corpus(80)
    path = tmp_path / "persisted"
    store = PomaiDBVectorStore.from_texts(
        texts,
        HashingEmbeddings(dim=32),
        metadatas,
        ids=[doc_id(i) for i in range(80)],
        path=path,
        membrane="papers",
        metric="l2",
        shards=3,
    )
    with store:
        store.delete(["id-3"])
        hits = store.similarity_search_with_score("w3 w4", k=5, filter={"parity": "odd"})
        docs = store.get_by_ids(["id-1", "id-2", "gone"])
    run = subprocess.run(
        [sys.executable, "-c", REOPEN_SCRIPT, str(path), "w3 w4"],
        cwd=tmp_path,  # `-c` puts the working directory first on sys.path: not the source tree
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(run.stdout)
    assert [h[:3] for h in seen["hits"]] == [[d.id, d.page_content, d.metadata] for d, _ in hits]
    assert [h[3] for h in seen["hits"]] == pytest.approx([s for _, s in hits], rel=1e-6)
    assert seen["docs"] == [[d.id, d.page_content, d.metadata] for d in docs]
    assert "id-3" not in [h[0] for h in seen["hits"]]


def test_from_documents_keeps_their_ids_in_the_named_membrane(tmp_path):
    documents = [
        Document(page_content=f"text {i}", metadata={"i": i}, id=f"d{i}") for i in range(5)
    ]
    with PomaiDBVectorStore.from_documents(
        documents, HashingEmbeddings(dim=16), path=tmp_path / "db", membrane="notes"
    ) as store:
        assert store.db.membranes() == ["notes"]
        assert store.get_by_ids(["d4", "d0"]) == [documents[4], documents[0]]


def test_stores_sharing_one_db_keep_their_membranes_apart_and_leave_it_open(tmp_path):
    with pdb.open(tmp_path / "shared", shards=2) as db:
        first = PomaiDBVectorStore(HashingEmbeddings(dim=16), db=db, membrane="a")
        second = PomaiDBVectorStore(HashingEmbeddings(dim=8), db=db, membrane="b", metric="l2")
        first.add_texts(["in a"], ids=["x"])
        second.add_texts(["in b"], ids=["x"])
        assert first.get_by_ids(["x"])[0].page_content == "in a"
        assert second.similarity_search("in", k=5)[0].page_content == "in b"
        first.close()
        assert second.get_by_ids(["x"])[0].page_content == "in b"


def test_construction_needs_exactly_one_of_path_and_db(tmp_path):
    embedding = HashingEmbeddings(dim=8)
    with pytest.raises(pdb.InvalidArgumentError):
        PomaiDBVectorStore(embedding)
    with pdb.open(tmp_path / "db", shards=1) as db:
        with pytest.raises(pdb.InvalidArgumentError):
            PomaiDBVectorStore(embedding, path=tmp_path / "other", db=db)
        with pytest.raises(pdb.InvalidArgumentError):
            PomaiDBVectorStore(embedding, db=db, shards=2)
    with pytest.raises(pdb.InvalidArgumentError):
        PomaiDBVectorStore(embedding, path=tmp_path / "db2", metric="manhattan")


def test_reopening_a_membrane_with_another_metric_fails_loudly(tmp_path):
    with PomaiDBVectorStore.from_texts(["a b"], HashingEmbeddings(dim=8), path=tmp_path / "db"):
        pass
    reopened = PomaiDBVectorStore(HashingEmbeddings(dim=8), path=tmp_path / "db", metric="l2")
    with reopened, pytest.raises(pdb.InvalidArgumentError):
        reopened.similarity_search("a", k=1)


def test_dim_creates_the_membrane_up_front(tmp_path):
    with PomaiDBVectorStore(HashingEmbeddings(dim=8), path=tmp_path / "db", dim=8) as store:
        assert store.db.membrane("langchain").dim == 8
        assert store.similarity_search("a", k=1) == []


# -- large ingests -----------------------------------------------------------------------


class CountingEmbeddings(HashingEmbeddings):
    """Records each embed_documents batch size and how far ahead the input was read."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.produced = 0
        self.embedded = 0
        self.batch_sizes: list[int] = []
        self.max_read_ahead = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batch_sizes.append(len(texts))
        self.max_read_ahead = max(self.max_read_ahead, self.produced - self.embedded)
        self.embedded += len(texts)
        return super().embed_documents(texts)


def test_a_large_ingest_streams_in_bounded_batches_with_a_progress_bar(open_store, capsys):
    embedding = CountingEmbeddings()
    store = open_store(embedding)

    def texts():
        for i in range(1000):
            embedding.produced += 1
            yield f"streamed document {i}"

    returned = store.add_texts(texts(), batch_size=128, show_progress=True)
    assert len(returned) == len(set(returned)) == 1000
    assert embedding.batch_sizes == [128] * 7 + [104]
    assert embedding.max_read_ahead <= 128
    assert store.db.membrane("langchain").count() == 1000
    assert "1000doc" in capsys.readouterr().err  # a generator has no length to show

    documents = [Document(page_content=f"listed {i}") for i in range(300)]
    store.add_documents(documents, batch_size=100, show_progress=True)
    assert "300/300" in capsys.readouterr().err
    assert store.db.membrane("langchain").count() == 1300


def test_a_failed_batch_write_stops_the_ingest_before_any_later_batch(open_store, monkeypatch):
    # Writes run one batch behind the embedding (batching.WriteAhead): the batch after a
    # failed one may be embedded already, but it must never be written.
    store = open_store(HashingEmbeddings(dim=8))
    store.add_texts(["seed"])
    write = pdb.Membrane.put_batch
    calls = []

    def failing_second(self, *args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) == 2:
            raise pdb.StorageError("disk full")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(pdb.Membrane, "put_batch", failing_second)
    with pytest.raises(pdb.StorageError, match="disk full"):
        store.add_texts([f"doc {i}" for i in range(500)], batch_size=100)
    assert calls == [100, 100]
    monkeypatch.undo()
    assert store.db.membrane("langchain").count() == 101
    assert store.get_by_ids(store.add_texts(["after"])) != []


def test_progress_bar_is_off_unless_asked_for(open_store, capsys):
    store = open_store(HashingEmbeddings(dim=8))
    store.add_texts([f"t{i}" for i in range(10)])
    assert "10/10" not in capsys.readouterr().err


def test_reopening_without_the_membrane_name_warns_naming_the_membranes(tmp_path):
    embedding = HashingEmbeddings(dim=8)
    with PomaiDBVectorStore.from_texts(["a b"], embedding, path=tmp_path / "db", membrane="notes"):
        pass
    with pytest.warns(UserWarning, match=r"'langchain' does not exist .* holds \['notes'\]"):
        reopened = PomaiDBVectorStore(embedding, path=tmp_path / "db")
    with reopened:
        assert reopened.similarity_search("a", k=1) == []
    with pytest.warns(UserWarning, match="notes"):
        PomaiDBVectorStore(embedding, path=tmp_path / "db", membrane="other", dim=8).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with PomaiDBVectorStore(embedding, path=tmp_path / "db", membrane="notes") as again:
            assert again.similarity_search("a b", k=1)[0].page_content == "a b"
        PomaiDBVectorStore(embedding, path=tmp_path / "fresh").close()  # empty: quiet
