"""Compaction: merge runs of adjacent segments of one membrane in one shard, bounded in size.

Size-tiered, after RocksDB's universal compaction. A shard's segments of a
membrane form a stack, newest first. A compaction merges a *run* of adjacent
segments into one segment that takes the run's place in the stack, so the
stack's order (newest wins) is kept whatever lies above or below the run:

* automatic: the whole stack when the newer segments add up to a quarter of the oldest
  one or more (RocksDB's size-amplification trigger) and it fits the bound; else
  the newest run of `compaction_trigger` adjacent segments of the
  same size tier (rows within a factor of `_TIER_BASE`), or, when a shard holds
  more than `_MAX_SEGMENTS_PER_TRIGGER` times the trigger, the newest such run
  whatever the tiers; a run never totals more than `max_segment_rows`, so a
  segment's size (and a build's time and memory) stays bounded and no
  compaction rewrites a whole large shard at once;
* forced (`db.compact()`): oldest first, adjacent segments are grouped into runs
  of at most `max_segment_rows`; each run of two or more segments, one segment
  holding dead rows, or one of an older file format, is rewritten, one run after
  another.

Inside a run, rows overridden by a newer segment of the run are dropped, and so
are tombstones when the run reaches the bottom of the stack (nothing older is
left for them to hide); otherwise tombstones are kept.
"""

from __future__ import annotations

import math

import numpy as np

from .layers import LiveSegment
from .segment import FORMAT_VERSION

_TIER_BASE = 4
# Every query routes each segment: once the newer segments hold this share of the oldest
# one's rows, merging the whole (bounded) stack is cheaper than searching it as it is.
_SIZE_AMPLIFICATION_PERCENT = 25
_MAX_SEGMENTS_PER_TRIGGER = 4


def pick_run(segments: list[LiveSegment], trigger: int, max_rows: int,
             forced: bool) -> tuple[int, int] | None:
    """[start, end) positions (newest first) of the segments to merge next, or None."""
    if forced:
        return _forced_run(segments, max_rows)
    rows = [seg.meta.rows for seg in segments]
    if (len(rows) >= 2 and sum(rows) <= max_rows
            and 100 * sum(rows[:-1]) >= _SIZE_AMPLIFICATION_PERCENT * rows[-1]):
        return 0, len(rows)  # the newer segments add up to half the oldest: merge them all
    tiers = [int(math.log(max(r, 1), _TIER_BASE)) for r in rows]
    crowded = len(segments) > _MAX_SEGMENTS_PER_TRIGGER * trigger
    for start in range(len(segments) - trigger + 1):
        end = start + trigger
        if sum(rows[start:end]) > max_rows:
            continue
        if crowded or len(set(tiers[start:end])) == 1:
            return start, end
    return None


def _forced_run(segments: list[LiveSegment], max_rows: int) -> tuple[int, int] | None:
    end = len(segments)
    while end > 0:
        start, total = end - 1, segments[end - 1].meta.rows
        while start > 0 and total + segments[start - 1].meta.rows <= max_rows:
            start -= 1
            total += segments[start].meta.rows
        only = segments[start]
        at_bottom = end == len(segments)  # only there can a rewrite drop its tombstones
        if (end - start >= 2 or (at_bottom and only.meta.live_rows < only.meta.rows)
                or only.reader.format_version < FORMAT_VERSION):
            return start, end
        end = start
    return None


def merged_rows(run: list[LiveSegment], at_bottom: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """(ids, tombstones, vectors, metadatas, texts) of the run's newest version of each id.

    Tombstones are dropped only `at_bottom`: above it they still hide older segments.
    """
    ids_parts, tomb_parts, vector_parts, metadatas, texts = [], [], [], [], []
    newer: list[np.ndarray] = []
    for seg in run:
        ids = np.asarray(seg.reader.ids)
        keep = np.ones(len(ids), dtype=bool)
        for other in newer:
            keep &= ~np.isin(ids, other, assume_unique=True)
        tombstones = np.asarray(seg.reader.tombstones, dtype=bool)
        if at_bottom:
            keep &= ~tombstones
        rows = np.flatnonzero(keep)
        ids_parts.append(ids[rows])
        tomb_parts.append(tombstones[rows])
        vector_parts.append(np.asarray(seg.reader.vectors)[rows])
        metadatas.extend(seg.reader.metadata(rows.tolist()))
        texts.extend(seg.reader.texts(rows.tolist()))
        newer.append(ids)
    dim = run[0].reader.dim
    return (np.concatenate(ids_parts), np.concatenate(tomb_parts),
            np.ascontiguousarray(np.concatenate(vector_parts), dtype=np.float32).reshape(-1, dim),
            metadatas, texts)
