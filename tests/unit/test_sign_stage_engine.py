"""The WSBR sign stage through the engine, on real embeddings: a 100k-row segment keeps its
sign codes (a version 3 sidecar) and its searches hold up against exact search, with
tombstones (a mask letting most rows through, so the stage runs), a selective filter (which
skips it), a batch, and a read-only reopen."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import wsbr

PYPI = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "pypi-100k")
pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(PYPI, "base.f16.npy")),
                                reason="needs ../shared/data/pypi-100k (CI has it)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = np.load(os.path.join(PYPI, "base.f16.npy")).astype(np.float32)
    queries = np.load(os.path.join(PYPI, "queries.f16.npy"))[:60].astype(np.float32)
    path = tmp_path_factory.mktemp("signs") / "db"
    deleted = np.arange(0, len(base), 20)  # 5%: tombstones in the segment's mask
    with pdb.open(path, shards=1) as db:
        m = db.create_membrane("m", dim=base.shape[1], metric="cosine")
        m.put_batch(np.arange(len(base)), base, [{"tag": int(i % 10)} for i in range(len(base))])
        db.freeze()
        db.compact()
        m.delete_batch(deleted)
        db.freeze()
    return path, base, queries, deleted


def _exact(base: np.ndarray, query: np.ndarray, live: np.ndarray, k: int = 10) -> set[int]:
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    scores[~live] = -np.inf
    return set(np.argsort(-scores)[:k].tolist())


def test_a_large_segment_of_embeddings_keeps_sign_codes(corpus):
    path, *_ = corpus
    heads = [open(f, "rb").read(12)
             for f in glob.glob(os.path.join(path, "shard_*", "segments", "*.wsbr"))]
    # version 4 with flag bit 0 (row_signs), or version 3 (before the int4 row copy)
    signed = [(head[4:6] == b"\x04\x00" and head[10] & 1) or head[4:6] == b"\x03\x00"
              for head in heads]
    assert any(signed), heads


def test_searches_hold_against_exact_search_and_agree_in_a_batch_and_after_reopen(corpus,
                                                                                   monkeypatch):
    path, base, queries, deleted = corpus
    staged = []  # per scan of a segment: did the sign stage run?

    def recording(scan):
        def scanned(*args, **kwargs):
            staged.append(kwargs.get("signs") is not None)
            return scan(*args, **kwargs)
        return scanned

    def recording_calls(search):
        def searched(calls, helpers):
            staged.extend(call.query_signs is not None for call in calls)
            return search(calls, helpers)
        return searched

    # a segment is scanned by topk_blocks_int8, or by wsbr_search (through wsbr_search_many),
    # which selects its blocks too
    monkeypatch.setattr(wsbr, "topk_blocks_int8", recording(wsbr.topk_blocks_int8))
    monkeypatch.setattr(wsbr, "wsbr_search_many", recording_calls(wsbr.wsbr_search_many))
    live = np.ones(len(base), dtype=bool)
    live[deleted] = False
    with pdb.open(path, read_only=True) as db:
        m = db.membrane("m")
        found = [m.search(q, k=10) for q in queries]
        batch = m.search_batch(queries, k=10)
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in found]
        recall = np.mean([len({h.id for h in hits} & _exact(base, q, live)) / 10
                          for hits, q in zip(found, queries)])
        assert recall >= 0.95
        assert not {h.id for hits in found for h in hits} & set(deleted.tolist())
        assert any(staged), "the tombstoned segment was not searched through the sign stage"
        staged.clear()
        tagged = live & (np.arange(len(base)) % 10 == 3)
        for q in queries[:20]:
            hits = m.search(q, k=10, filter={"tag": 3})
            assert len(hits) == 10 and all(h.metadata["tag"] == 3 for h in hits)
            assert len({h.id for h in hits} & _exact(base, q, tagged)) >= 8
        assert not any(staged), "a 10% filter went through the sign stage"
    with pdb.open(path, read_only=True) as db:
        again = [db.membrane("m").search(q, k=10) for q in queries[:10]]
        assert [[h.id for h in hits] for hits in again] == [[h.id for h in hits] for hits in found[:10]]
