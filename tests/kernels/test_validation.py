"""Inputs the kernels refuse: they never copy or convert, so a wrong dtype or layout is an error
that says how to fix it, raised before any work is done."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError

VECTORS = np.zeros((10, 4), dtype=np.float32)
QUERY = np.ones(4, dtype=np.float32)
FIX = r"np\.ascontiguousarray\(\w+, dtype=np\.float32\)"


def _unaligned_vectors() -> np.ndarray:
    raw = np.zeros(10 * 4 * 4 + 1, dtype=np.uint8)
    return np.frombuffer(raw.data, dtype=np.float32, count=40, offset=1).reshape(10, 4)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.zeros((10, 8), dtype=np.float32)[:, ::2], "C-contiguous"),
        (np.asfortranarray(np.zeros((10, 4), dtype=np.float32)), "C-contiguous"),
        (np.zeros((10, 4), dtype=np.float64), "dtype float32"),
        (np.zeros((10, 4), dtype=">f4"), "dtype float32"),
        ([[0.0] * 4] * 10, "numpy array"),
    ],
    ids=["strided", "fortran", "float64", "big-endian", "list"],
)
def test_bad_vectors_are_rejected_with_a_fix(vectors, message):
    for call in (
        lambda: kernels.scores(vectors, QUERY, "ip"),
        lambda: kernels.topk(vectors, QUERY, 3, "ip"),
        lambda: kernels.l2_norms(vectors),
    ):
        with pytest.raises(InvalidArgumentError, match=message) as info:
            call()
        assert "np.ascontiguousarray" in str(info.value)


def test_bad_queries_are_rejected_with_a_fix():
    with pytest.raises(InvalidArgumentError, match=FIX):
        kernels.scores(VECTORS, QUERY.astype(np.float64), "ip")
    with pytest.raises(InvalidArgumentError, match=FIX):
        kernels.topk(VECTORS, np.ones((3, 8), dtype=np.float32)[:, ::2], 2, "l2")


def test_misaligned_vectors_are_rejected():
    with pytest.raises(InvalidArgumentError, match="aligned"):
        kernels.scores(_unaligned_vectors(), QUERY, "ip")


def test_shape_mismatches_are_rejected():
    with pytest.raises(InvalidArgumentError, match="columns"):
        kernels.scores(VECTORS, np.ones(5, dtype=np.float32), "ip")
    with pytest.raises(InvalidArgumentError, match="2-dimensional"):
        kernels.scores(np.zeros(4, dtype=np.float32), QUERY, "ip")
    with pytest.raises(InvalidArgumentError, match="at least one column"):
        kernels.scores(np.zeros((3, 0), dtype=np.float32), np.zeros(0, dtype=np.float32), "ip")


def test_unknown_metric_is_rejected():
    with pytest.raises(InvalidArgumentError, match="metric"):
        kernels.scores(VECTORS, QUERY, "euclid")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_int(k):
    with pytest.raises(InvalidArgumentError, match="k must be"):
        kernels.topk(VECTORS, QUERY, k, "ip")


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.ones(9, dtype=bool), "9 entries"),
        (np.ones(10, dtype=np.int32), "dtype uint8"),
        (np.ones(20, dtype=bool)[::2], "C-contiguous"),
    ],
    ids=["short", "int32", "strided"],
)
def test_bad_masks_are_rejected(mask, message):
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.topk(VECTORS, QUERY, 3, "ip", mask=mask)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (np.array([[0, 11]], dtype=np.int64), r"0 <= start <= end <= 10"),
        (np.array([[-1, 3]], dtype=np.int64), r"0 <= start <= end <= 10"),
        (np.array([[5, 4]], dtype=np.int64), r"0 <= start <= end <= 10"),
        (np.array([[0, 1, 2]], dtype=np.int64), r"\(m, 2\)"),
        (np.array([[0, 3]], dtype=np.int32), "dtype int64"),
    ],
    ids=["past-end", "negative", "reversed", "three-columns", "int32"],
)
def test_bad_row_ranges_are_rejected(ranges, message):
    with pytest.raises(InvalidArgumentError, match=message):
        kernels.topk(VECTORS, QUERY, 3, "ip", row_ranges=ranges)


def test_bad_hamming_inputs_are_rejected():
    codes = np.zeros(4, dtype=np.uint64)
    with pytest.raises(InvalidArgumentError, match="dtype uint64"):
        kernels.hamming64(codes.astype(np.int64), codes)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 2\*\*64\)"):
        kernels.hamming64(codes, -1)
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        kernels.hamming64(np.zeros(8, dtype=np.uint64)[::2], codes)


def test_read_only_and_memory_mapped_arrays_are_used_in_place(tmp_path):
    path = tmp_path / "vectors.f32"
    data = np.random.default_rng(1).standard_normal((20, 4), dtype=np.float32)
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(20, 4))
    np.testing.assert_array_equal(
        kernels.scores(mapped, QUERY, "ip"), kernels.scores(data, QUERY, "ip")
    )
