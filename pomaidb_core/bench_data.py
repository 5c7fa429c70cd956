"""The benchmarks' data: a directory of real embeddings, or clustered vectors generated on the spot.

A data directory (`--data DIR`, or the environment variable POMAIDB_BENCH_DATA) has the layout
of the pypi-100k set the README's figures come from: 100,000 PyPI package summaries embedded
with all-MiniLM-L6-v2 (384-d, unit length):

    base.f16.npy        (n, dim) float16   the vectors to index; id = row number
    queries.f16.npy     (q, dim) float16   held-out queries
    gt_ip_top100.npy    (q, 100) int32     optional: exact top-100 rows per query by inner product

Any embeddings saved that way work (`np.save("base.f16.npy", vectors.astype(np.float16))`).
Without a directory the benchmarks generate unit vectors around random centres, which cluster
the way sentence embeddings do, so every figure is still measured; only the recall of the
routing differs from real data.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InvalidArgumentError

DATA_ENV = "POMAIDB_BENCH_DATA"
REQUIRED = ("base.f16.npy", "queries.f16.npy")
SYNTHETIC_ROWS = 100_000
SYNTHETIC_DIM = 384
_ROWS_PER_CENTRE = 100


def data_dir(given: str | None) -> str | None:
    """The data directory asked for (argument, else environment), or None for generated data."""
    return given or os.environ.get(DATA_ENV) or None


def load(directory: str | None, limit: int | None, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(base, queries, a line saying what they are), float32 and C-contiguous."""
    if directory is None:
        rows = limit or SYNTHETIC_ROWS
        base, queries = synthetic(rows, SYNTHETIC_DIM, n_queries)
        return base, queries, (
            f"generated: {rows:,} x {SYNTHETIC_DIM} clustered unit vectors (no data directory "
            f"given: pass --data DIR or set {DATA_ENV} for real embeddings; see "
            "`pydoc pomaidb_core.bench_data`)")
    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise InvalidArgumentError(
            f"benchmark data directory {directory} lacks {', '.join(missing)}. It needs "
            "base.f16.npy (n x dim float16) and queries.f16.npy (q x dim float16); leave out "
            "--data (and POMAIDB_BENCH_DATA) to run on generated vectors instead")
    base = np.load(os.path.join(directory, "base.f16.npy"), mmap_mode="r")[:limit]
    queries = np.load(os.path.join(directory, "queries.f16.npy"))[:n_queries]
    return (np.ascontiguousarray(base, dtype=np.float32), queries.astype(np.float32),
            f"{directory}: {base.shape[0]:,} x {base.shape[1]} float16 embeddings")


def synthetic(rows: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around rows/100 random centres; queries drawn the same way."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, rows // _ROWS_PER_CENTRE), dim), dtype=np.float32)

    def around(count: int) -> np.ndarray:
        picked = centres[rng.integers(0, len(centres), count)]
        points = picked + 0.6 * rng.standard_normal((count, dim), dtype=np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return np.ascontiguousarray(around(rows)), np.ascontiguousarray(around(n_queries))
