"""A dict + numpy brute-force model of a membrane: what PomaiDB must agree with."""

from __future__ import annotations

import numpy as np

from pomaidb_core.filters import compile_filter


def scores(metric: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float64)
    query = query.astype(np.float64)
    if metric == "ip":
        return matrix @ query
    if metric == "l2":
        return -((matrix - query) ** 2).sum(axis=1)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    dots = matrix @ query
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


class Oracle:
    def __init__(self, dim: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self.rows: dict[int, tuple[np.ndarray, dict | None]] = {}

    def put(self, key: int, vector, metadata=None) -> None:
        self.rows[key] = (np.asarray(vector, dtype=np.float32).copy(), metadata)

    def delete(self, key: int) -> bool:
        return self.rows.pop(key, None) is not None

    def delete_where(self, spec) -> int:
        flt = compile_filter(spec)
        doomed = [k for k, (_, m) in self.rows.items() if flt is None or flt.matches(m)]
        for key in doomed:
            del self.rows[key]
        return len(doomed)

    def search(self, query, k: int, spec=None) -> list[tuple[int, float]]:
        flt = compile_filter(spec)
        keys = [key for key, (_, m) in self.rows.items() if flt is None or flt.matches(m)]
        if not keys:
            return []
        matrix = np.stack([self.rows[key][0] for key in keys])
        found = scores(self.metric, matrix, np.asarray(query, dtype=np.float32))
        order = sorted(range(len(keys)), key=lambda i: (-found[i], keys[i]))[:k]
        return [(keys[i], float(found[i])) for i in order]


def assert_same_ranking(hits, expected, rel: float = 1e-4) -> None:
    """Same ids in the same order, allowing swaps only between scores equal within tolerance."""
    assert len(hits) == len(expected), (len(hits), len(expected))
    for hit, (key, score) in zip(hits, expected):
        assert abs(hit.score - score) <= rel * max(1.0, abs(score)), (hit, key, score)
    got_ids = [h.id for h in hits]
    want_ids = [key for key, _ in expected]
    if got_ids != want_ids:
        # Only near-ties may reorder: compare as multisets within score bands.
        assert sorted(got_ids) == sorted(want_ids) or _tie_equivalent(hits, expected, rel)


def _tie_equivalent(hits, expected, rel: float) -> bool:
    last = expected[-1][1]
    want = {key for key, score in expected if abs(score - last) > rel * max(1.0, abs(last))}
    return want <= {h.id for h in hits}


def random_vectors(n: int, q: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n rows, q queries) of standard normal float32 vectors."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, d), dtype=np.float32),
        rng.standard_normal((q, d), dtype=np.float32),
    )
