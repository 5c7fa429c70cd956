"""Fusing a vector hit list and a keyword hit list into one ranking (hybrid search).

Both lists come from the same filter, so fusion never brings back a record the filter
excludes. Each list is (score, id, metadata, text) tuples, best first.

* "rrf" (reciprocal rank fusion, Cormack et al. 2009): a record scores
  sum over the lists that hold it of 1 / (60 + rank), ranks from 1.
* "weighted": alpha * s_vector + (1 - alpha) * s_keyword, each list's scores
  min-max normalised to [0, 1] (a list whose scores are all equal normalises to 1);
  a record missing from a list gets 0 from it.

Ties are broken by id ascending, so the fused order is deterministic.
"""

from __future__ import annotations

FUSIONS = ("rrf", "weighted")
RRF_K = 60


def _rrf(hits: list[tuple]) -> dict[int, float]:
    return {hit[1]: 1.0 / (RRF_K + rank) for rank, hit in enumerate(hits, start=1)}


def _normalised(hits: list[tuple]) -> dict[int, float]:
    if not hits:
        return {}
    scores = [float(hit[0]) for hit in hits]
    low, high = min(scores), max(scores)
    span = high - low
    return {hit[1]: (s - low) / span if span > 0 else 1.0 for hit, s in zip(hits, scores)}


def fuse(vector: list[tuple], keyword: list[tuple], k: int, fusion: str,
         alpha: float) -> list[tuple]:
    """The k best (fused score, id, metadata, text), ties by id ascending."""
    payload = {hit[1]: hit[2:] for hit in (*keyword, *vector)}
    if fusion == "rrf":
        sides = [(1.0, _rrf(vector)), (1.0, _rrf(keyword))]
    else:
        sides = [(alpha, _normalised(vector)), (1.0 - alpha, _normalised(keyword))]
    fused = {key: sum(weight * side.get(key, 0.0) for weight, side in sides) for key in payload}
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
    return [(score, key, *payload[key]) for key, score in ranked]
