"""kernels.hamming64_rank against a stable numpy argsort of the distances, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError


def _reference(codes: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
    xor = codes[None, :] ^ queries[:, None]
    distance = np.unpackbits(xor.view(np.uint8), axis=-1).reshape(*xor.shape, 64).sum(axis=-1)
    return np.argsort(distance, axis=1, kind="stable")[:, :count]


@pytest.mark.parametrize("count", [0, 1, 37, 500, 1001, 5000])
def test_rank_is_the_stable_order_of_distances(isa, count):
    rng = np.random.default_rng(count)
    # Few distinct codes: many ties, which must keep index order.
    codes = rng.integers(0, 2**64, size=40, dtype=np.uint64)[rng.integers(0, 40, size=1001)]
    codes[::97] = np.uint64(2**64 - 1)
    queries = np.concatenate(
        [rng.integers(0, 2**64, size=4, dtype=np.uint64), np.array([0, 2**64 - 1], dtype=np.uint64)]
    )
    got = kernels.hamming64_rank(codes, queries, count)
    assert got.dtype == np.int64 and got.shape == (6, min(count, 1001))
    np.testing.assert_array_equal(got, _reference(codes, queries, count))


def test_no_codes_or_no_queries(isa):
    assert kernels.hamming64_rank(np.zeros(0, np.uint64), np.zeros(3, np.uint64), 5).shape == (3, 0)
    assert kernels.hamming64_rank(np.zeros(4, np.uint64), np.zeros(0, np.uint64), 2).shape == (0, 2)


def test_bad_rank_inputs_are_rejected():
    codes = np.zeros(4, dtype=np.uint64)
    with pytest.raises(InvalidArgumentError, match="count must be >= 0"):
        kernels.hamming64_rank(codes, codes, -1)
    with pytest.raises(InvalidArgumentError, match="count must be an int"):
        kernels.hamming64_rank(codes, codes, 2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="dtype uint64"):
        kernels.hamming64_rank(codes.astype(np.int64), codes, 2)
