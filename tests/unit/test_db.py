"""The DB and membrane API: semantics of API.md, and every bad input rejected without effect."""

from __future__ import annotations

import asyncio
import math
import threading

import numpy as np
import pytest
from oracle import Oracle, assert_same_ranking

import pomaidb_core as pdb


@pytest.fixture
def db(tmp_path):
    with pdb.open(tmp_path / "db", shards=2) as handle:
        yield handle


@pytest.fixture
def docs(db):
    return db.create_membrane("docs", dim=4, metric="cosine")


def test_constructor_does_no_io_and_accepts_option_keywords(tmp_path):
    path = tmp_path / "never-created"
    db = pdb.DB(path, shards=3, sync="always")
    assert not path.exists()
    assert db.options.shards == 3 and db.options.sync == "always"
    assert pdb.DB(path, pdb.Options(shards=5)).options.shards == 5


@pytest.mark.parametrize("kwargs", [{"shards": 0}, {"sync": "sometimes"}, {"memtable_limit": -1},
                                    {"bogus": 1}, {"shards": True}])
def test_bad_options_are_rejected(tmp_path, kwargs):
    with pytest.raises(pdb.InvalidArgumentError):
        pdb.DB(tmp_path, **kwargs)


def test_put_get_search_roundtrip(docs):
    docs.put(1, [1, 0, 0, 0], {"tag": "a"})
    docs.put_batch([2, 3], np.eye(4, dtype=np.float32)[1:3], [{"tag": "b"}, None])
    record = docs.get(1)
    assert record.id == 1 and record.metadata == {"tag": "a"}
    assert record.vector.dtype == np.float32
    hits = docs.search([1, 0.1, 0, 0], k=2)
    assert [h.id for h in hits] == [1, 2]
    assert hits[0].score == pytest.approx(1 / math.sqrt(1.01), rel=1e-5)
    assert docs.search([1, 0, 0, 0], k=5, filter={"tag": "b"})[0].id == 2
    assert docs.count() == 3


def test_put_replaces_and_delete_hides(docs):
    docs.put(7, [1, 0, 0, 0], {"v": 1})
    docs.put(7, [0, 1, 0, 0], {"v": 2})
    assert docs.count() == 1
    assert docs.get(7).metadata == {"v": 2}
    assert docs.delete(7) is True
    assert docs.delete(7) is False
    assert docs.get(7) is None and not docs.exists(7)
    assert docs.search([0, 1, 0, 0], k=3) == []


def test_returned_metadata_is_a_private_copy(docs):
    meta = {"tags": ["x"]}
    docs.put(1, [1, 0, 0, 0], meta)
    meta["tags"].append("mutated")
    got = docs.get(1).metadata
    assert got == {"tags": ["x"]}
    got["tags"].append("again")
    assert docs.get(1).metadata == {"tags": ["x"]}


def test_scores_follow_the_metric(db):
    vectors = np.array([[1, 2], [3, -1]], dtype=np.float32)
    query = np.array([0.5, 1], dtype=np.float32)
    for metric in ("ip", "l2", "cosine"):
        m = db.create_membrane(metric, dim=2, metric=metric)
        m.put_batch([10, 20], vectors)
        oracle = Oracle(2, metric)
        for key, vector in zip([10, 20], vectors):
            oracle.put(key, vector)
        assert_same_ranking(m.search(query, k=2), oracle.search(query, 2))


def test_ties_break_by_id_ascending(docs):
    docs.put_batch([9, 3, 5], np.ones((3, 4), dtype=np.float32))
    assert [h.id for h in docs.search(np.ones(4), k=3)] == [3, 5, 9]


def test_hits_tied_at_the_kth_score_across_shards_keep_their_metadata(tmp_path):
    # Hits are decoded only once the shards' hits are merged: a tie at the k-th score must
    # survive the merge (it may win on id), with its own metadata.
    with pdb.open(tmp_path / "db", shards=4) as db:
        m = db.create_membrane("m", dim=2, metric="ip")
        ids = list(range(40))
        vectors = np.array([[1.0, 0.0] if i % 3 else [0.5, 0.0] for i in ids], dtype=np.float32)
        m.put_batch(ids, vectors, [{"id": i} for i in ids])
        db.freeze()
        hits = m.search([1.0, 0.0], k=5)
        tied = [i for i in ids if i % 3][:5]
        assert [(h.id, h.score, h.metadata) for h in hits] == [(i, 1.0, {"id": i}) for i in tied]
        assert [h.id for h in m.search_batch(np.array([[1.0, 0.0]]), k=5)[0]] == tied


