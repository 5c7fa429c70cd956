"""Fixtures shared by the kernel tests: every ISA level this machine has, a float64 oracle, and
a top-k checker against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pomaidb_core import kernels

ReferenceScores = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


@pytest.fixture(params=kernels.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test once per instruction-set level the machine supports, with it active."""
    with kernels.use_isa(request.param):
        yield request.param


def _reference_scores(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """(q, n) scores in float64, straight from the definitions in pomaidb_core.kernels."""
    x = vectors.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    if metric == "ip":
        return q @ x.T
    if metric == "l2":
        return -(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    norms = np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(x, axis=1)[None, :]
    dots = q @ x.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def _tolerance(vectors: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Per-entry absolute tolerance for float32 accumulation, (q, n).

    Rounding error of a float32 sum grows with the magnitude of its terms, not of the result
    (a dot product of large vectors may cancel to ~0), so the bound scales with |q| |x|.
    """
    qn = np.linalg.norm(np.atleast_2d(queries).astype(np.float64), axis=1)[:, None]
    xn = np.linalg.norm(vectors.astype(np.float64), axis=1)[None, :]
    if metric == "cosine":
        return np.full((qn.shape[0], xn.shape[1]), 1e-5)
    if metric == "l2":
        return 1e-5 * (qn + xn) ** 2 + 1e-6
    return 1e-5 * qn * xn + 1e-6


@pytest.fixture
def reference_scores() -> ReferenceScores:
    return _reference_scores


@pytest.fixture
def assert_scores_close() -> Callable[[np.ndarray, np.ndarray, np.ndarray, str], None]:
    """Asserts kernel scores (q, n) match the float64 oracle within float32 tolerance."""

    def check(got: np.ndarray, vectors: np.ndarray, queries: np.ndarray, metric: str) -> None:
        want = _reference_scores(vectors, queries, metric)
        tol = _tolerance(vectors, queries, metric) + 1e-4 * np.abs(want)
        bad = np.abs(got.astype(np.float64) - want) > tol
        assert not bad.any(), (
            f"{int(bad.sum())} scores differ, first at {np.argwhere(bad)[0].tolist()}: "
            f"got {got[bad][:3]}, want {want[bad][:3]}"
        )

    return check


def _check_topk(
    got: tuple[np.ndarray, np.ndarray], ref: np.ndarray, k: int, qualifies: np.ndarray | None = None
) -> None:
    """got = (scores, rows) from a top-k kernel; ref = float64 (q, n) oracle scores.

    qualifies: None (every row), (n,) bool for every query, or (q, n) bool per query.  Float32
    kernels and the float64 oracle may order rows whose scores differ by rounding error
    differently, so a swap is allowed only between rows whose true scores tie within tolerance.
    """
    got_scores, got_rows = got
    n_queries, n = ref.shape
    assert got_scores.shape == got_rows.shape == (n_queries, k)
    assert got_scores.dtype == np.float32 and got_rows.dtype == np.int64
    if qualifies is None:
        qualifies = np.ones(n, dtype=bool)
    qualifies = np.broadcast_to(qualifies, (n_queries, n))
    for j in range(n_queries):
        eligible = np.flatnonzero(qualifies[j])
        m = min(k, eligible.size)
        rows, scores = got_rows[j], got_scores[j]
        assert np.all(rows[m:] == -1) and np.all(scores[m:] == -np.inf), "padding"
        top = rows[:m]
        assert np.unique(top).size == m and np.isin(top, eligible).all(), "rows qualify"
        truth = ref[j, top]
        tol = 1e-4 * (1.0 + np.abs(ref[j]).max())
        np.testing.assert_allclose(scores[:m], truth, rtol=0, atol=tol)
        assert np.all(np.diff(scores[:m]) <= 0), "sorted best first"
        same = scores[:m][1:] == scores[:m][:-1]
        assert np.all(top[1:][same] > top[:-1][same]), "ties by row ascending"
        order = eligible[np.argsort(-ref[j, eligible], kind="stable")][:m]
        swapped = top != order
        assert np.all(np.abs(ref[j, top[swapped]] - ref[j, order[swapped]]) <= tol), (
            f"query {j}: rows {top[swapped]} instead of numpy's {order[swapped]}"
        )


@pytest.fixture
def check_topk() -> Callable[..., None]:
    return _check_topk
