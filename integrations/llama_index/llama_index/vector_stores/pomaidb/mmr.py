"""Maximal marginal relevance over a candidate set, in numpy.

Relevance and redundancy are both cosine similarities, whatever the
membrane's metric, so `mmr_threshold` (LlamaIndex's lambda) weighs
comparable quantities: each step picks the candidate maximising

    lambda * cos(query, c) - (1 - lambda) * max(cos(c, s) for s already picked)

(the first pick is the most relevant candidate). lambda = 1 is a plain
relevance ranking, lambda = 0 only avoids repeating what was picked.
Ties go to the earlier candidate, so the engine's order breaks them.
"""

from __future__ import annotations

import numpy as np

from pomaidb_core import InvalidArgumentError

DEFAULT_MMR_THRESHOLD = 0.5  # llama-index-core's default lambda


def mmr_order(query: np.ndarray, candidates: np.ndarray, k: int, threshold: float) -> list[int]:
    """Indices of up to k rows of `candidates` (n, dim), in MMR pick order."""
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgumentError(f"mmr_threshold must be in [0, 1], got {threshold}")
    unit = _unit_rows(candidates)
    relevance = unit @ _unit_rows(query[np.newaxis, :])[0]
    pairwise = unit @ unit.T
    picked: list[int] = []
    redundancy = np.full(len(unit), -np.inf)
    available = np.ones(len(unit), dtype=bool)
    for _ in range(min(k, len(unit))):
        if picked:
            score = threshold * relevance - (1.0 - threshold) * redundancy
        else:
            score = relevance.copy()
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, pairwise[best])
    return picked


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A zero vector has no direction: it stays zero (similarity 0 to everything).
    return rows / np.where(norms == 0.0, 1.0, norms)
