"""kernels.bm25_top_rows (MaxScore) against a dense numpy oracle that scores every row."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError

K1, B = 1.2, 0.75


def _postings(rng: np.random.Generator, n: int, m: int, max_tf: int):
    """m random terms over n rows, from very rare to very common, and every row's length."""
    tf = np.zeros((m, n), dtype=np.uint32)
    for t in range(m):
        share = rng.choice([0.001, 0.02, 0.2, 0.9])
        held = rng.random(n) < share
        tf[t, held] = rng.integers(1, max_tf + 1, size=int(held.sum()))
    lengths = tf.sum(axis=0).astype(np.float64) + rng.integers(0, 5, size=n)
    rows = [np.flatnonzero(tf[t]).astype(np.uint32) for t in range(m)]
    return rows, [tf[t, r] for t, r in enumerate(rows)], lengths


def _contribution(idf, tf, lengths, avg):
    """bm25.py's expression, operation for operation."""
    return idf * (tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * lengths / avg)))


def _bounds(rows, tfs, idf, lengths, avg):
    return np.array([_contribution(i, float(t.max()), float(lengths[r].min()), avg) if len(r)
                     else 0.0 for r, t, i in zip(rows, tfs, idf)], dtype=np.float64)


def _oracle(rows, tfs, idf, lengths, allowed, avg, k):
    """Every row's score in term order; the k best and all rows tied with the k-th, by row."""
    n = len(lengths)
    total = np.zeros(n)
    matched = np.zeros(n, dtype=bool)
    for r, t, i in zip(rows, tfs, idf):
        total[r] += _contribution(i, t, lengths[r], avg)
        matched[r] = True
    if allowed is not None:
        matched &= allowed.astype(bool)
    candidates = np.flatnonzero(matched)
    if k == 0:
        return candidates[:0], total[:0]
    if len(candidates) > k:
        kth = np.sort(total[candidates])[::-1][k - 1]
        candidates = candidates[total[candidates] >= kth]
    return candidates, total[candidates]


def _check(rows, tfs, lengths, allowed, k, slack=1.0):
    idf = np.linspace(0.5, 9.0, len(rows))[::-1].copy()
    avg = float(lengths.mean()) or 1.0
    bounds = _bounds(rows, tfs, idf, lengths, avg) * slack
    got_rows, got_scores = kernels.bm25_top_rows(rows, tfs, idf, bounds, lengths, allowed,
                                                 k1=K1, b=B, avg_length=avg, k=k)
    want_rows, want_scores = _oracle(rows, tfs, idf, lengths, allowed, avg, k)
    assert got_rows.dtype == np.int64 and got_scores.dtype == np.float64
    np.testing.assert_array_equal(got_rows, want_rows)
    np.testing.assert_array_equal(got_scores, want_scores)  # bit for bit, not approximately


@pytest.mark.parametrize("n", [1, 3, 17, 97, 1536, 20000])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_top_rows_and_scores_equal_the_dense_oracle(isa, n, k):
    rng = np.random.default_rng(n * 1000 + k)
    for m in (1, 2, 5, 9):
        rows, tfs, lengths = _postings(rng, n, m, max_tf=4)
        _check(rows, tfs, lengths, None, k)


def test_every_row_tied_with_the_kth_is_returned():
    # 500 identical documents: all tie, so all come back whatever k is.
    n = 500
    rows = [np.arange(n, dtype=np.uint32), np.arange(0, n, 2, dtype=np.uint32)]
    tfs = [np.ones(n, dtype=np.uint32), np.ones(n // 2, dtype=np.uint32)]
    lengths = np.full(n, 4.0)
    _check(rows, tfs, lengths, None, 3)
    got, _ = kernels.bm25_top_rows(rows, tfs, np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                                   lengths, None, k1=K1, b=B, avg_length=4.0, k=3)
    np.testing.assert_array_equal(got, np.arange(0, n, 2))


@pytest.mark.parametrize("kind", [np.bool_, np.uint8])
@pytest.mark.parametrize("n", [3000, 40000])  # 40000: several windows of rows
def test_rows_not_allowed_never_qualify(kind, n):
    rng = np.random.default_rng(7)
    rows, tfs, lengths = _postings(rng, n, 6, max_tf=3)
    allowed = (rng.random(n) < 0.3).astype(kind)
    for k in (1, 10, 5000):
        _check(rows, tfs, lengths, allowed, k)


def test_loose_bounds_change_the_speed_not_the_answer():
    rng = np.random.default_rng(11)
    rows, tfs, lengths = _postings(rng, 5000, 7, max_tf=6)
    _check(rows, tfs, lengths, None, 10, slack=3.0)


def test_fewer_matches_than_k_and_empty_queries():
    rows = [np.array([2, 5], dtype=np.uint32)]
    tfs = [np.array([1, 3], dtype=np.uint32)]
    lengths = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 4.0])
    _check(rows, tfs, lengths, None, 10)
    _check(rows, tfs, lengths, None, 0)
    none = kernels.bm25_top_rows([], [], np.zeros(0), np.zeros(0), lengths, None,
                                 k1=K1, b=B, avg_length=2.0, k=10)
    assert len(none[0]) == 0 and len(none[1]) == 0


def test_bad_inputs_are_rejected():
    lengths = np.ones(4)
    one = np.ones(1)
    ok = ([np.array([1], dtype=np.uint32)], [np.array([1], dtype=np.uint32)])
    with pytest.raises(InvalidArgumentError, match="names a row"):
        kernels.bm25_top_rows([np.array([4], dtype=np.uint32)], ok[1], one, one, lengths, None,
                              k1=K1, b=B, avg_length=1.0, k=1)
    with pytest.raises(InvalidArgumentError, match="dtype uint32"):
        kernels.bm25_top_rows([np.array([1], dtype=np.int64)], ok[1], one, one, lengths, None,
                              k1=K1, b=B, avg_length=1.0, k=1)
    with pytest.raises(InvalidArgumentError, match="equal lengths"):
        kernels.bm25_top_rows(ok[0], [np.ones(2, dtype=np.uint32)], one, one, lengths, None,
                              k1=K1, b=B, avg_length=1.0, k=1)
    with pytest.raises(InvalidArgumentError, match="one entry per query term"):
        kernels.bm25_top_rows(ok[0], ok[1], np.ones(2), one, lengths, None,
                              k1=K1, b=B, avg_length=1.0, k=1)
    with pytest.raises(InvalidArgumentError, match="mask has 3 entries"):
        kernels.bm25_top_rows(*ok, one, one, lengths, np.ones(3, dtype=bool),
                              k1=K1, b=B, avg_length=1.0, k=1)
    with pytest.raises(InvalidArgumentError, match="avg_length"):
        kernels.bm25_top_rows(*ok, one, one, lengths, None, k1=K1, b=B, avg_length=0.0, k=1)
