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
same calls (layers.search_segment) and ranking all their hits by the same order gives the
shards' answer; what a write acknowledged before the search changed, it changed under the
exclusive lock, so the plan is stale then. Holding several shared locks cannot deadlock: a
shard's writer takes only its own lock and waits for nothing else inside it, and readers take
them in one order. The locks stay held until the hits' payloads are decoded, so no segment
is retired under a search. If a generation changed, the caller searches through the shards
(which a filtered or exact search always does) and a later search builds a new plan.

A plan refers to its segments weakly: while it is current the shards hold them, and once a
compaction or drop retires them, a stale plan that no search replaces must not keep their
mapped (and unlinked) files, and the disk space under them, alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .layers import LiveSegment, SearchParams, layer_hits, read_payloads, search_segment
from .results import merge_hits

if TYPE_CHECKING:
    from .fanout import ReadFanout
    from .shard import Shard


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

    def stale(self) -> bool:
        return any(shard.generation != seen for shard, seen in zip(self.shards, self.generations))

    def search(self, queries: np.ndarray, params: SearchParams, fan: ReadFanout,
               spread: bool) -> list[list[tuple]] | None:
        """Per query the k best (score, id, metadata, text), best first; None when the
        plan is stale (the caller asks the shards). `spread`: segments are searched on the
        fan's idle helpers too, as the shards would be."""
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
            segments = [part.segment() for part in parts]  # alive: the shards hold them
            assert all(segments), "a current plan's segments are the shards' own"
            if spread:  # a helper may outlive an interrupted wait, and so these locks
                for segment in segments:
                    segment.acquire()  # type: ignore[union-attr]
            search = self._searcher(segments, queries, params, spread)
            outcomes = fan.outcomes(search, len(parts), spread, discard=_keep)
            for outcome in outcomes:
                if outcome.error is not None:
                    raise outcome.error
            if not outcomes:  # no segment in any shard: merge_hits would see no query
                return [[] for _ in range(len(queries))]
            merged = merge_hits([outcome.value for outcome in outcomes], params.k)
            return [read_payloads(found) for found in merged]
        finally:
            for side in reversed(taken):
                side.__exit__(None, None, None)

    def _searcher(self, segments: list, queries: np.ndarray, params: SearchParams,
                  held: bool) -> Callable[[int], Any]:
        """Part `position`'s hits per query; `held`: its segment was acquired for this search,
        and is released here, each part searched exactly once (fanout.outcomes)."""
        def search(position: int) -> list[list[tuple]]:
            seg = segments[position]
            _, mask, share, _ = self.parts[position]  # type: ignore[index]
            try:
                scores, rows = search_segment(seg, queries, params.k, self.metric, mask, params,
                                              share)
                return layer_hits(scores, rows, seg.reader.ids, seg)
            finally:
                if held:
                    seg.release()

        return search


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


def _keep(_: Any) -> None:
    """Plan hits hold nothing a discarded read must let go (the caller holds the locks)."""
