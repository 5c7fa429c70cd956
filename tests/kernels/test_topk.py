"""kernels.topk against a numpy brute-force oracle, on every ISA level.

The comparison (conftest.check_topk) allows a swap only between rows whose true scores tie
within float32 tolerance; everything else (ids, order, padding, tie-break by row) must match.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import random_vectors as _data

from pomaidb_core import kernels

METRICS = ["ip", "cosine", "l2"]



@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 3, 17, 97, 1536])
def test_topk_matches_numpy_on_awkward_dims(isa, metric, dim, reference_scores, check_topk):
    vectors, queries = _data(203, 5, dim, seed=dim)
    got = kernels.topk(vectors, queries, 10, metric)
    check_topk(got, reference_scores(vectors, queries, metric), 10)


@pytest.mark.parametrize("metric", METRICS)
def test_topk_across_blocks_and_query_tiles(isa, metric, reference_scores, check_topk):
    # d=17 puts 1024 rows in a block; 37 queries span three 16-query tiles.
    vectors, queries = _data(5000, 37, 17, seed=11)
    got = kernels.topk(vectors, queries, 25, metric)
    check_topk(got, reference_scores(vectors, queries, metric), 25)


def test_k_larger_than_n_pads_with_minus_inf_and_row_minus_one(isa, reference_scores, check_topk):
    vectors, queries = _data(6, 2, 17, seed=12)
    got = kernels.topk(vectors, queries, 9, "cosine")
    check_topk(got, reference_scores(vectors, queries, "cosine"), 9)
    assert np.all(got[1][:, 6:] == -1)


def test_k_equal_to_n_returns_every_row_sorted(isa, reference_scores, check_topk):
    vectors, queries = _data(40, 3, 97, seed=13)
    got = kernels.topk(vectors, queries, 40, "l2")
    check_topk(got, reference_scores(vectors, queries, "l2"), 40)
    assert np.all(np.sort(got[1], axis=1) == np.arange(40))


def test_k_one_returns_the_single_best_row(isa, reference_scores, check_topk):
    vectors, queries = _data(300, 4, 3, seed=14)
    got = kernels.topk(vectors, queries, 1, "ip")
    check_topk(got, reference_scores(vectors, queries, "ip"), 1)


def test_one_dimensional_query_is_a_batch_of_one(isa, reference_scores, check_topk):
    vectors, queries = _data(100, 1, 17, seed=15)
    got = kernels.topk(vectors, queries[0], 5, "cosine")
    check_topk(got, reference_scores(vectors, queries, "cosine"), 5)


def test_batch_results_equal_single_query_results_exactly(isa):
    vectors, queries = _data(700, 21, 97, seed=16)
    batch_scores, batch_rows = kernels.topk(vectors, queries, 7, "cosine")
    for j in range(21):
        single_scores, single_rows = kernels.topk(vectors, queries[j], 7, "cosine")
        np.testing.assert_array_equal(single_rows[0], batch_rows[j])
        np.testing.assert_array_equal(single_scores[0], batch_scores[j])


def test_mask_all_false_returns_only_padding(isa):
    vectors, queries = _data(50, 2, 17, seed=17)
    scores, rows = kernels.topk(vectors, queries, 4, "ip", mask=np.zeros(50, dtype=bool))
    assert np.all(rows == -1) and np.all(scores == -np.inf)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
def test_sparse_mask_skips_masked_rows(isa, dtype, reference_scores, check_topk):
    vectors, queries = _data(3000, 3, 17, seed=18)
    mask = np.random.default_rng(19).random(3000) < 0.01
    got = kernels.topk(vectors, queries, 10, "l2", mask=mask.astype(dtype))
    check_topk(got, reference_scores(vectors, queries, "l2"), 10, qualifies=mask)


def test_fewer_qualifying_rows_than_k_pad_at_the_end(isa, reference_scores, check_topk):
    vectors, queries = _data(30, 2, 3, seed=20)
    mask = np.zeros(30, dtype=bool)
    mask[[2, 17, 29]] = True
    got = kernels.topk(vectors, queries, 5, "cosine", mask=mask)
    check_topk(got, reference_scores(vectors, queries, "cosine"), 5, qualifies=mask)


def _ranges(*pairs: tuple[int, int]) -> np.ndarray:
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _covered(n: int, ranges: np.ndarray) -> np.ndarray:
    covered = np.zeros(n, dtype=bool)
    for start, end in ranges:
        covered[start:end] = True
    return covered


@pytest.mark.parametrize(
    "ranges",
    [
        _ranges(),
        _ranges((5, 5)),
        _ranges((7, 8)),
        _ranges((0, 10), (10, 20)),
        _ranges((30, 60), (0, 10), (50, 80), (9, 31)),
        _ranges((99, 100), (0, 1), (40, 40)),
        _ranges((0, 100)),
    ],
    ids=["no-ranges", "empty", "single-row", "touching", "overlapping", "edges", "everything"],
)
def test_row_ranges_limit_the_scan(isa, ranges, reference_scores, check_topk):
    vectors, queries = _data(100, 3, 17, seed=21)
    got = kernels.topk(vectors, queries, 8, "ip", row_ranges=ranges)
    check_topk(got, reference_scores(vectors, queries, "ip"), 8, qualifies=_covered(100, ranges))


def test_row_ranges_and_mask_combine(isa, reference_scores, check_topk):
    vectors, queries = _data(2500, 2, 97, seed=22)
    ranges = _ranges((100, 900), (2000, 2400), (850, 1000))
    mask = np.random.default_rng(23).random(2500) < 0.3
    got = kernels.topk(vectors, queries, 20, "cosine", mask=mask, row_ranges=ranges)
    qualifies = mask & _covered(2500, ranges)
    check_topk(got, reference_scores(vectors, queries, "cosine"), 20, qualifies=qualifies)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_vectors_tie_in_row_order(isa, metric):
    # 3000 copies of one vector span several blocks; given in reverse, ranges still yield
    # rows in ascending order.
    row = np.random.default_rng(24).standard_normal(17, dtype=np.float32)
    vectors = np.tile(row, (3000, 1))
    query = np.random.default_rng(25).standard_normal(17, dtype=np.float32)
    ranges = _ranges((2000, 3000), (1500, 1600), (0, 10))
    scores, rows = kernels.topk(vectors, query, 15, metric, row_ranges=ranges)
    np.testing.assert_array_equal(rows[0], [*range(10), *range(1500, 1505)])
    assert np.all(scores[0] == scores[0, 0])


def test_ties_among_distinct_scores_keep_row_order(isa):
    vectors = np.array([[1.0], [2.0], [2.0], [0.5], [2.0], [1.0]], dtype=np.float32)
    scores, rows = kernels.topk(vectors, np.array([1.0], dtype=np.float32), 6, "ip")
    np.testing.assert_array_equal(rows[0], [1, 2, 4, 0, 5, 3])
    np.testing.assert_array_equal(scores[0], [2.0, 2.0, 2.0, 1.0, 1.0, 0.5])


def test_zero_vectors_score_zero_under_cosine(isa):
    vectors = np.zeros((5, 3), dtype=np.float32)
    vectors[3] = [1.0, 0.0, 0.0]
    scores, rows = kernels.topk(vectors, np.array([1.0, 0.0, 0.0], dtype=np.float32), 3, "cosine")
    np.testing.assert_array_equal(rows[0], [3, 0, 1])
    np.testing.assert_array_equal(scores[0], [1.0, 0.0, 0.0])


def test_rows_with_nan_never_qualify(isa):
    vectors = np.ones((6, 3), dtype=np.float32)
    vectors[[0, 4]] = np.nan
    scores, rows = kernels.topk(vectors, np.ones(3, dtype=np.float32), 6, "ip")
    np.testing.assert_array_equal(rows[0], [1, 2, 3, 5, -1, -1])
    np.testing.assert_array_equal(scores[0], [3.0, 3.0, 3.0, 3.0, -np.inf, -np.inf])


def test_no_vectors_returns_only_padding(isa):
    vectors, queries = _data(0, 2, 17, seed=26)
    scores, rows = kernels.topk(vectors, queries, 3, "l2")
    assert rows.shape == (2, 3) and np.all(rows == -1) and np.all(scores == -np.inf)