def test_search_decodes_metadata_of_the_final_k_only_and_lets_go_of_its_segments(
        tmp_path, monkeypatch):
    from pomaidb_core.segment import SegmentReader

    rng = np.random.default_rng(3)
    with pdb.open(tmp_path / "db", shards=4) as db:
        m = db.create_membrane("m", dim=8, metric="cosine")
        vectors = rng.standard_normal((2_000, 8)).astype(np.float32)
        m.put_batch(np.arange(2_000), vectors, [{"n": i} for i in range(2_000)],
                    texts=[f"t{i}" for i in range(2_000)])
        db.freeze()
        decoded = []
        read = SegmentReader._metadata_json  # every decoding path reads the JSON here
        monkeypatch.setattr(SegmentReader, "_metadata_json",
                            lambda self, rows: decoded.extend(rows) or read(self, rows))
        for query in rng.standard_normal((20, 8)).astype(np.float32):
            decoded.clear()
            hits = m.search(query, k=5)
            assert len(decoded) == 5  # not every shard's k best
            assert [(h.metadata, h.text) for h in hits] == [({"n": h.id}, f"t{h.id}") for h in hits]
            exact = m.search(query, k=5, exact=True)
            assert [h.id for h in hits] == [h.id for h in exact]
        segments = [seg for shard in range(4)
                    for seg in db._shard(shard).shard._read_state(m.meta.membrane_id).segments]
        assert len(segments) == 4 and all(seg._refs == 1 for seg in segments)  # held by the manifest only


@pytest.mark.parametrize("bad_call", [
    lambda m: m.put(1, [1, 2, 3]),
    lambda m: m.put(1, [1, 2, 3, float("nan")]),
    lambda m: m.put(1, [1, 2, 3, float("inf")]),
    lambda m: m.put(-1, [1, 2, 3, 4]),
    lambda m: m.put(2**64, [1, 2, 3, 4]),
    lambda m: m.put(1.5, [1, 2, 3, 4]),
    lambda m: m.put("1", [1, 2, 3, 4]),
    lambda m: m.put(True, [1, 2, 3, 4]),
    lambda m: m.put(1, ["a", "b", "c", "d"]),
    lambda m: m.put(1, [1, 2, 3, 4], {"x": object()}),
    lambda m: m.put(1, [1, 2, 3, 4], {1: "non-str key"}),
    lambda m: m.put(1, [1, 2, 3, 4], {"x": float("nan")}),
    lambda m: m.put(1, [1, 2, 3, 4], "not a dict"),
    lambda m: m.put_batch([1, 2], np.zeros((3, 4))),
    lambda m: m.put_batch([1, 2], np.zeros((2, 4)), [{}]),
    lambda m: m.put_batch([1, 2], np.array([[0, 0, 0, 0], [0, 0, 0, np.nan]])),
    lambda m: m.search([1, 2, 3, 4], k=0),
    lambda m: m.search([1, 2, 3], k=1),
    lambda m: m.search([1, 2, 3, 4], k=1, filter={"$bogus": 1}),
    lambda m: m.search([1, 2, 3, 4], k=1, filter="tag == 1"),
    lambda m: m.search([1, 2, 3, 4], k=1, top_blocks=0),
    lambda m: m.delete_where({"a": {"$in": 3}}),
])
def test_bad_input_raises_invalid_argument_and_changes_nothing(docs, bad_call):
    docs.put(1, [1, 0, 0, 0], {"keep": True})
    with pytest.raises(pdb.InvalidArgumentError):
        bad_call(docs)
    assert docs.count() == 1
    assert docs.get(1).metadata == {"keep": True}


