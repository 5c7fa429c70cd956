"""Keyword search over one membrane's layers in one shard: the two phases of a BM25 query.

Phase 1 (`stats`): this shard's share of the corpus statistics for the query terms, over
its live records (newest-wins, tombstones respected, filters ignored: a filter narrows
what is ranked, not the corpus it is ranked in). The caller sums every shard's share.
Phase 2 (`search`): every live record that matches the filter and holds a query term,
scored with the membrane-wide statistics; this shard's best k.

Reads only: runs on any thread that holds the shard's read lock (shard.read).
"""

from __future__ import annotations

import numpy as np

from . import bm25
from .filters import Filter
from .layers import LiveSegment, MembraneState
from .memtable import Memtable
from .options import IndexParams
from .results import rank_hits


def _keywords(layer, params: IndexParams):
    if isinstance(layer, Memtable):
        return layer.keywords(params.analyzer())
    assert isinstance(layer, LiveSegment)
    return layer.reader.keywords


def _ids(layer) -> np.ndarray:
    return layer.view_ids() if isinstance(layer, Memtable) else layer.reader.ids


def stats(state: MembraneState, terms: list[str]) -> bm25.CorpusStats:
    params = IndexParams.from_dict(state.meta.index)
    parts = [bm25.layer_stats(_keywords(layer, params), mask, terms)
             for layer, mask in state.live_masks(None)]
    return bm25.CorpusStats.total(parts) if parts else bm25.CorpusStats(0, 0.0, (0,) * len(terms))


def search(state: MembraneState, terms: list[str], corpus: bm25.CorpusStats, k: int,
           flt: Filter | None) -> list[tuple[float, int, object, int]]:
    """Up to k (score, id, layer, row), best first, ties by id."""
    params = IndexParams.from_dict(state.meta.index)
    found: list[tuple[float, int, object, int]] = []
    for layer, mask in state.live_masks(flt):
        if len(mask) == 0:
            continue
        hit, scores = bm25.score_layer(_keywords(layer, params), mask, terms,
                                       corpus, params.bm25_k1, params.bm25_b, k)
        ids = _ids(layer)[hit]
        found.extend((float(scores[pos]), int(ids[pos]), layer, int(hit[pos]))
                     for pos in bm25.top_k(ids, scores, k).tolist())
    rank_hits(found)
    return found[:k]
