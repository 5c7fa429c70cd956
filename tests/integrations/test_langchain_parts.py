"""The engine-free parts of langchain_pomaidb: id mapping, the record codec, batching,
relevance maps, MMR (against LangChain's own reference implementation) and HashingEmbeddings."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from langchain_pomaidb import HashingEmbeddings, IdCollisionError, batching, ids, mmr, records
from langchain_pomaidb.relevance import cosine_relevance, ip_relevance, l2_relevance

import pomaidb_core as pdb
from pomaidb_core import validation


def _colliding_by_length(doc_id: str) -> int:
    # A deliberately weak hash: every id of the same length collides.
    return len(doc_id)


# -- ids ---------------------------------------------------------------------------------


def test_engine_id_is_the_frozen_blake2b_64_big_endian_hash():
    assert ids.engine_id("abc") == 15617099051652453721
    assert ids.engine_id("doc-1") == 6265767295393789249
    for doc_id in ["", "é", "a" * 1000]:
        digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
        assert ids.engine_id(doc_id) == int.from_bytes(digest, "big")
        assert 0 <= ids.engine_id(doc_id) < 2**64


def test_engine_id_refuses_a_non_string_id():
    with pytest.raises(pdb.InvalidArgumentError):
        ids.engine_id(7)  # type: ignore[arg-type]


def test_distinct_ids_that_share_an_engine_id_are_refused(monkeypatch):
    monkeypatch.setattr(ids, "engine_id", _colliding_by_length)
    with pytest.raises(IdCollisionError) as caught:
        ids.distinct_engine_ids(["ab", "xy"])
    assert caught.value.doc_id == "xy" and caught.value.holder == "ab"
    assert isinstance(caught.value, pdb.AlreadyExistsError)
    assert ids.distinct_engine_ids(["a", "bc"]).tolist() == [1, 2]


# -- records -----------------------------------------------------------------------------

ROUND_TRIP_METADATA = {
    "int": 7,
    "big": 2**53 + 1,
    "float": 1.0,
    "neg": -2.5,
    "flag": True,
    "none": None,
    "text": "héllo",
    "tags": ["a", 1, 2.5, False, None],
    "empty": [],
}


def test_metadata_round_trips_exactly_without_internal_keys():
    item = records.make_item("d1", "body", ROUND_TRIP_METADATA)
    stored = records.stored_metadata(item)
    assert records.TEXT_KEY not in stored and stored[records.ID_KEY] == "d1"  # text: the record's
    document = records.to_document(stored, "body")
    assert document == Document(id="d1", page_content="body", metadata=ROUND_TRIP_METADATA)
    assert [type(v) for v in document.metadata.values()] == [
        type(v) for v in ROUND_TRIP_METADATA.values()
    ]


def test_storing_and_reading_never_alias_the_callers_lists():
    metadata = {"tags": ["a"]}
    stored = records.stored_metadata(records.make_item("d1", "x", metadata))
    assert metadata == {"tags": ["a"]}
    stored, _ = validation.check_metadata(stored, 1 << 20)  # the copy the engine keeps
    stored["tags"].append("engine-side")
    assert metadata == {"tags": ["a"]}
    document = records.to_document(stored, "x")
    document.metadata["tags"].append("caller-side")
    assert stored["tags"] == ["a", "engine-side"]


def test_a_record_written_before_texts_existed_reads_its_page_content_from_metadata():
    legacy = {records.TEXT_KEY: "old body", records.ID_KEY: "d1", "a": 1}
    assert records.to_document(legacy, None) == Document(id="d1", page_content="old body",
                                                         metadata={"a": 1})
    assert records.to_document(legacy, "new body").page_content == "new body"


@pytest.mark.parametrize("key", records.RESERVED_KEYS)
def test_metadata_using_a_reserved_key_is_refused(key):
    with pytest.raises(pdb.InvalidArgumentError, match="reserved"):
        records.make_item("d1", "x", {key: 1})


def test_documents_take_ids_from_the_ids_argument_first_then_their_own_then_fresh_uuids():
    documents = [Document(page_content="a", id="own"), Document(page_content="b")]
    own = [item.doc_id for item in records.items_from_documents(documents)]
    assert own[0] == "own" and len(own[1]) == 36 and own[1] != own[0]
    given = [item.doc_id for item in records.items_from_documents(documents, ["x", "y"])]
    assert given == ["x", "y"]
    assert documents == [Document(page_content="a", id="own"), Document(page_content="b")]


def test_column_lengths_must_match_the_texts():
    with pytest.raises(pdb.InvalidArgumentError):
        list(records.items_from_texts(["a", "b"], ids=["1"]))
    with pytest.raises(ValueError):
        list(records.items_from_texts((t for t in ["a", "b"]), metadatas=[{}]))
    with pytest.raises(pdb.InvalidArgumentError):
        list(records.items_from_documents([Document(page_content="a")], ["1", "2"]))


def test_non_string_page_content_or_metadata_is_refused():
    with pytest.raises(pdb.InvalidArgumentError):
        records.make_item("d", b"bytes", {})
    with pytest.raises(pdb.InvalidArgumentError):
        records.make_item("d", "x", [("k", 1)])
    with pytest.raises(pdb.InvalidArgumentError):
        records.make_item(5, "x", {})


# -- batching ----------------------------------------------------------------------------


def test_batches_keep_the_last_occurrence_of_a_repeated_id_and_return_every_id():
    items = records.items_from_texts(["a1", "b", "a2", "c"], ids=["a", "b", "a", "c"])
    (first, second) = list(batching.batches(items, 3))
    assert first.ids == ["a", "b", "a"] and second.ids == ["c"]
    assert {item.doc_id: item.text for item in first.items} == {"a": "a2", "b": "b"}
    assert first.engine_ids.tolist() == [ids.engine_id(item.doc_id) for item in first.items]


def test_a_batch_with_two_ids_sharing_an_engine_id_is_refused(monkeypatch):
    monkeypatch.setattr(ids, "engine_id", _colliding_by_length)
    items = records.items_from_texts(["x", "y"], ids=["ab", "cd"])
    with pytest.raises(IdCollisionError):
        list(batching.batches(items, 10))


# -- relevance ---------------------------------------------------------------------------

EXTREME_SCORES = [-1e308, -1e6, -700.0, -4.0, -1.0, -1e-9, 0.0, 1e-9, 1.0, 4.0, 700.0, 1e308]


@pytest.mark.parametrize("relevance", [cosine_relevance, ip_relevance, l2_relevance])
def test_relevance_stays_in_unit_interval_and_is_monotone(relevance):
    values = [relevance(score) for score in EXTREME_SCORES]
    assert all(0.0 <= value <= 1.0 for value in values)
    assert values == sorted(values)


def test_relevance_maps_follow_their_documented_formulas():
    assert cosine_relevance(1.0) == 1.0 and cosine_relevance(-1.0) == 0.0
    assert cosine_relevance(0.5) == 0.75
    assert cosine_relevance(1.0000001) == 1.0  # float32 rounding of a self-match
    assert l2_relevance(0.0) == 1.0 and l2_relevance(-1.0) == 0.5 and l2_relevance(-3.0) == 0.25
    assert ip_relevance(0.0) == 0.5
    assert ip_relevance(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert ip_relevance(-2.0) == pytest.approx(1 / (1 + math.exp(2.0)))


# -- MMR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lambda_mult", [0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_mmr_selects_what_langchains_reference_selects(lambda_mult, k):
    rng = np.random.default_rng(k * 100 + int(lambda_mult * 10))
    candidates = rng.normal(size=(24, 7))
    query = rng.normal(size=7)
    expected = maximal_marginal_relevance(query, candidates.tolist(), lambda_mult, k)
    assert mmr.select(query, candidates, k, lambda_mult) == expected


def test_mmr_with_lambda_one_is_plain_cosine_ranking():
    rng = np.random.default_rng(3)
    candidates = rng.normal(size=(10, 5))
    query = rng.normal(size=5)
    cosines = candidates @ query / np.linalg.norm(candidates, axis=1) / np.linalg.norm(query)
    assert mmr.select(query, candidates, 10, 1.0) == list(np.argsort(-cosines))


def test_mmr_returns_at_most_the_candidates_and_tolerates_zero_vectors():
    candidates = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert sorted(mmr.select([1.0, 0.1], candidates, 10, 0.5)) == [0, 1, 2]
    assert mmr.select([1.0, 0.0], np.zeros((0, 2)), 3, 0.5) == []


def test_mmr_refuses_lambda_outside_the_unit_interval():
    with pytest.raises(pdb.InvalidArgumentError):
        mmr.select([1.0], [[1.0]], 1, 1.5)


# -- HashingEmbeddings -------------------------------------------------------------------


async def test_hashing_embeddings_are_deterministic_unit_vectors_sync_and_async():
    embeddings = HashingEmbeddings(dim=32)
    texts = ["vector database", "", "!!!", "A fast Vector database"]
    vectors = embeddings.embed_documents(texts)
    assert vectors == HashingEmbeddings(dim=32).embed_documents(texts)
    assert vectors == await embeddings.aembed_documents(texts)
    assert await embeddings.aembed_query("vector database") == vectors[0]
    assert all(len(v) == 32 and math.isclose(np.linalg.norm(v), 1.0) for v in vectors)


def test_hashing_embeddings_place_texts_sharing_words_closer():
    embeddings = HashingEmbeddings(dim=256)
    query, near, far = (
        np.array(embeddings.embed_query(t))
        for t in ["embedded vector database", "a small embedded vector database", "pasta recipes"]
    )
    assert query @ near > query @ far


def test_hashing_embeddings_refuse_a_tiny_dimension():
    with pytest.raises(pdb.InvalidArgumentError):
        HashingEmbeddings(dim=1)
