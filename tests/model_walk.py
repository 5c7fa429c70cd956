"""The engine's model-based random walk, shared by the in-process and the Ray backend tests.

A random sequence of put / put_batch / delete / delete_batch / delete_where /
get / count / search (exact and WSBR with every block) / freeze / compact /
close+reopen, every answer checked against a dict + numpy brute-force oracle.
"""

from __future__ import annotations

import random

import numpy as np
from oracle import Oracle, assert_same_ranking

DIM = 8
TAGS = ["a", "b", "c"]


def _meta(rng: random.Random) -> dict | None:
    if rng.random() < 0.15:
        return None
    return {"tag": rng.choice(TAGS), "n": rng.randrange(10), "tags": rng.sample(TAGS, 2)}


def _filter(rng: random.Random):
    return rng.choice([
        None,
        {"tag": rng.choice(TAGS)},
        {"n": {"$lt": rng.randrange(10)}},
        {"$or": [{"tag": "a"}, {"n": {"$gte": 7}}]},
        {"tags": {"$contains": rng.choice(TAGS)}},
    ])


def _check_search(m, oracle: Oracle, rng: random.Random, nprng) -> None:
    query = nprng.standard_normal(DIM).astype(np.float32)
    k = rng.choice([1, 3, 10, 50])
    spec = _filter(rng)
    expected = oracle.search(query, k, spec)
    assert_same_ranking(m.search(query, k, spec, exact=True), expected)
    # WSBR with every block selected must equal exact search.
    assert_same_ranking(m.search(query, k, spec, top_blocks=1 << 30), expected)


def _check_state(m, oracle: Oracle, rng: random.Random, key_space: int) -> None:
    assert m.count() == len(oracle.rows)
    for key in rng.sample(range(key_space), 5):
        record = m.get(key)
        if key in oracle.rows:
            vector, metadata = oracle.rows[key]
            assert record is not None and record.id == key
            np.testing.assert_array_equal(record.vector, vector)
            assert record.metadata == metadata
        else:
            assert record is None
        assert m.exists(key) == (key in oracle.rows)


def random_walk(open_db, seed: int, shards: int, metric: str, steps: int = 120,
                reopen=None) -> None:
    """The walk on a database from `open_db(**options)` (tests/ray runs it on the Ray backend).

    `reopen(db, options)` closes the database and opens it again (default: close, open_db).
    """
    rng = random.Random(seed * 1000 + shards)
    nprng = np.random.default_rng(seed)
    key_space = 120
    options = dict(shards=shards, sync=rng.choice(["always", "batch", "never"]),
                   memtable_limit=rng.choice([7, 40, 10_000]), compaction_trigger=3)
    db = open_db(**options)
    m = db.create_membrane("docs", dim=DIM, metric=metric)
    oracle = Oracle(DIM, metric)
    try:
        for _ in range(steps):
            op = rng.random()
            if op < 0.3:
                key = rng.randrange(key_space)
                vector = nprng.standard_normal(DIM).astype(np.float32)
                meta = _meta(rng)
                m.put(key, vector, meta)
                oracle.put(key, vector, meta)
            elif op < 0.45:
                keys = [rng.randrange(key_space) for _ in range(rng.randrange(1, 12))]
                vectors = nprng.standard_normal((len(keys), DIM)).astype(np.float32)
                metas = [_meta(rng) for _ in keys]
                m.put_batch(keys, vectors, metas)
                for key, vector, meta in zip(keys, vectors, metas):
                    oracle.put(key, vector, meta)
            elif op < 0.55:
                key = rng.randrange(key_space)
                assert m.delete(key) == oracle.delete(key)
            elif op < 0.6:
                keys = [rng.randrange(key_space) for _ in range(rng.randrange(1, 8))]
                expected = sum(oracle.delete(key) for key in set(keys))
                assert m.delete_batch(keys) == expected
            elif op < 0.63:
                spec = {"tag": rng.choice(TAGS)}
                assert m.delete_where(spec) == oracle.delete_where(spec)
            elif op < 0.8:
                _check_search(m, oracle, rng, nprng)
            elif op < 0.87:
                _check_state(m, oracle, rng, key_space)
            elif op < 0.91:
                db.freeze()
            elif op < 0.94:
                db.compact()
            else:
                if reopen is None:
                    db.close()
                    db = open_db(**options)
                else:
                    db = reopen(db, options)
                m = db.membrane("docs")
        _check_state(m, oracle, rng, key_space)
        _check_search(m, oracle, rng, nprng)
        scanned = {r.id: r for r in m.scan()}
        assert set(scanned) == set(oracle.rows)
    finally:
        db.close()
