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

from . import kernels


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
    if live.all():  # a compacted segment that nothing newer shadows: no per-row work
        documents, total_length = keywords.totals()
        return CorpusStats(documents, total_length, tuple(len(keywords.postings(t)[0])
                                                          for t in terms))
    documents = int(np.count_nonzero(keywords.has_text() & live))
    df = tuple(int(np.count_nonzero(live[keywords.postings(t)[0]])) for t in terms)
    return CorpusStats(documents, float(np.sum(keywords.doc_lengths(), where=live)), df)


def score_layer(keywords, allowed: np.ndarray, terms: list[str], stats: CorpusStats,
                k1: float, b: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of this layer's k best rows where `allowed` holds, with every row tied
    with the k-th (ties are broken by id, which only the caller knows).

    MaxScore (Turtle & Flood 1995), document at a time, in C++ (kernels.bm25_top_rows): each
    term's upper bound comes from the largest tf and the shortest document of its postings;
    once the k-th best score so far exceeds the summed bounds of the least important terms,
    their postings are only probed for rows the other terms bring, never scanned.
    """
    avg = stats.avg_length() or 1.0
    rows, tfs, idfs, bounds = [], [], [], []
    for term, idf in zip(terms, stats.idf().tolist()):
        term_rows, tf = keywords.postings(term)
        if len(term_rows):
            max_tf, min_len = keywords.bounds(term)
            rows.append(np.asarray(term_rows, dtype=np.uint32))  # a view for segments
            tfs.append(np.asarray(tf, dtype=np.uint32))
            idfs.append(idf)
            bounds.append(idf * max_tf * (k1 + 1.0) / (max_tf + k1 * (1.0 - b + b * min_len / avg)))
    return kernels.bm25_top_rows(rows, tfs, np.array(idfs, dtype=np.float64),
                                 np.array(bounds, dtype=np.float64), keywords.doc_lengths(),
                                 allowed, k1=k1, b=b, avg_length=avg, k=k)


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
