"""kernels.wsbr_search (one call: select, then the int8 pass) against the two calls it fuses,
kernels.wsbr_select then kernels.topk_blocks_int8, bit for bit, on every ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from block_cases import int8_row_copy

from pomaidb_core import kernels, wsbr, wsbr_build
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.options import IndexParams

METRICS = ["ip", "cosine", "l2"]


def _segment(metric: str, n: int = 3000, dim: int = 96, seed: int = 0):
    """(stored rows, index, row arguments with sign codes) of a built segment."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim), dtype=np.float32)
    vectors = centres[rng.integers(0, 30, n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    order, index = wsbr.build_index(vectors, metric, IndexParams(wsbr_block_size=16))
    stored = np.ascontiguousarray(vectors[order])
    return stored, index, int8_row_copy(stored, metric, index.mu)


def _tables(stored, index, rows, signs=True) -> kernels.SegmentTables:
    return kernels.SegmentTables(stored, index.metric, index.block_table, index.mu,
                                 index.projection, index.signatures, index.centroids, index.alpha,
                                 index.beta, index.level, rows["codes"], rows["scale"],
                                 rows["residual"], rows["norm"], rows["signs"] if signs else None)


def _two_calls(stored, index, rows, queries, routing, k, top, widen, query_signs, mask=None):
    """The two calls' answer, or None where wsbr_search must leave a masked query to widen."""
    selected = kernels.wsbr_select(routing, queries, mu=index.mu, projection=index.projection,
                                   signatures=index.signatures, centroids=index.centroids,
                                   alpha=index.alpha, beta=index.beta, level=index.level,
                                   l2=index.metric == "l2", top=top, widen=widen)
    if mask is not None:
        allowed = _allowed(index, mask)
        if (allowed[selected].sum(axis=1) < min(int(allowed.sum()), k)).any():
            return None
    ptr = np.arange(len(queries) + 1, dtype=np.int64) * selected.shape[1]
    return kernels.topk_blocks_int8(
        stored, queries, k, index.metric, mask, block_ranges=index.block_ranges, ptr=ptr,
        blocks=np.ascontiguousarray(selected.reshape(-1)), codes=rows["codes"],
        scale=rows["scale"], residual=rows["residual"], norm=rows["norm"],
        signs=None if query_signs is None else rows["signs"], query_signs=query_signs,
        sign_sigmas=3.0, keep_min=4 * k)


def _allowed(index, mask) -> np.ndarray:
    return np.add.reduceat(mask.astype(np.int64), index.block_offsets[:-1])


def _eight_bit(index):
    """The index with its centroid table as sidecars held it before the 4-bit one: the same
    directions at 16 times the scale (values beyond [-8, 7], so never packed)."""
    wide = index.with_defaults(index.top_blocks, index.widen_blocks)
    wide.centroids = index.centroids * np.int8(16)
    wide.alpha = index.alpha / np.float32(16)
    return wide


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("k", "top", "widen"), [(1, 1, 0), (10, 12, 84), (10, 40, 0), (25, 60, 500)])
@pytest.mark.parametrize(("centroid_bits", "allowed_share"),
                         [(4, None), (4, 0.5), (4, 0.002), (8, None), (8, 0.5)])
def test_one_call_answers_as_select_then_int8_pass(isa, metric, k, top, widen, allowed_share,
                                                   centroid_bits):
    # 4-bit centroid tables are scored from their packing, 8-bit ones as they are; the two
    # calls score both unpacked.
    stored, index, rows = _segment(metric)
    if centroid_bits == 8:
        index = _eight_bit(index)
    rng = np.random.default_rng(k + top)
    queries = stored[rng.integers(0, len(stored), 7)] + rng.standard_normal((7, stored.shape[1]),
                                                                          dtype=np.float32)
    routing = np.ascontiguousarray(wsbr.routing_rows(queries, metric), dtype=np.float32)
    mask = None if allowed_share is None else rng.random(len(stored)) < allowed_share
    tables = _tables(stored, index, rows)
    assert tables.packed_bytes == (index.n_blocks * 64 if centroid_bits == 4 else 0)  # dim 96
    for query_signs in (None, wsbr_build.sign_codes(routing, index.mu)):
        fused = kernels.wsbr_search(tables, routing, queries, k, top=top, widen=widen,
                                    query_signs=query_signs, keep_min=4 * k, mask=mask,
                                    allowed=None if mask is None else _allowed(index, mask))
        expected = _two_calls(stored, index, rows, queries, routing, k, top, widen, query_signs,
                              mask)
        if expected is None:  # a query's blocks hold too few allowed rows: the caller widens
            assert fused is None
            continue
        np.testing.assert_array_equal(fused[1], expected[1])
        np.testing.assert_array_equal(fused[0], expected[0])


def test_search_segment_answers_as_before_the_fused_call():
    # search_segment takes the one call for unmasked few-query searches; the two calls with the
    # same budget, and an exact re-score, must agree with it.
    stored, index, _ = _segment("cosine", seed=3)
    assert index.rows.signs is None  # (with them the sign stage scores a subset of the blocks)
    queries = stored[:5] + 0.1
    fused = wsbr.search_segment(stored, index, queries, 10, "cosine")
    routed = wsbr.route(index, queries, 10)
    for j, blocks in enumerate(routed):
        rows = np.concatenate([np.arange(*index.block_ranges[b]) for b in blocks])
        exact = kernels.topk(stored[rows], queries[j : j + 1], 10, "cosine")
        np.testing.assert_array_equal(fused[1][j], rows[exact[1][0]])
        np.testing.assert_array_equal(fused[0][j], exact[0][0])


def test_a_masked_search_widens_where_the_one_call_falls_short():
    # Six allowed rows: most selections hold none of them, so search_segment widens (past
    # wsbr_search's answer of None) until each query has them all, as exact search finds.
    stored, index, _ = _segment("cosine", seed=5)
    mask = np.zeros(len(stored), bool)
    mask[[3, 500, 1200, 1800, 2500, 2999]] = True
    queries = stored[10:14] + 0.05
    scores, found = wsbr.search_segment(stored, index, queries, 10, "cosine", mask=mask)
    exact = kernels.topk(stored, queries, 10, "cosine", mask=mask)
    np.testing.assert_array_equal(found, exact[1])
    np.testing.assert_array_equal(scores, exact[0])


def test_tables_refuse_what_does_not_match_and_signs_they_lack():
    stored, index, rows = _segment("ip", n=600)
    routing = np.ascontiguousarray(stored[:2])
    with pytest.raises(InvalidArgumentError, match="blocks but signatures"):
        kernels.SegmentTables(stored, "ip", kernels.BlockRanges(index.block_ranges[:-1], len(stored)),
                              index.mu, index.projection,
                              index.signatures, index.centroids, index.alpha, index.beta,
                              index.level, rows["codes"], rows["scale"], rows["residual"],
                              rows["norm"])
    with pytest.raises(InvalidArgumentError, match="codes must have the vectors' shape"):
        kernels.SegmentTables(stored, "ip", index.block_table, index.mu, index.projection,
                              index.signatures, index.centroids, index.alpha, index.beta,
                              index.level, rows["codes"][:-1], rows["scale"], rows["residual"],
                              rows["norm"])
    unsigned = _tables(stored, index, rows, signs=False)
    assert not unsigned.has_signs and _tables(stored, index, rows).has_signs
    with pytest.raises(InvalidArgumentError, match="no sign codes"):
        kernels.wsbr_search(unsigned, routing, routing, 3, top=4, widen=8,
                            query_signs=wsbr_build.sign_codes(routing, index.mu))
    with pytest.raises(InvalidArgumentError, match="need top >= 1"):
        kernels.wsbr_search(unsigned, routing, routing, 3, top=0, widen=8)
    with pytest.raises(InvalidArgumentError, match="routing_queries must have 2 rows"):
        kernels.wsbr_search(unsigned, routing[:1], routing, 3, top=4, widen=8)
    mask = np.ones(len(stored), bool)
    with pytest.raises(InvalidArgumentError, match="allowed must be a numpy array"):
        kernels.wsbr_search(unsigned, routing, routing, 3, top=4, widen=8, mask=mask)
    with pytest.raises(InvalidArgumentError, match="allowed must have"):
        kernels.wsbr_search(unsigned, routing, routing, 3, top=4, widen=8, mask=mask,
                            allowed=np.zeros(index.n_blocks + 1, np.int64))
    with pytest.raises(InvalidArgumentError, match="mask has"):
        kernels.wsbr_search(unsigned, routing, routing, 3, top=4, widen=8, mask=mask[1:],
                            allowed=_allowed(index, mask))


def _many_calls(count: int = 6):
    """`count` calls over three segments of every metric, with and without masks and signs."""
    calls = []
    for i in range(count):
        metric = METRICS[i % 3]
        stored, index, rows = _segment(metric, n=1500 + 300 * i, seed=20 + i)
        rng = np.random.default_rng(i)
        queries = stored[rng.integers(0, len(stored), 3)] + 0.2
        routing = np.ascontiguousarray(wsbr.routing_rows(queries, metric), dtype=np.float32)
        signed = i % 2 == 0
        mask = rng.random(len(stored)) < 0.7 if i % 3 == 1 else None
        calls.append(kernels.WsbrCall(
            _tables(stored, index, rows), routing, queries,
            wsbr_build.sign_codes(routing, index.mu) if signed else None, 5 + i, 8 + 2 * i, 30,
            3.0, 20, mask, None if mask is None else _allowed(index, mask)))
    return calls


def _same(found, expected):
    assert (found is None) == (expected is None)
    if expected is not None:
        np.testing.assert_array_equal(found[0], expected[0])
        np.testing.assert_array_equal(found[1], expected[1])


@pytest.mark.parametrize("helpers", [0, 1, 3, 50])
def test_many_calls_answer_as_each_call_alone(isa, helpers):
    calls = _many_calls()
    alone = [kernels.wsbr_search(c.tables, c.routing_queries, c.queries, c.k, top=c.top,
                                 widen=c.widen, query_signs=c.query_signs,
                                 sign_sigmas=c.sign_sigmas, keep_min=c.keep_min, mask=c.mask,
                                 allowed=c.allowed) for c in calls]
    for _ in range(20):  # helpers take tasks in whatever order the threads run
        for found, expected in zip(kernels.wsbr_search_many(calls, helpers), alone):
            _same(found, expected)
    assert kernels.wsbr_search_many([], helpers) == []


def test_many_callers_share_the_pool():
    # Callers on several threads offer their tasks to the same helpers: each gets its own
    # answers, and no caller waits for a helper another caller keeps busy.
    import threading

    calls = _many_calls(4)
    expected = kernels.wsbr_search_many(calls, 0)
    failures = []

    def caller(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(calls))
        for _ in range(30):
            found = kernels.wsbr_search_many([calls[i] for i in order], kernels.pool_helpers())
            try:
                for f, i in zip(found, order):
                    _same(f, expected[i])
            except AssertionError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_a_forked_child_searches_with_a_pool_of_its_own():
    # The parent's helpers do not exist in a forked child: the child must start its own
    # pool (or deadlock offering work to threads that are gone).
    import os
    import time

    calls = _many_calls(4)
    expected = kernels.wsbr_search_many(calls, 1)  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only for the same answers
        status = 1
        try:
            for f, e in zip(kernels.wsbr_search_many(calls, 1), expected):
                _same(f, e)
            status = 0
        finally:
            os._exit(status)
    deadline = time.monotonic() + 60
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if ended[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert ended[0] == pid and os.waitstatus_to_exitcode(ended[1]) == 0


def test_many_calls_refuse_what_one_call_refuses():
    calls = _many_calls(2)
    with pytest.raises(InvalidArgumentError, match="helpers must be an int >= 0"):
        kernels.wsbr_search_many(calls, -1)
    bad = calls[1]._replace(routing_queries=calls[1].routing_queries[:1])
    with pytest.raises(InvalidArgumentError, match="routing_queries must have 3 rows"):
        kernels.wsbr_search_many([calls[0], bad], 1)
    with pytest.raises(InvalidArgumentError, match="need top >= 1"):
        kernels.wsbr_search_many([calls[0]._replace(top=0)], 1)
    with pytest.raises(InvalidArgumentError, match="k must be an int, got float"):
        kernels.wsbr_search_many([calls[0]._replace(k=10.0)], 1)
    with pytest.raises(InvalidArgumentError, match="widen must be an int, got bool"):
        kernels.wsbr_search_many([calls[0]._replace(widen=True)], 1)
    # a 1-d query is a batch of one
    one = calls[0]._replace(queries=calls[0].queries[0],
                            routing_queries=calls[0].routing_queries[:1],
                            query_signs=calls[0].query_signs[:1])
    _same(kernels.wsbr_search_many([one], 1)[0],
          kernels.wsbr_search_many([one._replace(queries=calls[0].queries[:1])], 0)[0])
