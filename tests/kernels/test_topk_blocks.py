"""kernels.topk_blocks (per-query blocks of rows) against a numpy brute-force oracle and against
kernels.topk over the same rows, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from block_cases import block_csr, qualifying_rows, random_data, random_groups, random_partition

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError

METRICS = ["ip", "cosine", "l2"]


def _search(vectors, queries, k, metric, ranges, groups, mask=None):
    ptr, blocks = block_csr(groups)
    return kernels.topk_blocks(
        vectors, queries, k, metric, mask, block_ranges=ranges, ptr=ptr, blocks=blocks
    )


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 3, 17, 97])
def test_each_query_gets_the_best_rows_of_its_own_blocks(
    isa, metric, dim, reference_scores, check_topk
):
    rng = np.random.default_rng(dim)
    vectors, queries = random_data(300, 23, dim, seed=dim)
    ranges = random_partition(300, 17, rng)
    groups = random_groups(23, 17, rng)
    got = _search(vectors, queries, 10, metric, ranges, groups)
    want = reference_scores(vectors, queries, metric)
    check_topk(got, want, 10, qualifies=qualifying_rows(300, ranges, groups))


@pytest.mark.parametrize("metric", METRICS)
def test_scores_equal_topk_over_the_same_rows_bit_for_bit(isa, metric):
    # 41 queries choosing overlapping block sets: a block is scored in query tiles that mix
    # queries differently from topk's, yet every score must be the same float.
    rng = np.random.default_rng(2)
    vectors, queries = random_data(3000, 41, 97, seed=3)
    ranges = random_partition(3000, 90, rng)
    groups = [
        rng.choice(90, size=int(rng.integers(1, 30)), replace=False).tolist() for _ in range(41)
    ]
    mask = rng.random(3000) < 0.8
    scores, rows = _search(vectors, queries, 15, metric, ranges, groups, mask)
    for j, group in enumerate(groups):
        alone_s, alone_r = kernels.topk(
            vectors, queries[j], 15, metric, mask=mask, row_ranges=ranges[group]
        )
        np.testing.assert_array_equal(rows[j], alone_r[0])
        np.testing.assert_array_equal(scores[j], alone_s[0])


def test_query_gets_the_same_answer_alone_and_in_a_batch(isa):
    rng = np.random.default_rng(4)
    vectors, queries = random_data(1000, 30, 17, seed=5)
    ranges = random_partition(1000, 40, rng)
    groups = random_groups(30, 40, rng)
    batch = _search(vectors, queries, 7, "cosine", ranges, groups)
    for j in (0, 2, 17, 29):
        alone = _search(vectors, queries[j], 7, "cosine", ranges, [groups[j]])
        np.testing.assert_array_equal(alone[1][0], batch[1][j])
        np.testing.assert_array_equal(alone[0][0], batch[0][j])


def test_queries_without_blocks_get_only_padding(isa):
    vectors, queries = random_data(50, 3, 17, seed=6)
    ranges = random_partition(50, 5, np.random.default_rng(7))
    scores, rows = _search(vectors, queries, 4, "ip", ranges, [[], [], []])
    assert np.all(rows == -1) and np.all(scores == -np.inf)


def test_repeated_blocks_count_their_rows_once(isa, reference_scores, check_topk):
    vectors, queries = random_data(40, 2, 17, seed=8)
    ranges = np.array([[0, 10], [10, 25], [25, 40]], dtype=np.int64)
    groups = [[1, 1, 1], [2, 0, 2, 0]]
    got = _search(vectors, queries, 30, "l2", ranges, groups)
    check_topk(
        got, reference_scores(vectors, queries, "l2"), 30, qualifies=qualifying_rows(40, ranges, groups)
    )


def test_k_larger_than_the_chosen_rows_pads_at_the_end(isa, reference_scores, check_topk):
    vectors, queries = random_data(60, 4, 3, seed=9)
    ranges = random_partition(60, 6, np.random.default_rng(10))
    groups = [[0], [1, 2], [5, 4, 3, 2, 1, 0], [3]]
    got = _search(vectors, queries, 100, "cosine", ranges, groups)
    check_topk(
        got,
        reference_scores(vectors, queries, "cosine"),
        100,
        qualifies=qualifying_rows(60, ranges, groups),
    )


def test_mask_all_false_returns_only_padding(isa):
    vectors, queries = random_data(80, 3, 17, seed=11)
    ranges = random_partition(80, 8, np.random.default_rng(12))
    groups = [[0, 1, 2], list(range(8)), [7]]
    mask = np.zeros(80, dtype=bool)
    scores, rows = _search(vectors, queries, 5, "ip", ranges, groups, mask)
    assert np.all(rows == -1) and np.all(scores == -np.inf)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
def test_mask_and_blocks_combine(isa, dtype, reference_scores, check_topk):
    rng = np.random.default_rng(13)
    vectors, queries = random_data(2500, 9, 97, seed=14)
    ranges = random_partition(2500, 30, rng)
    groups = random_groups(9, 30, rng)
    mask = rng.random(2500) < 0.1
    got = _search(vectors, queries, 20, "l2", ranges, groups, mask.astype(dtype))
    check_topk(
        got,
        reference_scores(vectors, queries, "l2"),
        20,
        qualifies=qualifying_rows(2500, ranges, groups, mask),
    )


@pytest.mark.parametrize("metric", METRICS)
def test_ties_order_by_row_whatever_the_block_order(isa, metric):
    # One vector repeated: every score ties.  Blocks listed (and numbered) against row order,
    # one spanning several scan chunks, must still give rows ascending.
    row = np.random.default_rng(15).standard_normal(17, dtype=np.float32)
    vectors = np.tile(row, (3000, 1))
    query = np.random.default_rng(16).standard_normal(17, dtype=np.float32)
    ranges = np.array([[2000, 3000], [1500, 1600], [0, 10], [10, 1500]], dtype=np.int64)
    scores, rows = _search(vectors, query, 15, metric, ranges, [[0, 1, 2]])
    np.testing.assert_array_equal(rows[0], [*range(10), *range(1500, 1505)])
    assert np.all(scores[0] == scores[0, 0])


def test_rows_with_nan_never_qualify(isa):
    vectors = np.ones((6, 3), dtype=np.float32)
    vectors[[0, 4]] = np.nan
    ranges = np.array([[0, 3], [3, 6]], dtype=np.int64)
    scores, rows = _search(vectors, np.ones(3, dtype=np.float32), 6, "ip", ranges, [[1, 0]])
    np.testing.assert_array_equal(rows[0], [1, 2, 3, 5, -1, -1])
    np.testing.assert_array_equal(scores[0], [3.0, 3.0, 3.0, 3.0, -np.inf, -np.inf])


def test_no_blocks_and_no_vectors(isa):
    vectors, queries = random_data(0, 2, 5, seed=17)
    scores, rows = _search(vectors, queries, 3, "ip", np.zeros((0, 2), np.int64), [[], []])
    assert rows.shape == (2, 3) and np.all(rows == -1) and np.all(scores == -np.inf)


VECTORS = np.zeros((10, 4), dtype=np.float32)
QUERIES = np.ones((2, 4), dtype=np.float32)
RANGES = np.array([[0, 5], [5, 10]], dtype=np.int64)


@pytest.mark.parametrize(
    ("ranges", "ptr", "blocks", "message"),
    [
        (np.array([[0, 6], [5, 10]]), [0, 1, 2], [0, 1], "must not overlap"),
        (np.array([[5, 10], [0, 6]]), [0, 1, 2], [0, 1], "must not overlap"),
        (np.array([[5, 10], [2, 3], [0, 10]]), [0, 1, 2], [0, 1], "must not overlap"),
        (np.array([[0, 11]]), [0, 1, 2], [0, 0], r"0 <= start <= end <= 10"),
        (np.array([[0, 1, 2]]), [0, 1, 2], [0, 0], r"\(n_blocks, 2\)"),
        (RANGES, [0, 1], [0], "one entry per query plus one"),
        (RANGES, [1, 1, 2], [0, 1], "start at 0"),
        (RANGES, [0, 1, 3], [0, 1], "end at len"),
        (RANGES, [0, 2, 1], [0], "non-decreasing"),
        (RANGES, [0, 1, 2], [0, 2], r"blocks\[1\] = 2 is not a block id"),
        (RANGES, [0, 1, 2], [-1, 0], r"blocks\[0\] = -1 is not a block id"),
    ],
    ids=[
        "overlap",
        "overlap-unsorted",
        "contained-unsorted",
        "past-end",
        "three-columns",
        "short-ptr",
        "ptr-start",
        "ptr-end",
        "ptr-decreasing",
        "block-too-big",
        "block-negative",
    ],
)
def test_bad_block_inputs_are_rejected(ranges, ptr, blocks, message):
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.topk_blocks(
            VECTORS,
            QUERIES,
            3,
            "ip",
            block_ranges=ranges.astype(np.int64),
            ptr=np.array(ptr, np.int64),
            blocks=np.array(blocks, np.int64),
        )


def test_empty_ranges_inside_others_and_unsorted_ranges_are_allowed(
    isa, reference_scores, check_topk
):
    vectors, queries = random_data(10, 2, 3, seed=18)
    ranges = np.array([[5, 10], [7, 7], [0, 5], [0, 0]], dtype=np.int64)
    groups = [[0, 1, 2, 3], [1, 3]]
    got = _search(vectors, queries, 10, "ip", ranges, groups)
    check_topk(
        got, reference_scores(vectors, queries, "ip"), 10, qualifies=qualifying_rows(10, ranges, groups)
    )


def test_block_arrays_must_be_int64():
    with pytest.raises(InvalidArgumentError, match="dtype int64"):
        kernels.topk_blocks(
            VECTORS,
            QUERIES,
            3,
            "ip",
            block_ranges=RANGES,
            ptr=np.array([0, 1, 2], np.int32),
            blocks=np.array([0, 1], np.int64),
        )
    with pytest.raises(InvalidArgumentError, match="k must be"):
        kernels.topk_blocks(
            VECTORS,
            QUERIES,
            0,
            "ip",
            block_ranges=RANGES,
            ptr=np.array([0, 1, 2]),
            blocks=np.array([0, 1]),
        )