def test_oversize_metadata_is_rejected(tmp_path):
    with pdb.open(tmp_path / "db", max_metadata_bytes=100) as db:
        m = db.create_membrane("m", dim=1)
        with pytest.raises(pdb.InvalidArgumentError):
            m.put(1, [1.0], {"text": "x" * 200})
        assert m.count() == 0


def test_membrane_catalog(db):
    db.create_membrane("a", dim=3, metric="l2")
    with pytest.raises(pdb.AlreadyExistsError):
        db.create_membrane("a", dim=3)
    with pytest.raises(pdb.NotFoundError):
        db.membrane("missing")
    assert db.get_or_create_membrane("a", dim=3, metric="l2").dim == 3
    with pytest.raises(pdb.InvalidArgumentError):
        db.get_or_create_membrane("a", dim=4, metric="l2")
    with pytest.raises(pdb.InvalidArgumentError):
        db.create_membrane("b", dim=3, metric="hamming")
    for bad in ["", "..", "a/b", "x\x00y", "n" * 300]:
        with pytest.raises(pdb.InvalidArgumentError):
            db.create_membrane(bad, dim=3)
    assert db.membranes() == ["a"]


def test_drop_membrane_removes_data_durably(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path) as db:
        m = db.create_membrane("gone", dim=2)
        m.put_batch(range(50), np.random.default_rng(0).standard_normal((50, 2)))
        db.freeze()
        m.put(99, [1.0, 2.0])
        db.drop_membrane("gone")
        with pytest.raises(pdb.NotFoundError):
            m.count()
        again = db.create_membrane("gone", dim=2)
        assert again.count() == 0
    with pdb.open(path) as db:
        assert db.membrane("gone").count() == 0
        assert not any(p.suffix in (".seg", ".wsbr") for p in path.rglob("*")
                       if p.name.startswith("0-"))


def test_calls_after_close_raise_closed(tmp_path):
    db = pdb.open(tmp_path / "db")
    m = db.create_membrane("m", dim=2)
    db.close()
    db.close()  # idempotent
    with pytest.raises(pdb.ClosedError):
        m.put(1, [1.0, 2.0])
    with pytest.raises(pdb.ClosedError):
        m.search([1.0, 2.0])
    with pytest.raises(pdb.ClosedError):
        db.membranes()


def test_second_writer_is_refused(tmp_path):
    with pdb.open(tmp_path / "db"):
        with pytest.raises(pdb.LockedError):
            pdb.open(tmp_path / "db")


def test_read_only_sees_a_snapshot_and_refuses_writes(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path) as writer:
        m = writer.create_membrane("m", dim=2)
        m.put(1, [1.0, 0.0])
        with pdb.open(path, read_only=True) as reader:
            assert reader.membrane("m").get(1) is not None
            with pytest.raises(pdb.ReadOnlyError):
                reader.membrane("m").put(2, [0.0, 1.0])
            with pytest.raises(pdb.ReadOnlyError):
                reader.create_membrane("x", dim=1)


def test_reopen_restores_everything(tmp_path):
    path = tmp_path / "db"
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    with pdb.open(path, shards=3, memtable_limit=64) as db:
        m = db.create_membrane("m", dim=8, metric="ip")
        m.put_batch(range(300), vectors, [{"i": i} for i in range(300)])
        m.delete_batch(range(0, 300, 3))
        before = m.search(vectors[5], k=10, exact=True)
    with pdb.open(path, shards=3) as db:
        m = db.membrane("m")
        assert m.count() == 200
        assert m.search(vectors[5], k=10, exact=True) == before
        assert m.get(4).metadata == {"i": 4}
        db.verify()


def test_shard_count_is_fixed_at_creation(tmp_path):
    with pdb.open(tmp_path / "db", shards=2):
        pass
    with pytest.raises(pdb.InvalidArgumentError):
        pdb.open(tmp_path / "db", shards=3)


def test_filtered_search_returns_k_matches_when_k_exist(tmp_path):
    rng = np.random.default_rng(2)
    with pdb.open(tmp_path / "db", shards=2) as db:
        m = db.create_membrane("m", dim=16)
        vectors = rng.standard_normal((2000, 16)).astype(np.float32)
        m.put_batch(range(2000), vectors, [{"tag": f"t{i % 50}"} for i in range(2000)])
        db.freeze()
        for query in vectors[:20]:
            hits = m.search(query, k=10, filter={"tag": "t7"})
            assert len(hits) == 10
            assert all(h.metadata["tag"] == "t7" for h in hits)


