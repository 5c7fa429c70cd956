"""BM25 over keyword indexes (keyword_index.py), with corpus statistics passed in from outside.

Lucene's BM25 (API.md): for a query term t and a document d,

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(t, d) = idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avglen))

and a document's score is the sum over the distinct query terms it holds. N counts the
live records that have a text, avglen is their mean length in terms, and df(t) counts
those holding t: statistics of the *whole membrane* (every shard, every layer,
newest-wins), gathered first (`CorpusStats`, summed over shards by the caller) and then
used to score every layer. A document's score is therefore the same float wherever it
lives: the terms' contributions are added in query-term order, in float64, whatever the
shard count or segment layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CorpusStats:
    documents: int  # live records with a text
    total_length: float  # their summed lengths, in terms
    df: tuple[int, ...]  # per query term: live records holding it

    @staticmethod
    def total(parts: list[CorpusStats]) -> CorpusStats:
        return CorpusStats(sum(p.documents for p in parts), sum(p.total_length for p in parts),
                           tuple(int(sum(col)) for col in zip(*(p.df for p in parts))))

    def idf(self) -> np.ndarray:
        df = np.asarray(self.df, dtype=np.float64)
        return np.log1p((self.documents - df + 0.5) / (df + 0.5))

    def avg_length(self) -> float:
        return self.total_length / self.documents if self.documents else 0.0


def layer_stats(keywords, live: np.ndarray, terms: list[str]) -> CorpusStats:
    """Statistics of one layer's rows where `live` (bool, one per row) is set."""
    has_text = keywords.has_text() & live
    df = tuple(int(np.count_nonzero(live[keywords.postings(t)[0]])) for t in terms)
    return CorpusStats(int(np.count_nonzero(has_text)),
                       float(keywords.doc_lengths()[live].sum()), df)


def score_layer(keywords, allowed: np.ndarray, terms: list[str], stats: CorpusStats,
                k1: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of every row where `allowed` holds at least one query term."""
    scores = np.zeros(len(allowed), dtype=np.float64)
    touched = np.zeros(len(allowed), dtype=bool)
    lengths = keywords.doc_lengths()
    avg = stats.avg_length() or 1.0
    for term, idf in zip(terms, stats.idf().tolist()):
        rows, tf = keywords.postings(term)
        if len(rows) == 0:
            continue
        keep = allowed[rows]
        rows, tf = rows[keep], tf[keep]
        norm = k1 * (1.0 - b + b * lengths[rows] / avg)
        scores[rows] += idf * (tf * (k1 + 1.0) / (tf + norm))
        touched[rows] = True
    hit = np.flatnonzero(touched)
    return hit, scores[hit]


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best by score descending, ties by id ascending."""
    if len(scores) > k:
        # Everything tied with the k-th score stays in, so the id order decides among them.
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = np.flatnonzero(scores >= kth)
    else:
        keep = np.arange(len(scores))
    order = np.lexsort((ids[keep], -scores[keep]))
    return keep[order[:k]]
