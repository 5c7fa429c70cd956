"""kernels.wsbr_select against a numpy/Python oracle of WSBR's steps 1-3, on every ISA level,
with awkward dimensions and many ties (Hamming distances and centroid scores)."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.wsbr import quant_level, quantize


def _table(rng: np.random.Generator, n_blocks: int, dim: int, *, few_codes: bool) -> dict:
    level = quant_level(dim)
    codes = rng.integers(0, 2**63, size=4 if few_codes else n_blocks, dtype=np.uint64)
    centroids = rng.integers(-level, level + 1, size=(n_blocks, dim), dtype=np.int8)
    if few_codes:  # repeated centroids and alphas: equal centroid scores
        centroids[1::2] = centroids[0]
    alpha = rng.uniform(0.001, 0.01, n_blocks).astype(np.float32)
    if few_codes:
        alpha[1::2] = alpha[0]
    return dict(mu=rng.standard_normal(dim).astype(np.float32) * np.float32(0.1),
                projection=rng.integers(-level, level + 1, size=(64, dim), dtype=np.int8),
                signatures=codes[rng.integers(0, len(codes), n_blocks)],
                centroids=centroids, alpha=alpha,
                beta=rng.standard_normal(n_blocks).astype(np.float32), level=level)


def _oracle(routing: np.ndarray, queries: np.ndarray, t: dict, l2: bool, top: int,
            widen: int) -> np.ndarray:
    """The definition in wsbr.py's docstring, one query at a time, integers in int64."""
    n_blocks = len(t["signatures"])
    out = []
    for r, x in zip(routing, queries):
        q = quantize((r - t["mu"])[None, :], t["level"])[0].astype(np.int64)
        bits = t["projection"].astype(np.int64) @ q > 0
        code = sum(1 << j for j in range(64) if bits[j])
        hamming = [bin(int(s) ^ code).count("1") for s in t["signatures"]]
        order = sorted(range(n_blocks), key=lambda b: (hamming[b], b))
        if widen == 0 or top >= n_blocks:
            out.append(order[:top])
            continue
        shortlist = order[: top + widen]
        q8 = quantize(x[None, :], t["level"])[0].astype(np.int64)
        dots = (t["centroids"][shortlist].astype(np.int64) @ q8).astype(np.float32)
        est = t["alpha"][shortlist] * dots
        if l2:
            gain = np.abs(x).max() / np.float32(t["level"])
            est = est * gain + t["beta"][shortlist]
        columns = sorted(range(len(shortlist)), key=lambda c: (-float(est[c]), c))
        out.append([shortlist[c] for c in columns[:top]])
    return np.array(out, dtype=np.int64).reshape(len(queries), -1)


def _select(routing, queries, t, l2, top, widen):
    return kernels.wsbr_select(routing, queries, mu=t["mu"], projection=t["projection"],
                               signatures=t["signatures"], centroids=t["centroids"],
                               alpha=t["alpha"], beta=t["beta"], level=t["level"], l2=l2,
                               top=top, widen=widen)


@pytest.mark.parametrize("dim", [1, 3, 17, 97, 384])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("few_codes", [False, True])
def test_selection_equals_the_oracle_on_every_isa(isa, dim, l2, few_codes):
    rng = np.random.default_rng(dim * 4 + 2 * l2 + few_codes)
    t = _table(rng, 150, dim, few_codes=few_codes)
    queries = rng.standard_normal((7, dim)).astype(np.float32)
    queries[3] = 0.0  # a zero query quantises to zeros
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    routing = np.where(norms > 0, queries / np.where(norms > 0, norms, 1), 0).astype(np.float32)
    for top, widen in [(1, 0), (10, 0), (10, 40), (25, 500), (149, 3), (150, 10), (400, 0)]:
        got = _select(routing, queries, t, l2, top, widen)  # a set per query: compare sorted
        np.testing.assert_array_equal(np.sort(got, axis=1),
                                      np.sort(_oracle(routing, queries, t, l2, top, widen), axis=1),
                                      err_msg=f"isa={isa} top={top} widen={widen}")


def test_a_query_selects_the_same_blocks_alone_and_in_a_batch(isa):
    rng = np.random.default_rng(7)
    t = _table(rng, 300, 33, few_codes=True)
    queries = rng.standard_normal((9, 33)).astype(np.float32)
    batch = _select(queries, queries, t, False, 12, 60)
    for j in range(len(queries)):
        np.testing.assert_array_equal(
            _select(queries[j : j + 1], queries[j : j + 1], t, False, 12, 60)[0], batch[j])


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(projection=t["projection"][:63]), "projection must have 64 rows"),
    (lambda t: t.update(centroids=t["centroids"][:-1]), "centroids must have 20 rows"),
    (lambda t: t.update(alpha=t["alpha"][:-1]), "alpha must have 20 rows"),
    (lambda t: t.update(mu=t["mu"].astype(np.float64)), "mu must have dtype float32"),
    (lambda t: t.update(level=200), "level must be in"),
])
def test_inconsistent_tables_are_refused(change, message):
    rng = np.random.default_rng(1)
    t = _table(rng, 20, 8, few_codes=False)
    change(t)
    queries = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match=message):
        _select(queries, queries, t, False, 3, 4)


def test_bad_counts_are_refused():
    rng = np.random.default_rng(2)
    t = _table(rng, 20, 8, few_codes=False)
    queries = np.ones((2, 8), dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match="need top >= 1"):
        _select(queries, queries, t, False, 0, 4)
    with pytest.raises(InvalidArgumentError, match="routing_queries must have 2 rows"):
        _select(queries[:1], queries, t, False, 3, 4)
