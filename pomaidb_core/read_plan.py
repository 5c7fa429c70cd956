"""Read plans: a membrane's segments in every shard, searched without visiting the shards.

A search through the shards (Shard.read, MembraneState.search, then a merge) costs about
30 us of Python a shard around its kernels: the shard's lock, its memtables and segments,
each segment's ranker, its hits ranked and cut to k, then merged again across shards. Once
ingest settles, a read-mostly membrane holds no memtable rows, and its segments change only
when a shard applies a write, freezes, installs, compacts or drops, each under the shard's
exclusive lock, which counts it (RWLock.generation). A plan lists the segments every shard
would search, with the masks and budget shares MembraneState.search gives them, and the
generations it saw.

A search by plan takes every shard's shared lock in shard order and checks the generations.
If none changed, the shards hold what the plan lists, so searching its segments with the
same kernel calls (layers.search_segments) and ranking all their hits by the same order gives
the shards' answer; what a write acknowledged before the search changed, it changed under the
exclusive lock, so the plan is stale then. Holding several shared locks cannot deadlock: a
shard's writer takes only its own lock and waits for nothing else inside it, and readers take
them in one order. The locks stay held until the hits' payloads are decoded, so no segment
is retired under a search. If a generation changed, the caller searches through the shards
(which a filtered or exact search always does) and a later search builds a new plan.

The segments' kernel calls run in one call into the kernels (kernels.wsbr_search_many), on
the calling thread and, where the plan holds POOL_MIN_ROWS rows and the read fan-out finds
cores no other search is using (ReadFanout.borrow), on that many threads of the kernels' task
pool. Handing segments to Python threads did not pay at these sizes (fanout.py); the pool's
helpers poll for work between searches, and a query of pypi-100k's four 25k-row segments went
from 0.37 to 0.18 ms of kernels with one helper (2 cores, the same answers).

A plan refers to its segments weakly: while it is current the shards hold them, and once a
compaction or drop retires them, a stale plan that no search replaces must not keep their
mapped (and unlinked) files, and the disk space under them, alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import kernels
from .layers import LiveSegment, SearchParams, read_payloads, search_segments

if TYPE_CHECKING:
    from .shard import Shard


# Rows a plan holds before its segments are searched on several threads: measured on 2 cores,
# four segments of 2,000 rows took 0.79 of the serial time, of 6,000 rows 0.63, of 25,000
# (pypi-100k) 0.63, of 250,000 (1M x 384) 0.55. Below, a segment's search is a few
# microseconds, less than handing it over.
POOL_MIN_ROWS = 4_000


class PlanPart(NamedTuple):
    segment: weakref.ref[LiveSegment]
    mask: np.ndarray | None  # rows a search may return (None: every row)
    share: float  # of the rows searched, which sets the segment's WSBR budget
    rows: int


class ReadPlan:
    """One membrane's segments across `shards`, as of their `generations`. `parts` is None
    when some shard held memtable rows then: searches go through the shards until a
    generation changes."""

    def __init__(self, shards: Sequence[Shard], generations: Sequence[int],
                 parts: list[PlanPart] | None, metric: str) -> None:
        self.shards = list(shards)
        self.generations = list(generations)
        self.parts = parts
        self.metric = metric
        self.rows = sum(part.rows for part in parts or [])

    def helpers_wanted(self) -> int:
        """Threads of the kernels' pool worth handing this plan's segments to: one segment
        each, where the plan holds POOL_MIN_ROWS rows."""
        if not self.parts or self.rows < POOL_MIN_ROWS:
            return 0
        return min(len(self.parts) - 1, kernels.pool_helpers())

    def stale(self) -> bool:
        return any(shard.generation != seen for shard, seen in zip(self.shards, self.generations))

    def search(self, queries: np.ndarray, params: SearchParams,
               helpers: int) -> list[list[tuple]] | None:
        """Per query the k best (score, id, metadata, text), best first; None when the
        plan is stale (the caller asks the shards). The segments are searched at once, on
        this thread and up to `helpers` threads of the kernels' pool."""
        parts = self.parts
        if parts is None:
            return None
        taken = []
        try:
            for shard, seen in zip(self.shards, self.generations):
                side = shard.reading()
                side.__enter__()
                taken.append(side)
                if shard.generation != seen:
                    return None
            if not parts:  # no segment in any shard: merge_ranked would see no query
                return [[] for _ in range(len(queries))]
            segments = [part.segment() for part in parts]  # alive: the shards hold them
            assert all(segments), "a current plan's segments are the shards' own"
            found = search_segments([(seg, part.mask, part.share)
                                     for seg, part in zip(segments, parts)],
                                    queries, params.k, self.metric, params, helpers)
            merged = kernels.merge_ranked([(scores, rows, seg.reader.ids)
                                           for (scores, rows), seg in zip(found, segments)],
                                          params.k)
            return [read_payloads([(score, key, segments[part], row)
                                   for score, key, part, row in zip(*hits) if part >= 0])
                    for hits in zip(*(column.tolist() for column in merged))]
        finally:
            for side in reversed(taken):
                side.__exit__(None, None, None)


def build(shards: Sequence[Shard], read: Callable[[int], tuple[int, list | None]],
          metric: str) -> ReadPlan:
    """The plan of what read(shard) reports: that shard's generation and its part
    (Shard._do_plan_part, read under its shared lock)."""
    generations, parts = [], []
    complete = True
    for index in range(len(shards)):
        generation, part = read(index)
        generations.append(generation)
        if part is None:
            complete = False
            break
        parts += [PlanPart(weakref.ref(seg), mask, share, seg.reader.n)
                  for seg, mask, share in part]
    generations += [shard.generation for shard in shards[len(generations) :]]
    return ReadPlan(shards, generations, parts if complete else None, metric)
