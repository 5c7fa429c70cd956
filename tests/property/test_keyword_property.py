"""Keyword search under random puts, deletes, freezes and compactions agrees with a brute-force
BM25 over the live texts (tests/bm25_reference.py), for 1 and 3 shards."""

from __future__ import annotations

import tempfile

import numpy as np
from bm25_reference import bm25_scores, top
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pomaidb_core as pdb
from pomaidb_core import analyzer

WORDS = ["alpha", "beta", "gamma", "delta", "Alpha", "東", "京", "e1234", "the"]
texts = st.one_of(st.none(), st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join))
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 15), texts),
    st.tuples(st.just("delete"), st.integers(0, 15), st.none()),
    st.tuples(st.just("freeze"), st.none(), st.none()),
    st.tuples(st.just("compact"), st.none(), st.none())), max_size=30)
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, query=queries, shards=st.sampled_from([1, 3]), k=st.integers(1, 8))
def test_keyword_search_agrees_with_brute_force(ops, query, shards, k):
    analyze = analyzer.analyzer()
    model: dict[int, str | None] = {}
    with tempfile.TemporaryDirectory() as path, pdb.open(
            path, shards=shards, auto_freeze=False, auto_compact=False) as db:
        m = db.create_membrane("m", dim=2)
        for op, key, text in ops:
            if op == "put":
                m.put(key, np.ones(2), text=text)
                model[key] = text
            elif op == "delete":
                m.delete(key)
                model.pop(key, None)
            elif op == "freeze":
                db.freeze()
            else:
                db.compact()
        docs = {i: analyze(t) for i, t in model.items() if t is not None}
        expected = top(bm25_scores(docs, analyze(query)), k)
        got = [(h.id, h.score) for h in m.search(None, k=k, text=query)]
        assert [i for i, _ in got] == [i for i, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-12)
