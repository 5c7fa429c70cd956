"""kernels.dot_int8_rows against numpy's int64 products, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError


def _reference(matrix: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.einsum("qcd,qd->qc", matrix[rows].astype(np.int64), queries.astype(np.int64))


@pytest.mark.parametrize("dim", [1, 3, 15, 16, 17, 31, 33, 63, 64, 65, 97, 129, 384, 1536])
def test_dots_are_exact_on_awkward_dims(isa, dim):
    rng = np.random.default_rng(dim)
    matrix = rng.integers(-128, 128, size=(50, dim), dtype=np.int8)
    queries = rng.integers(-128, 128, size=(6, dim), dtype=np.int8)
    # 7 rows per query (not a multiple of the 4-row tile), with repeats.
    rows = rng.integers(0, 50, size=(6, 7), dtype=np.int64)
    got = kernels.dot_int8_rows(matrix, queries, rows)
    assert got.dtype == np.int32 and got.shape == (6, 7)
    np.testing.assert_array_equal(got, _reference(matrix, queries, rows))


@pytest.mark.parametrize("dim", [1, 31, 32, 33, 63, 64, 65, 97, 384, 1536])
def test_packed_dots_are_exact_on_awkward_dims(isa, dim):
    # 4-bit rows (a centroid table) scored from their packing: 64 columns a chunk, the low
    # nibbles the first 32, a partial last chunk.
    rng = np.random.default_rng(dim)
    matrix = rng.integers(-8, 8, size=(50, dim), dtype=np.int8)
    queries = rng.integers(-128, 128, size=(6, dim), dtype=np.int8)
    rows = rng.integers(0, 50, size=(6, 7), dtype=np.int64)
    got = kernels.dot_int8_rows(matrix, queries, rows, packed=True)
    np.testing.assert_array_equal(got, _reference(matrix, queries, rows))


def test_packing_refuses_values_beyond_four_bits():
    matrix = np.zeros((2, 10), dtype=np.int8)
    matrix[1, 3] = 8
    with pytest.raises(InvalidArgumentError, match=r"\[-8, 7\]"):
        kernels.dot_int8_rows(matrix, np.ones((1, 10), np.int8), np.zeros((1, 1), np.int64),
                              packed=True)


def test_extreme_values_do_not_overflow(isa):
    dim = 4096
    matrix = np.full((2, dim), -128, dtype=np.int8)
    queries = np.full((1, dim), -128, dtype=np.int8)
    got = kernels.dot_int8_rows(matrix, queries, np.array([[1, 0, 1]], dtype=np.int64))
    np.testing.assert_array_equal(got, [[dim * 16384] * 3])


def test_no_queries_or_no_rows(isa):
    matrix = np.ones((3, 5), dtype=np.int8)
    assert kernels.dot_int8_rows(
        matrix, np.ones((2, 5), np.int8), np.zeros((2, 0), np.int64)
    ).shape == (2, 0)
    assert kernels.dot_int8_rows(
        matrix, np.ones((0, 5), np.int8), np.zeros((0, 4), np.int64)
    ).shape == (0, 4)


@pytest.mark.parametrize(
    ("rows", "queries", "message"),
    [
        ([[0, 3]], np.ones((1, 5), np.int8), "index the matrix's 3 rows, got 3"),
        ([[-1, 0]], np.ones((1, 5), np.int8), "index the matrix's 3 rows, got -1"),
        ([[0], [1]], np.ones((1, 5), np.int8), "one row of ids per query"),
        ([[0]], np.ones((1, 4), np.int8), "4 columns but matrix has 5"),
        ([[0]], np.ones((1, 5), np.int16), "dtype int8"),
    ],
    ids=["past-end", "negative", "row-count", "columns", "int16"],
)
def test_bad_inputs_are_rejected(rows, queries, message):
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.dot_int8_rows(np.ones((3, 5), np.int8), queries, np.array(rows, dtype=np.int64))
