"""kernels.hamming64 against numpy's bit unpacking, on every ISA level."""

from __future__ import annotations

import numpy as np

from pomaidb_core import kernels


def _reference(codes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    xor = codes[None, :] ^ queries[:, None]
    return np.unpackbits(xor.view(np.uint8), axis=-1).reshape(*xor.shape, 64).sum(axis=-1)


def test_hamming_matches_numpy_on_random_codes(isa):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2**64, size=1001, dtype=np.uint64)
    queries = rng.integers(0, 2**64, size=5, dtype=np.uint64)
    got = kernels.hamming64(codes, queries)
    assert got.shape == (5, 1001) and got.dtype == np.uint32
    np.testing.assert_array_equal(got, _reference(codes, queries))


def test_scalar_query_code_is_a_batch_of_one(isa):
    codes = np.array([0, 1, 2**64 - 1, 0xF0F0], dtype=np.uint64)
    np.testing.assert_array_equal(kernels.hamming64(codes, 0), [[0, 1, 64, 8]])
    np.testing.assert_array_equal(kernels.hamming64(codes, np.uint64(2**64 - 1)), [[64, 63, 0, 56]])


def test_no_codes_gives_an_empty_row_per_query(isa):
    got = kernels.hamming64(np.zeros(0, dtype=np.uint64), np.zeros(3, dtype=np.uint64))
    assert got.shape == (3, 0)
