"""kernels.topk_blocks_int8 (int8 prefilter, exact float re-score) against kernels.topk_blocks
bit for bit and against the numpy oracle, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from block_cases import block_csr, int8_row_copy, qualifying_rows, random_data, random_groups, random_partition

from pomaidb_core import kernels, wsbr_build
from pomaidb_core.errors import InvalidArgumentError

METRICS = ["ip", "cosine", "l2"]


def _row_codes(vectors: np.ndarray, metric: str):
    rows = int8_row_copy(vectors, metric)
    del rows["signs"]
    return rows


def _both(vectors, queries, k, metric, ranges, groups, mask=None, rows=None):
    ptr, blocks = block_csr(groups)
    args = dict(block_ranges=ranges, ptr=ptr, blocks=blocks)
    floats = kernels.topk_blocks(vectors, queries, k, metric, mask, **args)
    rows = rows or _row_codes(vectors, metric)
    int8 = kernels.topk_blocks_int8(vectors, queries, k, metric, mask, **args, **rows)
    # the same ranges checked once (what a segment search passes) give the same answers
    args["block_ranges"] = kernels.BlockRanges(ranges, len(vectors))
    _assert_same(kernels.topk_blocks(vectors, queries, k, metric, mask, **args), floats)
    _assert_same(kernels.topk_blocks_int8(vectors, queries, k, metric, mask, **args, **rows), int8)
    return floats, int8


def _assert_same(a, b):
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("n", "dim"), [(300, 1), (300, 3), (600, 17), (2000, 97), (200, 1536)])
@pytest.mark.parametrize("k", [1, 10, 64])
def test_answer_is_topk_blocks_bit_for_bit(isa, metric, n, dim, k, reference_scores, check_topk):
    rng = np.random.default_rng(dim + k)
    vectors, queries = random_data(n, 9, dim, seed=dim)
    ranges = random_partition(n, 17, rng)
    groups = random_groups(9, 17, rng)
    mask = rng.random(n) < 0.5
    for m in (None, mask):
        floats, int8 = _both(vectors, queries, k, metric, ranges, groups, m)
        _assert_same(floats, int8)
    check_topk(int8, reference_scores(vectors, queries, metric), k,
               qualifies=qualifying_rows(n, ranges, groups, mask))


@pytest.mark.parametrize("metric", METRICS)
def test_clustered_rows_with_close_scores_stay_exact(isa, metric):
    # Near-duplicate rows: many int8 intervals overlap the k-th best, the hard case.
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(97, dtype=np.float32)
    vectors = centre + 0.01 * rng.standard_normal((3000, 97), dtype=np.float32)
    queries = centre + 0.01 * rng.standard_normal((5, 97), dtype=np.float32)
    ranges = random_partition(3000, 40, rng)
    groups = [rng.choice(40, size=20, replace=False).tolist() for _ in range(5)]
    _assert_same(*_both(vectors, queries, 10, metric, ranges, groups))


@pytest.mark.parametrize("metric", METRICS)
def test_any_codes_give_the_exact_answer_when_residuals_are_true(isa, metric):
    # Random codes are a terrible approximation; with honest residuals nothing may be lost.
    rng = np.random.default_rng(4)
    vectors, queries = random_data(500, 4, 17, seed=5)
    routing = wsbr_build.unit_rows(vectors) if metric == "cosine" else vectors
    codes = rng.integers(-127, 128, size=(500, 17)).astype(np.int8)
    scale = np.full(500, 0.01, dtype=np.float32)
    residual = np.linalg.norm(routing.astype(np.float64) - codes * 0.01, axis=1) * (1 + 1e-6)
    norm = np.linalg.norm(routing.astype(np.float64), axis=1) * (1 + 1e-6)
    rows = {"codes": codes, "scale": scale, "residual": residual.astype(np.float32),
            "norm": norm.astype(np.float32)}
    ranges = random_partition(500, 10, rng)
    groups = [list(range(10))] * 4
    _assert_same(*_both(vectors, queries, 7, metric, ranges, groups, rows=rows))


@pytest.mark.parametrize("metric", METRICS)
def test_zero_rows_and_zero_queries(isa, metric):
    vectors, queries = random_data(200, 3, 17, seed=6)
    vectors[::7] = 0
    queries[1] = 0
    ranges = random_partition(200, 8, np.random.default_rng(7))
    _assert_same(*_both(vectors, queries, 12, metric, ranges, [list(range(8))] * 3))


def test_rows_with_nan_never_qualify(isa):
    vectors = np.ones((6, 3), dtype=np.float32)
    vectors[[0, 4]] = np.nan
    ranges = np.array([[0, 3], [3, 6]], dtype=np.int64)
    rows = {"codes": np.ones((6, 3), np.int8), "scale": np.ones(6, np.float32),
            "residual": np.full(6, np.nan, np.float32), "norm": np.ones(6, np.float32)}
    floats, int8 = _both(vectors, np.ones((1, 3), np.float32), 6, "ip", ranges, [[1, 0]],
                         rows=rows)
    _assert_same(floats, int8)
    np.testing.assert_array_equal(int8[1][0], [1, 2, 3, 5, -1, -1])


def test_empty_blocks_all_false_mask_and_k_beyond_the_rows(isa):
    vectors, queries = random_data(80, 3, 17, seed=8)
    ranges = random_partition(80, 8, np.random.default_rng(9))
    groups = [[], [0, 1, 2], list(range(8))]
    _assert_same(*_both(vectors, queries, 100, "cosine", ranges, groups))
    _assert_same(*_both(vectors, queries, 5, "ip", ranges, groups, np.zeros(80, bool)))


def test_row_copy_of_another_shape_is_refused():
    vectors, queries = random_data(10, 1, 4, seed=10)
    rows = _row_codes(vectors, "ip")
    ptr, blocks = block_csr([[0]])
    ranges = np.array([[0, 10]], dtype=np.int64)
    for name, bad in (("codes", rows["codes"][:5]), ("scale", rows["scale"][:5]),
                      ("codes", rows["codes"].astype(np.int16)),
                      ("norm", rows["norm"].astype(np.float64))):
        with pytest.raises(InvalidArgumentError, match=name):
            kernels.topk_blocks_int8(vectors, queries, 3, "ip", block_ranges=ranges, ptr=ptr,
                                     blocks=blocks, **{**rows, name: bad})


def test_block_ranges_are_checked_once_and_only_serve_vectors_of_their_rows():
    vectors, queries = random_data(40, 2, 8, seed=1)
    ptr, blocks = block_csr([[0, 1], [1]])
    with pytest.raises(InvalidArgumentError, match="overlap"):
        kernels.BlockRanges(np.array([[0, 20], [10, 40]], np.int64), 40)
    with pytest.raises(InvalidArgumentError, match="0 <= start <= end <= 40"):
        kernels.BlockRanges(np.array([[0, 20], [20, 41]], np.int64), 40)
    table = kernels.BlockRanges(np.array([[0, 20], [20, 40]], np.int64), 40)
    assert (table.n_blocks, table.n_rows) == (2, 40)
    with pytest.raises(InvalidArgumentError, match="made for 40 rows but vectors have 39"):
        kernels.topk_blocks(vectors[:39], queries, 3, "ip", None, block_ranges=table, ptr=ptr,
                            blocks=blocks)
    with pytest.raises(InvalidArgumentError, match="not a block id"):
        kernels.topk_blocks(vectors, queries, 3, "ip", None, block_ranges=table, ptr=ptr,
                            blocks=blocks + 1)
