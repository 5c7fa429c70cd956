"""An independent BM25 (Lucene's formula, API.md) over token lists, in numpy: the oracle the
keyword-search tests compare the engine with."""

from __future__ import annotations

from collections import Counter

import numpy as np


def bm25_scores(docs: dict[int, list[str]], query: list[str], k1: float = 1.2,
                b: float = 0.75) -> dict[int, float]:
    """{id: score} of every document holding a query term (distinct query terms)."""
    ids = sorted(docs)
    counts = [Counter(docs[i]) for i in ids]
    lengths = np.array([len(docs[i]) for i in ids], dtype=np.float64)
    n = len(ids)
    avg = lengths.mean() if n and lengths.sum() else 1.0
    total = np.zeros(n)
    matched = np.zeros(n, dtype=bool)
    for term in dict.fromkeys(query):
        tf = np.array([c.get(term, 0) for c in counts], dtype=np.float64)
        df = np.count_nonzero(tf)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / avg))
        matched |= tf > 0
    return {ids[j]: float(total[j]) for j in np.flatnonzero(matched)}


def top(scores: dict[int, float], k: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
