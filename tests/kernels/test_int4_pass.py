"""The int4 pass of kernels.topk_blocks_int8 (its `nibbles`), on every ISA level: where a
query's rows are few it is skipped (the int8 pass's answer, bit for bit); where they are many
it keeps nearly all of that answer, and every row it returns carries its exact score."""

from __future__ import annotations

import numpy as np
import pytest
from block_cases import block_csr

from pomaidb_core import bench_data, kernels, wsbr_build
from pomaidb_core.errors import InvalidArgumentError

METRICS = ["ip", "cosine", "l2"]


def _row_copies(vectors: np.ndarray, metric: str) -> dict:
    """topk_blocks_int8's row arguments with the int4 copy, as a build makes them."""
    routing = wsbr_build.unit_rows(vectors) if metric == "cosine" else vectors
    dim = vectors.shape[1]
    codes, scale, residual, norm, _, nibbles, *_ = kernels.row_codes(
        np.ascontiguousarray(routing, dtype=np.float32), np.zeros(dim, np.float32),
        np.zeros((64, dim), np.int8), 1, np.zeros(len(vectors), np.int64))
    return {"codes": codes, "scale": scale, "residual": residual, "norm": norm,
            "nibbles": nibbles}


def _search(vectors, queries, k, metric, ranges, groups, rows, mask=None):
    ptr, blocks = block_csr(groups)
    return kernels.topk_blocks_int8(vectors, queries, k, metric, mask, block_ranges=ranges,
                                    ptr=ptr, blocks=blocks, **rows)


def _ranges(n: int, size: int) -> np.ndarray:
    edges = np.r_[np.arange(0, n, size), n].astype(np.int64)
    return np.ascontiguousarray(np.stack([edges[:-1], edges[1:]], axis=1))


@pytest.mark.parametrize("metric", METRICS)
def test_a_query_of_few_rows_skips_the_int4_pass(isa, metric):
    """k = 10 keeps 40 rows: a query reading at most 80 gets the int8 pass's answer."""
    vectors, queries = bench_data.synthetic(2_000, 96, 6, seed=3)
    ranges = _ranges(len(vectors), 10)
    rows = _row_copies(vectors, metric)
    plain = {name: value for name, value in rows.items() if name != "nibbles"}
    groups = [[3, 50, 7, 120], list(range(8)), [199], [], list(range(0, 200, 25)), [4, 4, 5]]
    for mask in (None, np.random.default_rng(1).random(len(vectors)) < 0.6):
        got = _search(vectors, queries, 10, metric, ranges, groups, rows, mask)
        want = _search(vectors, queries, 10, metric, ranges, groups, plain, mask)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [64, 128, 384])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_the_int4_pass_keeps_the_int8_passs_answer(isa, metric, dim, k):
    """Clustered rows (bench scale's generator), 1,500 rows a query: at least 0.98 of the
    int8 pass's hits survive, and each hit scores as the float kernels score it."""
    rng = np.random.default_rng(dim + k)
    vectors, queries = bench_data.synthetic(6_000, dim, 24, seed=dim)
    if metric != "cosine":  # rows of unequal lengths, so ip and l2 rank apart from cosine
        vectors = vectors * rng.uniform(0.5, 2.0, (len(vectors), 1)).astype(np.float32)
    ranges = _ranges(len(vectors), 15)
    groups = [rng.choice(len(ranges), 100, replace=False).tolist() for _ in queries]
    rows = _row_copies(vectors, metric)
    plain = {name: value for name, value in rows.items() if name != "nibbles"}
    got = _search(vectors, queries, k, metric, ranges, groups, rows)
    want = _search(vectors, queries, k, metric, ranges, groups, plain)
    kept = np.mean([len(set(g) & set(w)) / k for g, w in zip(got[1].tolist(), want[1].tolist())])
    assert kept >= 0.98, kept
    exact = kernels.scores(vectors, queries, metric)
    np.testing.assert_array_equal(got[0], np.take_along_axis(exact, got[1], axis=1))
    # the nibbles decide which rows go on: those of the negated rows keep the worst ones
    flipped = _search(vectors, queries, k, metric, ranges, groups,
                      {**rows, "nibbles": _row_copies(-vectors, metric)["nibbles"]})
    lost = np.mean([len(set(f) & set(w)) / k for f, w in zip(flipped[1].tolist(), want[1].tolist())])
    assert lost < 0.9, lost


def test_nibbles_of_another_shape_are_refused():
    vectors, queries = bench_data.synthetic(100, 96, 1)
    rows = _row_copies(vectors, "cosine")
    for bad in (rows["nibbles"][:50], rows["nibbles"][:, :32], rows["nibbles"].view(np.int8)):
        with pytest.raises(InvalidArgumentError, match="nibbles"):
            _search(vectors, queries, 3, "cosine", _ranges(100, 10), [[0, 1]],
                    {**rows, "nibbles": bad})


@pytest.mark.parametrize("metric", METRICS)
def test_rows_of_huge_values_are_scored_exactly(isa, metric):
    """Rows near float32's limit make int4 estimates of inf, or NaN for l2 (inf - inf): the
    pass keeps such rows and returns exact scores (UBSan runs this)."""
    vectors, queries = bench_data.synthetic(600, 128, 4, seed=9)
    vectors[::7] *= np.float32(3e37)
    rows = _row_copies(vectors, metric)
    groups = [list(range(60))] * len(queries)
    got = _search(vectors, queries, 5, metric, _ranges(600, 10), groups, rows)
    valid = got[1] >= 0
    exact = kernels.scores(vectors, queries, metric)
    found = np.take_along_axis(exact, np.where(valid, got[1], 0), axis=1)
    np.testing.assert_array_equal(got[0][valid], found[valid])
