"""Reads over a membrane's layers: the per-segment filter-mask cache never serves another filter's rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pomaidb_core as pdb

# Pairs of filters that select different rows but once shared a cache key: the old key was
# json.dumps(filter, default=repr), and the repr of a numpy scalar is the text of a str operand
# ("2024" under numpy 1.x, "np.int64(2024)" under numpy 2).
COLLIDING = [
    ({"year": np.int64(2024)}, {"year": repr(np.int64(2024))}),
    ({"year": {"$gte": np.int64(2024)}}, {"year": {"$gte": repr(np.int64(2024))}}),
    ({"score": np.float32(0.5)}, {"score": repr(np.float32(0.5))}),
    ({"flag": np.bool_(True)}, {"flag": repr(np.bool_(True))}),
    ({"tags": {"$in": [np.int64(7)]}}, {"tags": {"$in": [repr(np.int64(7))]}}),
]
VALUES = {
    "year": [2024, 2025, repr(np.int64(2024)), "2024", "2025"],
    "score": [0.5, 0.25, repr(np.float32(0.5)), "0.5"],
    "flag": [True, False, repr(np.bool_(True)), "True", 1],
    "tags": [7, 8, repr(np.int64(7)), "7"],
}


def old_cache_key(spec):
    """The key the segment mask cache used before it keyed on the compiled filter."""
    return json.dumps(spec, sort_keys=True, default=repr)


def same_value(stored, operand):
    """Brute-force equality of the filter language: same JSON type and equal (bool is not a number)."""
    operand = operand.item() if isinstance(operand, np.generic) else operand
    number = (int, float)
    if isinstance(stored, bool) or isinstance(operand, bool):
        return type(stored) is type(operand) and stored == operand
    if isinstance(stored, number) and isinstance(operand, number):
        return stored == operand
    return type(stored) is type(operand) and stored == operand


def brute_force(spec, metadatas):
    """Ids whose metadata matches a one-field spec of $eq, $gte or $in, evaluated record by record."""
    ((field, condition),) = spec.items()
    op, operand = next(iter(condition.items())) if isinstance(condition, dict) else ("$eq", condition)
    matching = set()
    for key, metadata in metadatas.items():
        if field not in metadata:
            continue
        stored = metadata[field]
        if op == "$eq":
            hit = same_value(stored, operand)
        elif op == "$in":
            hit = any(same_value(stored, x) for x in operand)
        else:
            assert op == "$gte"
            value = operand.item() if isinstance(operand, np.generic) else operand
            family = str if isinstance(value, str) else (int, float)
            hit = isinstance(stored, family) and not isinstance(stored, bool) and stored >= value
        if hit:
            matching.add(key)
    return matching


@pytest.fixture
def frozen_docs(tmp_path):
    """Every value of VALUES on its own record, all in one segment (where masks are cached)."""
    with pdb.open(tmp_path / "db", shards=1) as db:
        docs = db.create_membrane("docs", dim=2, metric="l2")
        metadatas = {}
        for field, values in VALUES.items():
            for value in values:
                metadatas[len(metadatas)] = {field: value}
        ids = list(metadatas)
        docs.put_batch(ids, np.ones((len(ids), 2), dtype=np.float32), [metadatas[i] for i in ids])
        db.freeze()
        assert db.stats()["membranes"]["docs"]["segments"] == 1
        yield docs, metadatas


def searched_ids(docs, spec, count):
    return {hit.id for hit in docs.search([1, 1], k=count, filter=spec, exact=True)}


@pytest.mark.parametrize(("first", "second"), COLLIDING)
def test_filters_that_once_shared_a_cache_key_each_get_their_own_rows(frozen_docs, first, second):
    docs, metadatas = frozen_docs
    assert old_cache_key(first) == old_cache_key(second)
    expected_first, expected_second = brute_force(first, metadatas), brute_force(second, metadatas)
    assert expected_first and expected_second and expected_first != expected_second
    for _ in range(2):  # the second round is answered from the cache
        assert searched_ids(docs, first, len(metadatas)) == expected_first
        assert searched_ids(docs, second, len(metadatas)) == expected_second
