"""kernels.unit_rows / inverse_norms against a float64 oracle, the same on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels, wsbr_build


def _oracle(rows: np.ndarray) -> np.ndarray:
    """1 / |row| in float64, rounded once to float32 (0 for a zero row)."""
    norms = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    with np.errstate(divide="ignore"):
        return np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)


@pytest.mark.parametrize("dim", [1, 3, 4, 5, 97, 384, 1536])
def test_inverse_norms_match_the_float64_oracle_and_unit_rows_are_their_products(dim):
    rng = np.random.default_rng(dim)
    rows = rng.standard_normal((64, dim)).astype(np.float32) * rng.uniform(1e-3, 1e3, (64, 1))
    rows = rows.astype(np.float32)
    rows[5] = 0
    inverse = kernels.inverse_norms(rows)
    expected = _oracle(rows)
    # the double sums differ from numpy's only in order: at most a float32 rounding apart
    assert np.all(np.abs(inverse.view(np.int32) - expected.view(np.int32)) <= 1)
    assert inverse[5] == 0
    unit = kernels.unit_rows(rows)
    assert unit.dtype == np.float32 and unit.shape == rows.shape
    assert np.array_equal(unit, rows * inverse[:, None]) and not unit[5].any()
    view = wsbr_build.UnitRowView(rows)  # what a build reads
    assert np.array_equal(view[np.arange(len(rows))], unit) and np.array_equal(view[7:9], unit[7:9])


def test_every_isa_level_scales_rows_to_the_same_bits():
    rows = np.random.default_rng(1).standard_normal((300, 384)).astype(np.float32)
    answers = []
    for isa in kernels.available_isas():
        with kernels.use_isa(isa):
            answers.append((kernels.inverse_norms(rows), kernels.unit_rows(rows)))
    for inverse, unit in answers[1:]:
        assert np.array_equal(inverse, answers[0][0]) and np.array_equal(unit, answers[0][1])


def test_other_dtypes_and_strided_views_are_converted_and_extreme_rows_keep_unit_length():
    rows = np.random.default_rng(2).standard_normal((10, 40))
    assert np.array_equal(kernels.unit_rows(rows[:, ::2]),
                          kernels.unit_rows(np.ascontiguousarray(rows[:, ::2], np.float32)))
    extreme = np.full((2, 384), 3e38, np.float32)  # float32 squares would overflow
    extreme[1] = 1e-30  # and these would underflow to a zero row
    assert np.allclose(kernels.unit_rows(extreme), 1 / np.sqrt(384), rtol=1e-3)
