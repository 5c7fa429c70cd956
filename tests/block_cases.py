"""Block-routed search cases shared by the topk_blocks kernel tests: random data, partitions of
the rows into blocks, and each query's blocks in CSR form."""

from __future__ import annotations

import numpy as np

from pomaidb_core import kernels, wsbr_build


def random_data(n: int, q: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, d), dtype=np.float32),
        rng.standard_normal((q, d), dtype=np.float32),
    )


def random_partition(n: int, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """(n_blocks, 2) ranges cutting [0, n) at random points: some blocks are empty."""
    cuts = np.sort(rng.integers(0, n + 1, size=n_blocks - 1))
    edges = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    return np.ascontiguousarray(np.stack([edges[:-1], edges[1:]], axis=1))


def block_csr(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(g) for g in groups], out=ptr[1:])
    blocks = np.array([b for g in groups for b in g], dtype=np.int64)
    return ptr, blocks


def random_groups(n_queries: int, n_blocks: int, rng: np.random.Generator) -> list[list[int]]:
    """Per query: no blocks, one block, or several in any order with repeats."""
    groups = []
    for j in range(n_queries):
        size = (0, 1, int(rng.integers(2, n_blocks + 3)))[j % 3]
        groups.append(rng.integers(0, n_blocks, size=size).tolist())
    return groups


def qualifying_rows(n: int, ranges: np.ndarray, groups: list[list[int]], mask=None) -> np.ndarray:
    covered = np.zeros((len(groups), n), dtype=bool)
    for j, group in enumerate(groups):
        for b in group:
            covered[j, ranges[b, 0] : ranges[b, 1]] = True
    return covered if mask is None else covered & mask


def int8_row_copy(vectors: np.ndarray, metric: str, mu: np.ndarray | None = None) -> dict:
    """topk_blocks_int8's row arguments for `vectors`, as a build makes them (the routing
    rows' int8 copy, and their sign codes against mu, zeros when not given)."""
    routing = wsbr_build.unit_rows(vectors) if metric == "cosine" else vectors
    dim = vectors.shape[1]
    mu = np.zeros(dim, np.float32) if mu is None else mu
    codes, scale, residual, norm, signs, *_ = kernels.row_codes(
        np.ascontiguousarray(routing, dtype=np.float32), mu, np.zeros((64, dim), np.int8), 1,
        np.zeros(len(vectors), np.int64))
    return {"codes": codes, "scale": scale, "residual": residual, "norm": norm, "signs": signs}
