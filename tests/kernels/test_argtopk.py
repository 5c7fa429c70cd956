"""kernels.argtopk against a numpy lexsort of (value descending, column ascending)."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError


def _reference(values: np.ndarray, count: int) -> np.ndarray:
    """NaN ranks last; -0.0 equals 0.0."""
    key = np.where(np.isnan(values), -np.inf, values).astype(np.float64) + 0.0
    nan_last = np.isnan(values)
    columns = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    order = [np.lexsort((c, -k, n)) for c, k, n in zip(columns, key, nan_last)]
    return np.array(order, dtype=np.int64).reshape(values.shape)[:, :count]


@pytest.mark.parametrize("count", [0, 1, 5, 300, 999, 1000, 5000])
def test_columns_of_the_largest_values_best_first(count):
    rng = np.random.default_rng(count)
    # Few distinct values: many ties, which must keep column order.
    values = rng.integers(-20, 20, size=(5, 1000)).astype(np.float32) / 4
    got = kernels.argtopk(values, count)
    assert got.dtype == np.int64 and got.shape == (5, min(count, 1000))
    np.testing.assert_array_equal(got, _reference(values, count))


@pytest.mark.parametrize("count", [10, 100])
def test_selection_is_exact_when_a_strided_sample_misleads(count):
    # The best values sit exactly where a strided sample of 64 looks, so a threshold taken
    # from the sample lets too few through and the selection must fall back to every value.
    n = 1000
    values = np.zeros((2, n), dtype=np.float32)
    values[0, np.arange(64) * n // 64] = np.arange(64, 0, -1)
    values[1] = -np.arange(n, dtype=np.float32)
    np.testing.assert_array_equal(kernels.argtopk(values, count), _reference(values, count))


def test_nan_ranks_below_minus_infinity_and_signed_zeros_tie():
    values = np.array([[np.nan, -np.inf, 0.0, -0.0, np.inf, -np.nan, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(kernels.argtopk(values, 7), [[4, 6, 2, 3, 1, 0, 5]])


def test_no_rows_or_no_columns():
    assert kernels.argtopk(np.zeros((0, 4), np.float32), 2).shape == (0, 2)
    assert kernels.argtopk(np.zeros((3, 0), np.float32), 2).shape == (3, 0)


def test_bad_inputs_are_rejected():
    with pytest.raises(InvalidArgumentError, match="count must be >= 0"):
        kernels.argtopk(np.zeros((1, 4), np.float32), -1)
    with pytest.raises(InvalidArgumentError, match="dtype float32"):
        kernels.argtopk(np.zeros((1, 4), np.float64), 2)
    with pytest.raises(InvalidArgumentError, match="count must be an int"):
        kernels.argtopk(np.zeros((1, 4), np.float32), 1.5)  # type: ignore[arg-type]
