"""kernels.scores and kernels.l2_norms against a float64 numpy oracle, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import random_vectors as _data

from pomaidb_core import kernels

AWKWARD_DIMS = [1, 3, 17, 97, 1536]
METRICS = ["ip", "cosine", "l2"]



@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", AWKWARD_DIMS)
def test_scores_match_numpy_on_awkward_dims(isa, metric, dim, assert_scores_close):
    # 7 queries and 61 rows: neither a multiple of the 4-query nor the 4-row micro tiles.
    vectors, queries = _data(61, 7, dim, seed=dim)
    got = kernels.scores(vectors, queries, metric)
    assert got.shape == (7, 61) and got.dtype == np.float32
    assert_scores_close(got, vectors, queries, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_scores_span_several_blocks_and_query_tiles(isa, metric, assert_scores_close):
    # d=97 puts ~330 rows in a block, so 2000 rows cross several; 37 queries cross query tiles.
    vectors, queries = _data(2000, 37, 97, seed=1)
    assert_scores_close(kernels.scores(vectors, queries, metric), vectors, queries, metric)


@pytest.mark.parametrize("metric", METRICS)
def test_one_dimensional_query_is_a_batch_of_one(isa, metric, assert_scores_close):
    vectors, queries = _data(50, 1, 17, seed=2)
    got = kernels.scores(vectors, queries[0], metric)
    assert got.shape == (1, 50)
    assert_scores_close(got, vectors, queries, metric)


def test_cosine_with_a_zero_vector_or_zero_query_is_zero(isa):
    vectors, queries = _data(9, 2, 17, seed=3)
    vectors[4] = 0.0
    queries[1] = 0.0
    got = kernels.scores(vectors, queries, "cosine")
    assert got[0, 4] == 0.0
    assert np.all(got[1] == 0.0)
    assert np.all(np.isfinite(got))


def test_l2_score_is_the_negated_squared_distance(isa):
    vectors = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    query = np.array([0.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(kernels.scores(vectors, query, "l2"), [[0.0, -25.0]])


def test_identical_rows_score_bit_identically(isa):
    # The tie-break of topk relies on duplicates producing exactly equal scores, whatever
    # micro tile (4 rows or the 1-row tail) a row lands in.
    row = np.random.default_rng(4).standard_normal(97, dtype=np.float32)
    vectors = np.tile(row, (11, 1))
    queries = np.random.default_rng(5).standard_normal((6, 97), dtype=np.float32)
    for metric in METRICS:
        got = kernels.scores(vectors, queries, metric)
        assert np.all(got == got[:, :1]), metric


def test_no_vectors_or_no_queries_give_empty_scores(isa):
    vectors, queries = _data(0, 3, 17, seed=6)
    assert kernels.scores(vectors, queries, "ip").shape == (3, 0)
    vectors, queries = _data(5, 0, 17, seed=6)
    assert kernels.scores(vectors, queries, "cosine").shape == (0, 5)


@pytest.mark.parametrize("dim", AWKWARD_DIMS)
def test_l2_norms_match_numpy(isa, dim):
    vectors, _ = _data(45, 1, dim, seed=7)
    vectors[3] = 0.0
    got = kernels.l2_norms(vectors)
    assert got.shape == (45,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.linalg.norm(vectors.astype(np.float64), axis=1), rtol=1e-5)
    assert got[3] == 0.0


def test_scores_are_the_same_on_every_isa():
    vectors, queries = _data(300, 5, 384, seed=8)
    results = {}
    for name in kernels.available_isas():
        with kernels.use_isa(name):
            results[name] = kernels.scores(vectors, queries, "cosine")
    for name, got in results.items():
        np.testing.assert_allclose(got, results["scalar"], rtol=1e-5, atol=1e-6, err_msg=name)
