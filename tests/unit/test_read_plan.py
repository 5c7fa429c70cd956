"""Read plans (read_plan.py): searches of a membrane whose shards hold only segments give
the shards' own answer, see every acknowledged write, and never keep a retired segment."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import fanout, kernels, read_plan
from tests.oracle import Oracle


def _hits(m, queries, **kwargs):
    return [[(h.id, h.score, h.metadata, h.text) for h in hits]
            for hits in m.search_batch(queries, **kwargs)]


def _through_shards(db, monkeypatch):
    monkeypatch.setattr(db, "_search_by_plan", lambda *args: None)


def _layered(db, rng, n: int = 3_000, dim: int = 24):
    """A membrane of three generations of segments: later ones override and delete rows of
    earlier ones, so the plan's segments carry stack masks."""
    m = db.create_membrane("m", dim=dim, metric="cosine")
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    m.put_batch(range(n), vectors, [{"g": 0, "i": i} for i in range(n)],
                texts=[f"row {i}" for i in range(n)])
    db.freeze()
    again = rng.choice(n, n // 4, replace=False)
    m.put_batch(again, rng.standard_normal((len(again), dim)).astype(np.float32),
                [{"g": 1, "i": int(i)} for i in again])
    m.delete_batch(rng.choice(n, 50, replace=False).tolist())
    db.freeze()
    m.put_batch(range(n, n + 500), rng.standard_normal((500, dim)).astype(np.float32))
    db.freeze()
    return m


def _pool_helpers_seen(monkeypatch, spread: bool) -> list[int]:
    """The helpers each plan search is given, recorded; with `spread` a plan of any size
    hands its segments to the kernels' pool (four cores, as the fan-out sees them), else
    none does."""
    if spread:
        monkeypatch.setattr(fanout.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(read_plan, "POOL_MIN_ROWS", 0 if spread else 10**12)
    helpers: list[int] = []
    real = read_plan.ReadPlan.search
    monkeypatch.setattr(read_plan.ReadPlan, "search",
                        lambda plan, *args: helpers.append(args[-1]) or real(plan, *args))
    return helpers


@pytest.mark.parametrize("spread", [False, True])
def test_a_plan_answers_as_the_shards(tmp_path, monkeypatch, spread):
    helpers = _pool_helpers_seen(monkeypatch, spread)
    rng = np.random.default_rng(11)
    with pdb.open(tmp_path / "db", shards=3, auto_compact=False) as db:
        m = _layered(db, rng)
        queries = rng.standard_normal((12, 24)).astype(np.float32)
        asks = [dict(k=1), dict(k=10), dict(k=37), dict(k=10, top_blocks=3),
                dict(k=5, top_blocks=2, widen_blocks=0)]
        planned = [_hits(m, queries, **ask) for ask in asks]
        single = [[(h.id, h.score, h.metadata, h.text) for h in m.search(q, k=10)]
                  for q in queries]
        plan = db._plans[m.meta.membrane_id]
        assert plan.parts is not None and len(plan.parts) == 9  # three segments a shard
        assert any(part.mask is not None for part in plan.parts)
        assert set(helpers) == ({min(2, kernels.pool_helpers())} if spread else {0})
        _through_shards(db, monkeypatch)
        assert planned == [_hits(m, queries, **ask) for ask in asks]
        assert single == planned[1]


def test_a_plan_finds_the_oracles_answer(tmp_path):
    """Exact (every block scored) against a dict of the records: overrides and deletes hold."""
    rng = np.random.default_rng(12)
    oracle = Oracle(8, "l2")
    with pdb.open(tmp_path / "db", shards=2) as db:
        m = db.create_membrane("m", dim=8, metric="l2")
        for _ in range(3):
            ids = rng.choice(400, 150, replace=False).tolist()
            vectors = rng.standard_normal((150, 8)).astype(np.float32)
            m.put_batch(ids, vectors)
            for key, vector in zip(ids, vectors):
                oracle.put(key, vector)
            for key in rng.choice(400, 20, replace=False).tolist():
                assert m.delete(key) == oracle.delete(key)
            db.freeze()
        query = rng.standard_normal(8).astype(np.float32)
        hits = m.search(query, k=20, top_blocks=10**6)
        assert db._plans[m.meta.membrane_id].parts is not None
        assert [h.id for h in hits] == [key for key, _ in oracle.search(query, 20)]


def test_a_write_after_a_plan_is_seen_by_the_next_search(tmp_path):
    rng = np.random.default_rng(13)
    with pdb.open(tmp_path / "db", shards=4) as db:
        m = _layered(db, rng)
        query = rng.standard_normal(24).astype(np.float32)
        before = m.search(query, k=3)
        assert db._plans[m.meta.membrane_id].parts is not None
        m.put(10**6, query * 2, {"new": True})  # the query's own direction: the best hit
        assert m.search(query, k=3)[0].id == 10**6
        assert db._plans[m.meta.membrane_id].parts is None  # a memtable holds rows now
        m.delete(10**6)
        assert [h.id for h in m.search(query, k=3)] == [h.id for h in before]
        db.freeze()
        assert [h.id for h in m.search(query, k=3)] == [h.id for h in before]
        assert db._plans[m.meta.membrane_id].parts is not None


def test_a_plan_holds_no_segment_that_compaction_retires(tmp_path):
    """Compaction deletes its inputs' files at once: a plan built before it keeps none."""
    rng = np.random.default_rng(14)
    with pdb.open(tmp_path / "db", shards=1, auto_compact=False) as db:
        m = _layered(db, rng)
        query = rng.standard_normal(24).astype(np.float32)
        expected = [h.id for h in m.search(query, k=10, exact=True)]
        m.search(query, k=10)
        stale = db._plans[m.meta.membrane_id]
        old = [part.segment().paths for part in stale.parts]
        db.compact()
        deadline = time.monotonic() + 30  # the compaction job lets go of its inputs after it
        while any(os.path.exists(path) for paths in old for path in paths):
            assert time.monotonic() < deadline, "a retired segment's files were kept"
            time.sleep(0.01)
        # nor their objects, whose maps hold the unlinked files' space (the plan refers to
        # them weakly; another thread may still hold one for a moment)
        assert stale.stale()
        for part in stale.parts:
            segment = part.segment()
            holders = gc.get_referrers(segment) if segment is not None else []
            assert not any(isinstance(h, read_plan.PlanPart) or h is stale.parts for h in holders)
            del segment, holders
        assert [h.id for h in m.search(query, k=10, top_blocks=10**6)] == expected
        assert len(db._plans[m.meta.membrane_id].parts) == 1


def test_a_failing_segment_search_raises_and_lets_everything_go(tmp_path, monkeypatch):
    monkeypatch.setattr(fanout.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(read_plan, "POOL_MIN_ROWS", 0)
    rng = np.random.default_rng(15)
    with pdb.open(tmp_path / "db", shards=4, auto_compact=False) as db:
        m = _layered(db, rng)
        real = read_plan.search_segments
        m.search(np.ones(24, np.float32), k=1)
        failing = db._plans[m.meta.membrane_id].parts[5].segment()
        searched = []

        def search(parts, *args):
            searched.append(len(parts))
            if any(seg is failing for seg, _, _ in parts):
                raise pdb.StorageError("this segment could not be read")
            return real(parts, *args)

        monkeypatch.setattr(read_plan, "search_segments", search)
        with pytest.raises(pdb.StorageError, match="could not be read"):
            m.search(np.ones(24, np.float32), k=5)
        assert searched == [12]  # every part in one call
        m.put(1, np.ones(24, np.float32))  # the shards' locks were let go
        assert m.search(np.ones(24, np.float32), k=1)[0].id == 1
        assert db._fanout._searches == 0 and db._fanout._idle == db._fanout.helpers


def test_closed_and_dropped_membranes_are_not_searched_by_plan(tmp_path):
    rng = np.random.default_rng(16)
    db = pdb.open(tmp_path / "db", shards=2)
    m = _layered(db, rng)
    query = rng.standard_normal(24).astype(np.float32)
    m.search(query, k=3)
    db.drop_membrane("m")
    with pytest.raises(pdb.NotFoundError):
        m.search(query, k=3)
    fresh = db.create_membrane("m", dim=24)
    fresh.put(7, query)
    db.freeze()
    assert [h.id for h in fresh.search(query, k=3)] == [7]
    db.close()
    with pytest.raises(pdb.ClosedError):
        fresh.search(query, k=3)
    db.open()
    assert [h.id for h in db.membrane("m").search(query, k=3)] == [7]
    db.close()


def test_searches_by_plan_beside_writes_freezes_and_compactions(tmp_path):
    """Records never written again stay found, and every write a search follows is seen,
    while another thread writes, freezes and compacts (plans go stale all the time)."""
    rng = np.random.default_rng(17)
    dim, stable = 16, 200
    with pdb.open(tmp_path / "db", shards=3) as db:
        m = db.create_membrane("m", dim=dim)
        vectors = rng.standard_normal((stable, dim)).astype(np.float32)
        m.put_batch(range(stable), vectors)
        db.freeze()
        stop, errors = threading.Event(), []

        def write() -> None:
            step = 0
            try:
                while not stop.is_set():
                    keys = list(range(stable + step * 50, stable + step * 50 + 50))
                    m.put_batch(keys, rng.standard_normal((50, dim)).astype(np.float32))
                    m.delete_batch(keys[:10])
                    if step % 3 == 0:
                        db.freeze()
                    if step % 7 == 6:
                        db.compact()
                    step += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            for round_ in range(150):
                key = int(rng.integers(stable))
                assert m.search(vectors[key], k=1, top_blocks=10**6)[0].id == key
                mine = 10**7 + round_
                m.put(mine, vectors[key] * 3)  # the same direction: both score 1
                found = m.search(vectors[key], k=2, top_blocks=10**6)
                assert {h.id for h in found} == {key, mine}
                m.delete(mine)
        finally:
            stop.set()
            writer.join(60)
        assert not errors and not writer.is_alive()


def test_search_helpers_can_be_limited_and_turned_off(tmp_path, monkeypatch):
    # POMAIDB_SEARCH_HELPERS: a plan search then uses at most that many pool threads (0: none).
    assert kernels.helpers_limit("") is None and kernels.helpers_limit(" 0 ") == 0
    assert kernels.helpers_limit("3") == 3
    with pytest.warns(RuntimeWarning, match="POMAIDB_SEARCH_HELPERS='-1' is not an int"):
        assert kernels.helpers_limit("-1") is None
    helpers = _pool_helpers_seen(monkeypatch, True)
    rng = np.random.default_rng(17)
    with pdb.open(tmp_path / "db", shards=3, auto_compact=False) as db:
        m = _layered(db, rng)
        query = rng.standard_normal(24).astype(np.float32)
        expected = [h.id for h in m.search(query, k=10)]
        monkeypatch.setattr(kernels, "_HELPERS_LIMIT", 0)
        assert [h.id for h in m.search(query, k=10)] == expected
    assert helpers == [min(2, kernels._kernels.pool_helpers()), 0]
