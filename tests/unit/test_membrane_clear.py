"""delete_where refuses an empty filter; clear() is how a membrane is emptied on purpose."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import pomaidb_core as pdb


@pytest.fixture
def docs(tmp_path):
    with pdb.open(tmp_path / "db", shards=3) as db:
        m = db.create_membrane("docs", dim=2)
        m.put_batch(range(30), np.ones((30, 2)), [{"i": i} for i in range(30)])
        yield m


@pytest.mark.parametrize("empty", [{}, None])
def test_delete_where_refuses_an_empty_filter_and_deletes_nothing(docs, empty):
    with pytest.raises(pdb.InvalidArgumentError, match=r"clear\(\)"):
        docs.delete_where(empty)
    with pytest.raises(pdb.InvalidArgumentError, match=r"aclear\(\)"):
        asyncio.run(docs.adelete_where(empty))
    assert docs.count() == 30


def test_delete_where_still_deletes_what_matches(docs):
    assert docs.delete_where({"i": {"$lt": 10}}) == 10
    assert asyncio.run(docs.adelete_where({"i": {"$gte": 25}})) == 5
    assert sorted(r.id for r in docs.scan()) == list(range(10, 25))


def test_clear_deletes_every_live_record_and_keeps_the_membrane(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=2) as db:
        m = db.create_membrane("docs", dim=2, metric="ip")
        m.put_batch(range(20), np.ones((20, 2)))
        db.freeze()  # some records in segments, some in the memtable
        m.put_batch(range(15, 40), np.ones((25, 2)))
        m.delete(39)
        assert m.clear() == 39
        assert m.count() == 0
        assert m.clear() == 0
        m.put(100, [1.0, 2.0])
    with pdb.open(path) as db:  # durable, and the membrane keeps its settings
        m = db.membrane("docs")
        assert (m.dim, m.metric, m.count()) == (2, "ip", 1)
        assert [r.id for r in m.scan()] == [100]


def test_aclear_agrees_with_clear(docs):
    assert asyncio.run(docs.aclear()) == 30
    assert docs.count() == 0


def test_clear_is_refused_read_only_and_closed(tmp_path):
    path = tmp_path / "db"
    db = pdb.open(path)
    m = db.create_membrane("docs", dim=1)
    m.put(1, [1.0])
    db.close()
    with pytest.raises(pdb.ClosedError):
        m.clear()
    with pdb.open(path, read_only=True) as reader:
        with pytest.raises(pdb.ReadOnlyError):
            reader.membrane("docs").clear()
        with pytest.raises(pdb.ReadOnlyError):
            asyncio.run(reader.membrane("docs").aclear())
        assert reader.membrane("docs").count() == 1