def test_async_methods_fan_out_and_agree_with_sync(docs):
    async def scenario():
        await docs.aput(1, [1, 0, 0, 0], {"a": 1})
        await docs.aput_batch([2, 3], np.eye(4)[1:3])
        hits = await docs.asearch([1, 0, 0, 0], k=3)
        assert hits == docs.search([1, 0, 0, 0], k=3)
        assert (await docs.aget(1)).metadata == {"a": 1}
        assert await docs.acount() == 3
        assert await docs.adelete(2) is True
        assert await docs.aexists(2) is False
        many = await asyncio.gather(*(docs.asearch([0, 0, 1, 0], k=1) for _ in range(50)))
        assert all(h[0].id == 3 for h in many)

    asyncio.run(scenario())


def test_threads_writing_and_searching_end_equal_to_oracle(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((8, 500, 6)).astype(np.float32)
    with pdb.open(tmp_path / "db", shards=3, memtable_limit=300) as db:
        m = db.create_membrane("m", dim=6, metric="l2")
        errors = []

        def writer(t: int) -> None:
            try:
                for i in range(0, 500, 25):
                    ids = [t * 1000 + j for j in range(i, i + 25)]
                    m.put_batch(ids, vectors[t, i:i + 25])
                    m.delete(t * 1000 + i)
            except Exception as exc:
                errors.append(exc)

        def searcher() -> None:
            try:
                for _ in range(100):
                    m.search(rng.standard_normal(6), k=5)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        threads += [threading.Thread(target=searcher) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        oracle = Oracle(6, "l2")
        for t in range(8):
            for j in range(500):
                if j % 25:
                    oracle.put(t * 1000 + j, vectors[t, j])
        assert m.count() == len(oracle.rows)
        query = rng.standard_normal(6).astype(np.float32)
        assert_same_ranking(m.search(query, k=20, exact=True), oracle.search(query, 20))


def test_reopen_without_shards_uses_the_count_it_was_created_with(tmp_path):
    with pdb.open(tmp_path / "db", shards=3) as db:
        db.create_membrane("m", dim=1).put_batch(range(30), np.ones((30, 1)))
    with pdb.open(tmp_path / "db") as db:
        assert db.stats()["shards"] == 3
        assert db.membrane("m").count() == 30
    with pdb.open(tmp_path / "new") as db:
        assert db.stats()["shards"] == 4


def test_every_membrane_call_after_close_raises_closed(tmp_path):
    db = pdb.open(tmp_path / "db")
    m = db.create_membrane("m", dim=2)
    db.close()
    calls = [lambda: m.get(1), lambda: m.get_batch([1]), lambda: m.exists(1), lambda: m.count(),
             lambda: m.delete(1), lambda: m.delete_batch([1]), lambda: m.delete_where({"a": 1}),
             lambda: m.clear(),
             lambda: m.search_batch([[1.0, 2.0]]), lambda: list(m.scan()),
             lambda: m.put_batch([1], [[1.0, 2.0]]), lambda: db.freeze(), lambda: db.compact(),
             lambda: db.stats(), lambda: db.verify(), lambda: db.drop_membrane("m"),
             lambda: asyncio.run(m.asearch([1.0, 2.0]))]
    for call in calls:
        with pytest.raises(pdb.ClosedError):
            call()


def test_read_only_open_while_a_writer_freezes_sees_a_consistent_state(tmp_path):
    path = tmp_path / "db"
    rng = np.random.default_rng(4)
    with pdb.open(path, shards=2, memtable_limit=50) as writer:
        m = writer.create_membrane("m", dim=4)
        for start in range(0, 2000, 100):
            m.put_batch(range(start, start + 100), rng.standard_normal((100, 4)))
            with pdb.open(path, read_only=True) as reader:
                seen = reader.membrane("m").count()
            assert seen == start + 100  # every acknowledged write, nothing torn
