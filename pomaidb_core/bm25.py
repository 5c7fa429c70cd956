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
    if live.all():  # a compacted segment that nothing newer shadows: no per-row work
        df = tuple(len(keywords.postings(t)[0]) for t in terms)
        return CorpusStats(int(np.count_nonzero(keywords.has_text())),
                           float(keywords.doc_lengths().sum()), df)
    documents = int(np.count_nonzero(keywords.has_text() & live))
    df = tuple(int(np.count_nonzero(live[keywords.postings(t)[0]])) for t in terms)
    return CorpusStats(documents, float(np.sum(keywords.doc_lengths(), where=live)), df)


@dataclass(frozen=True)
class _TermList:
    idf: float
    rows: np.ndarray  # ascending, only rows the search may return
    tf: np.ndarray
    bound: float  # no row of this list gets more than this from the term


def score_layer(keywords, allowed: np.ndarray, terms: list[str], stats: CorpusStats,
                k1: float, b: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of rows where `allowed` holds: every row that can reach this layer's top k.

    MaxScore (Turtle & Flood 1995), in whole-array steps: the rarest term's rows are scored
    first, and their k-th best score is a threshold no top-k row scores below. The terms
    whose upper bounds (from the largest tf and the shortest document of their postings)
    add up to less than it are *non-essential*: a row holding only those cannot reach the
    top k, so only the essential terms' rows are candidates, and the common terms'
    postings are merely probed (binary search) for them, never scanned.
    """
    avg = stats.avg_length() or 1.0
    lists = []
    everything = allowed.all()
    for term, idf in zip(terms, stats.idf().tolist()):
        rows, tf = keywords.postings(term)
        if not everything:
            keep = allowed[rows]
            rows, tf = rows[keep], tf[keep]
        if len(rows):
            max_tf, min_len = keywords.bounds(term)
            bound = idf * max_tf * (k1 + 1.0) / (max_tf + k1 * (1.0 - b + b * min_len / avg))
            lists.append(_TermList(idf, rows, tf, bound))
    if not lists:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    lengths = keywords.doc_lengths()

    def contribution(item: _TermList, at: np.ndarray, tf: np.ndarray) -> np.ndarray:
        return item.idf * (tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * lengths[at] / avg)))

    def add_probed(total: np.ndarray, item: _TermList, rows: np.ndarray) -> None:
        """total[i] += the term's contribution to rows[i], wherever rows[i] holds the term."""
        pos = np.minimum(np.searchsorted(item.rows, rows), len(item.rows) - 1)
        present = np.flatnonzero(item.rows[pos] == rows)
        total[present] += contribution(item, rows[present], item.tf[pos[present]])

    # Every score below is a sum of contributions in query-term order: the same float for a
    # row in any layer, shard or segment layout.
    seed = max(lists, key=lambda item: item.idf).rows
    seed_scores = np.zeros(len(seed), dtype=np.float64)
    for item in lists:
        add_probed(seed_scores, item, seed)
    threshold = np.partition(seed_scores, len(seed) - k)[len(seed) - k] if len(seed) >= k else 0.0
    by_bound = sorted(lists, key=lambda item: item.bound)
    skipped = {id(item) for item, low in
               zip(by_bound, np.cumsum([item.bound for item in by_bound]) < threshold) if low}
    marked = np.zeros(len(allowed), dtype=bool)
    marked[seed] = True
    total = np.zeros(len(allowed), dtype=np.float64)
    for item in lists:
        if id(item) not in skipped:
            marked[item.rows] = True
    candidates = np.flatnonzero(marked).astype(seed.dtype)  # searchsorted without casts
    for item in lists:
        if id(item) in skipped:
            probed = np.zeros(len(candidates), dtype=np.float64)
            add_probed(probed, item, candidates)
            total[candidates] += probed
        else:
            total[item.rows] += contribution(item, item.rows, item.tf)
    return candidates, total[candidates]


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
