"""kernels.topk_blocks_int8's sign stage against a numpy oracle, on every ISA level: of the
allowed rows of a query's blocks it keeps those whose sign-code distance is within a band of
`sign_sigmas` binomial standard deviations above the k-th smallest (at least keep_min rows),
all of them when that is more than 40%; the answer is then exactly kernels.topk over them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from block_cases import block_csr, int8_row_copy, qualifying_rows, random_data, random_groups, random_partition

from pomaidb_core import kernels, wsbr_build
from pomaidb_core.errors import InvalidArgumentError

METRICS = ["ip", "cosine", "l2"]


def _inputs(vectors: np.ndarray, queries: np.ndarray, metric: str) -> tuple[dict, np.ndarray]:
    routing = wsbr_build.unit_rows(vectors) if metric == "cosine" else vectors
    mu = routing.mean(axis=0)
    query_routing = wsbr_build.unit_rows(queries) if metric == "cosine" else queries
    return int8_row_copy(vectors, metric, mu), wsbr_build.sign_codes(query_routing, mu)


def _distances(signs: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.unpackbits((signs ^ query).view(np.uint8), axis=1).sum(axis=1)


def _kept(covered: np.ndarray, signs: np.ndarray, query: np.ndarray, k: int, sigmas: float,
          keep_min: int, dim: int) -> np.ndarray:
    rows = np.flatnonzero(covered)
    kept = np.zeros(len(covered), dtype=bool)
    if len(rows) == 0:
        return kept
    distance = _distances(signs[rows], query)
    ordered = np.sort(distance)
    dk = float(ordered[min(k, len(rows)) - 1])
    band = dk + sigmas * math.sqrt(dk * max(0.0, 1.0 - dk / dim))
    limit = max(math.floor(min(band, dim)), ordered[min(keep_min, len(rows)) - 1])
    within = distance <= limit
    kept[rows if within.sum() > 0.4 * len(rows) else rows[within]] = True
    return kept


def _check(vectors, queries, k, metric, ranges, groups, mask, rows, query_signs, sigmas,
           keep_min):
    ptr, blocks = block_csr(groups)
    got = kernels.topk_blocks_int8(vectors, queries, k, metric, mask, block_ranges=ranges,
                                   ptr=ptr, blocks=blocks, **rows, query_signs=query_signs,
                                   sign_sigmas=sigmas, keep_min=keep_min)
    covered = qualifying_rows(len(vectors), ranges, groups, mask)
    filtered = 0
    for j in range(len(queries)):
        kept = _kept(covered[j], rows["signs"], query_signs[j], k, sigmas, keep_min,
                     vectors.shape[1])
        scores, found = kernels.topk(vectors, queries[j], k, metric, mask=kept)
        np.testing.assert_array_equal(got[1][j], found[0])
        np.testing.assert_array_equal(got[0][j], scores[0])
        filtered += int(kept.sum() < covered[j].sum())
    return filtered


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("n", "dim"), [(300, 3), (600, 17), (2000, 97), (400, 200)])
@pytest.mark.parametrize(("sigmas", "keep_min"), [(0.0, 1), (0.0, 25), (1.0, 5), (3.0, 1)])
def test_answer_is_topk_over_the_nearest_sign_codes(isa, metric, n, dim, sigmas, keep_min):
    rng = np.random.default_rng(dim)
    vectors, queries = random_data(n, 9, dim, seed=dim)
    rows, query_signs = _inputs(vectors, queries, metric)
    ranges = random_partition(n, 17, rng)
    groups = random_groups(9, 17, rng)
    filtered = sum(_check(vectors, queries, 10, metric, ranges, groups, mask, rows, query_signs,
                          sigmas, keep_min) for mask in (None, rng.random(n) < 0.4))
    if sigmas == 0 and keep_min == 1 and n >= 600:
        assert filtered > 0  # the band cut rows somewhere, not only the 40% fallback


def test_rows_tied_with_the_last_kept_are_kept(isa):
    # 3-d codes take 8 values: nearly every distance is shared by many rows.
    vectors, queries = random_data(500, 4, 3, seed=11)
    rows, query_signs = _inputs(vectors, queries, "ip")
    ranges = random_partition(500, 12, np.random.default_rng(12))
    _check(vectors, queries, 7, "ip", ranges, [list(range(12))] * 4, None, rows, query_signs,
           0.0, 1)


def test_k_rows_come_back_when_keep_min_is_at_least_k(isa):
    vectors, queries = random_data(1000, 3, 33, seed=13)
    rows, query_signs = _inputs(vectors, queries, "cosine")
    ranges = random_partition(1000, 20, np.random.default_rng(14))
    ptr, blocks = block_csr([list(range(20))] * 3)
    mask = np.random.default_rng(15).random(1000) < 0.05
    _, found = kernels.topk_blocks_int8(vectors, queries, 10, "cosine", mask, block_ranges=ranges,
                                        ptr=ptr, blocks=blocks, **rows, query_signs=query_signs,
                                        sign_sigmas=0.0, keep_min=10)
    assert (found >= 0).all() and mask[found].all()


def test_sign_codes_are_the_signs_of_the_centred_rows():
    rng = np.random.default_rng(16)
    rows = rng.standard_normal((300, 70), dtype=np.float32)
    mu = rng.standard_normal(70, dtype=np.float32)
    codes = wsbr_build.sign_codes(rows, mu)
    assert codes.shape == (300, 2) and codes.dtype == np.uint64
    bits = np.unpackbits(codes.view(np.uint8), axis=1, bitorder="little")
    np.testing.assert_array_equal(bits[:, :70], (rows - mu > 0))
    assert not bits[:, 70:].any()  # padding
    np.testing.assert_array_equal(wsbr_build.sign_codes(rows[5:9], mu), codes[5:9])  # any batch


def test_malformed_sign_codes_are_refused():
    vectors, queries = random_data(10, 2, 70, seed=17)
    rows, query_signs = _inputs(vectors, queries, "ip")
    ptr, blocks = block_csr([[0], [0]])
    ranges = np.array([[0, 10]], dtype=np.int64)
    call = dict(block_ranges=ranges, ptr=ptr, blocks=blocks, **rows, query_signs=query_signs)
    for change, match in (({"signs": rows["signs"][:, :1].copy()}, "signs"),
                          ({"query_signs": query_signs[:1]}, "signs"),
                          ({"signs": rows["signs"].astype(np.int64)}, "signs"),
                          ({"signs": None}, "signs"),
                          ({"sign_sigmas": -1.0}, "sign_sigmas"),
                          ({"sign_sigmas": float("nan")}, "sign_sigmas"),
                          ({"keep_min": 0}, "keep_min")):
        with pytest.raises(InvalidArgumentError, match=match):
            kernels.topk_blocks_int8(vectors, queries, 3, "ip", **{**call, **change})
