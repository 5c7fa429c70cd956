"""Maximal marginal relevance (Carbonell & Goldstein, 1998) over fetched candidates.

Picks, one at a time, the candidate maximising
    lambda_mult * sim(query, c) - (1 - lambda_mult) * max(sim(c, s) for s already picked),
with sim the cosine similarity, as LangChain's own vector stores do; the first pick is the most
similar candidate, and ties go to the earlier candidate (the engine's ranking order).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import pomaidb_core as pdb


def check_lambda_mult(lambda_mult: float) -> None:
    if not 0.0 <= lambda_mult <= 1.0:
        raise pdb.InvalidArgumentError(f"lambda_mult must be in [0, 1], got {lambda_mult}")


def select(
    query: npt.ArrayLike, candidates: npt.ArrayLike, k: int, lambda_mult: float
) -> list[int]:
    """Indices into `candidates` (an (n, dim) array), in MMR order, at most k of them."""
    check_lambda_mult(lambda_mult)
    rows = _unit_rows(np.asarray(candidates, dtype=np.float64))
    wanted = min(k, len(rows))
    if wanted <= 0:
        return []
    query_row = _unit_rows(np.asarray(query, dtype=np.float64).reshape(1, -1))[0]
    relevance = rows @ query_row
    picked = [int(np.argmax(relevance))]
    redundancy = rows @ rows[picked[0]]
    available = np.ones(len(rows), dtype=bool)
    available[picked[0]] = False
    while len(picked) < wanted:
        objective = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        objective[~available] = -np.inf
        best = int(np.argmax(objective))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, rows @ rows[best])
    return picked


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    # A zero row stays zero: similarity 0 to everything, as in LangChain's cosine_similarity.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
