"""bm25.score_layer over one segment's keyword index, against the numpy reference."""

from __future__ import annotations

import numpy as np

from pomaidb_core import analyzer, bm25, keyword_index
from pomaidb_core.errors import CorruptionError
from tests.bm25_reference import bm25_scores, top

TEXTS = [f"alpha beta {'gamma ' * (i % 4)}doc{i % 7} common" for i in range(300)] + [None]


def _layer():
    analyze = analyzer.analyzer()
    data = keyword_index.encode(TEXTS, analyze)
    keywords = keyword_index.SegmentKeywords(memoryview(data), len(TEXTS), CorruptionError)
    docs = {i: analyze(t) for i, t in enumerate(TEXTS) if t is not None}
    return keywords, docs


def test_only_the_top_k_and_its_ties_come_back_with_reference_scores():
    keywords, docs = _layer()
    query = ["gamma", "doc3", "common", "absent"]
    live = np.ones(len(TEXTS), dtype=bool)
    stats = bm25.layer_stats(keywords, live, query)
    rows, scores = bm25.score_layer(keywords, live, query, stats, 1.2, 0.75, 5)
    reference = bm25_scores(docs, query)
    kth = top(reference, 5)[-1][1]
    expected = sorted(i for i, s in reference.items() if s >= kth - 1e-12)
    assert rows.tolist() == expected  # not every candidate: the rest were pruned
    np.testing.assert_allclose(scores, [reference[r] for r in expected], rtol=1e-12)


def test_rows_outside_the_allowed_mask_are_never_returned():
    keywords, docs = _layer()
    allowed = np.zeros(len(TEXTS), dtype=bool)
    allowed[::3] = True
    stats = bm25.layer_stats(keywords, np.ones(len(TEXTS), dtype=bool), ["doc1", "gamma"])
    rows, _ = bm25.score_layer(keywords, allowed, ["doc1", "gamma"], stats, 1.2, 0.75, 1000)
    want = sorted(i for i in bm25_scores(docs, ["doc1", "gamma"]) if i % 3 == 0)
    assert rows.tolist() == want
