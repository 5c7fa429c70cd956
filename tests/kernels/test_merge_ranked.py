"""kernels.merge_ranked against results.merge_hits, the merge of ranked hit lists the shards'
path uses: the same hits, in the same order, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.results import merge_hits


def _parts(rng, queries: int, sizes: list[int], k: int):
    """Ranked lists as the kernels return them: best first, a few short ones padded with -1,
    few distinct scores (many ties) and ids beyond int64."""
    parts = []
    for size in sizes:
        ids = rng.choice(10**6, size, replace=False).astype(np.uint64) + np.uint64(2**63 - 9)
        scores = np.sort(rng.integers(-3, 3, (queries, k)).astype(np.float32) / 2, axis=1)[:, ::-1]
        rows = np.stack([rng.choice(size, k, replace=False) for _ in range(queries)])
        rows[0, k // 2 :] = -1  # fewer rows than k in this part
        scores[0, k // 2 :] = -np.inf
        parts.append((np.ascontiguousarray(scores), rows.astype(np.int64), ids))
    return parts


def _hits(parts):
    """Each part's hits as the shards' path ranks them: (score, id, part, row) per query."""
    per_part = []
    for p, (scores, rows, ids) in enumerate(parts):
        per_part.append([[(s, int(ids[r]), p, r) for s, r in zip(qs.tolist(), qr.tolist()) if r >= 0]
                         for qs, qr in zip(scores, rows)])
    return per_part


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_the_k_best_of_every_list_in_merge_hits_order(k):
    rng = np.random.default_rng(k)
    parts = _parts(rng, 6, [50, 12, 300, 20], 10)
    scores, ids, sources, rows = kernels.merge_ranked(parts, k)
    assert ids.dtype == np.uint64 and scores.shape == ids.shape == sources.shape == (6, k)
    for q, expected in enumerate(merge_hits(_hits(parts), k)):
        got = [(s, i, p, r) for s, i, p, r in zip(scores[q].tolist(), ids[q].tolist(),
                                                  sources[q].tolist(), rows[q].tolist())
               if p >= 0]
        assert got == expected
        assert (sources[q][len(expected):] == -1).all() and (rows[q][len(expected):] == -1).all()


def test_nan_ranks_last_and_no_parts_is_nothing():
    ids = np.arange(3, dtype=np.uint64)
    scores = np.array([[np.nan, 1.0, -np.inf]], np.float32)
    found = kernels.merge_ranked([(scores, np.array([[0, 1, 2]]), ids)], 3)
    assert found[3].tolist() == [[1, 2, 0]]
    empty = kernels.merge_ranked([], 5)
    assert all(a.shape == (0, 5) for a in empty)


def test_what_it_refuses():
    ids = np.arange(4, dtype=np.uint64)
    scores = np.zeros((2, 3), np.float32)
    rows = np.zeros((2, 3), np.int64)
    with pytest.raises(InvalidArgumentError, match="k must be >= 1"):
        kernels.merge_ranked([(scores, rows, ids)], 0)
    with pytest.raises(InvalidArgumentError, match="below len"):
        kernels.merge_ranked([(scores, rows + 4, ids)], 2)
    with pytest.raises(InvalidArgumentError, match="ids must have dtype uint64"):
        kernels.merge_ranked([(scores, rows, ids.astype(np.int64))], 2)
    with pytest.raises(InvalidArgumentError, match="rows must have 2 rows of 3"):
        kernels.merge_ranked([(scores, np.ascontiguousarray(rows[:, :2]), ids)], 2)
    with pytest.raises(InvalidArgumentError, match="scores must have 2 rows"):
        kernels.merge_ranked([(scores, rows, ids), (scores[:1], rows[:1], ids)], 2)
