"""Engine scores mapped onto LangChain's relevance scale [0, 1] (1 = most similar).

Each map is monotone in the engine score (so a score threshold keeps exactly a prefix of the
ranking) and sends the metric's whole range into [0, 1], so the result is never out of range,
whatever the embeddings' norms:

  cosine  score s = cosine similarity in [-1, 1]   ->  (1 + s) / 2
  l2      score s = -(squared distance) in (-inf, 0] ->  1 / (1 + squared distance)
  ip      score s = inner product in (-inf, inf)    ->  logistic(s) = 1 / (1 + exp(-s))

For unit-norm embeddings used with "ip", pass relevance_score_fn=cosine_relevance to the store:
there the inner product is the cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def cosine_relevance(score: float) -> float:
    """A cosine similarity in [-1, 1] as a relevance in [0, 1]."""
    # Clamped only against float32 rounding (a self-match can score 1.0000001).
    return min(1.0, max(0.0, (1.0 + score) / 2.0))


def l2_relevance(score: float) -> float:
    """A negated squared distance (<= 0) as a relevance in (0, 1]: 1 / (1 + distance)."""
    squared_distance = max(0.0, -score)
    return 1.0 / (1.0 + squared_distance)


def ip_relevance(score: float) -> float:
    """An inner product as a relevance in (0, 1): the logistic function of the score."""
    # Two branches so that exp() never overflows for large |score|.
    if score >= 0.0:
        return 1.0 / (1.0 + math.exp(-score))
    tail = math.exp(score)
    return tail / (1.0 + tail)


RELEVANCE_BY_METRIC: dict[str, Callable[[float], float]] = {
    "cosine": cosine_relevance,
    "l2": l2_relevance,
    "ip": ip_relevance,
}
