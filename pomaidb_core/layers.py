"""One membrane's layers inside one shard, and every read over them.

Canonical order, newest first (design doc 002 section 4): the active memtable,
frozen memtables (newest first), then segments (newest first). The first layer
that knows an id decides: a live row is the answer, a tombstone hides every
older layer. Search, get, exists, count and scan all follow that one rule:

* Rows of a segment that a newer *segment* overrides are removed by a per-stack
  `live mask` (computed once per segment stack, not per query).
* Rows that a newer *memtable* overrides are removed after ranking: each layer
  is asked for a few more than k and ids found in newer memtables are skipped
  (memtables are small dicts, so this is cheap), widening if too many drop out.

Runs on the shard thread, except `Snapshot`, which a scan iterates elsewhere.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import cast

import numpy as np

from . import fs, kernels, wsbr
from .filters import Filter
from .manifest import MembraneMeta, SegmentMeta
from .memtable import ABSENT, LIVE, Memtable
from .results import Record, rank_hits
from .segment import SegmentReader

_FILTER_CACHE_SIZE = 8
_SEARCH_MASKS_KEPT = 64  # per membrane state: (segment, filter) pairs of search masks


def clone_metadata(value):
    """A private deep copy of JSON-shaped metadata (callers may mutate what they get)."""
    if isinstance(value, dict):
        return {k: clone_metadata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_metadata(v) for v in value]
    return value


class LiveSegment:
    """A segment file + its WSBR sidecar, shared by the manifest and any snapshots.

    Files are unlinked only when the segment is obsolete (compacted or dropped)
    *and* no snapshot still holds it.
    """

    def __init__(self, meta: SegmentMeta, reader: SegmentReader, index: wsbr.WsbrIndex,
                 paths: tuple[str, str]) -> None:
        self.meta = meta
        self.reader = reader
        self.index = index
        self.paths = paths
        self._refs = 1
        self._obsolete = False
        self._lock = threading.Lock()
        self._filter_masks: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def acquire(self) -> LiveSegment:
        with self._lock:
            self._refs += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            done = self._refs == 0 and self._obsolete
        if done:
            self._delete_files()

    def retire(self) -> None:
        """The manifest no longer lists this segment: drop the manifest's reference."""
        with self._lock:
            self._obsolete = True
        self.release()

    def _delete_files(self) -> None:
        self.reader.close()
        for path in self.paths:
            fs.unlink(path)

    def cached_masks(self) -> list[np.ndarray]:
        with self._lock:
            return list(self._filter_masks.values())

    def filter_mask(self, flt: Filter) -> np.ndarray:
        """Filter masks of immutable rows are cached under `flt.key`, equal only for filters
        that select the same rows (typed operands: "2024" and 2024 are different filters)."""
        key = flt.key
        with self._lock:
            mask = self._filter_masks.get(key)
            if mask is not None:
                self._filter_masks.move_to_end(key)
                return mask
        mask = flt.mask(self.reader.columns)
        with self._lock:
            self._filter_masks[key] = mask
            while len(self._filter_masks) > _FILTER_CACHE_SIZE:
                self._filter_masks.popitem(last=False)
        return mask


@dataclass
class SearchParams:
    k: int
    flt: Filter | None
    exact: bool
    top_blocks: int | None
    widen_blocks: int | None
    mode: str
    # The request's query matrix in the metric's routing space (wsbr.routing_rows), computed
    # once per request instead of once per segment; None: each segment computes it.
    routing: np.ndarray | None = None
    # Shards the search visits: ids spread evenly over them, so a shard's rows times this
    # estimate the rows searched, of which each segment's share sets its WSBR budget.
    shards: int = 1


@dataclass
class MembraneState:
    """Owned by the shard thread; frozen memtables and segments are immutable."""

    meta: MembraneMeta
    active: Memtable
    frozen: list[Memtable] = field(default_factory=list)  # newest first
    segments: list[LiveSegment] = field(default_factory=list)  # newest first
    # per segment: (stack mask, whether it lets every row through), one attribute so a
    # reader never sees half of a rebuild
    _stacks: list[tuple[np.ndarray, bool]] | None = None
    # (segment position, filter key) -> stack mask & filter mask, valid until set_segments.
    _search_masks: dict[tuple[int, object], np.ndarray] = field(default_factory=dict)

    def memtables(self) -> list[Memtable]:
        return [self.active, *self.frozen]

    def set_segments(self, segments: list[LiveSegment]) -> None:
        self.segments = segments
        self._stacks = None
        self._search_masks = {}

    def memory_bytes(self) -> int:
        """Anonymous memory this state holds: memtables, sidecar tables and cached masks.

        Segment rows are memory-mapped (file-backed) and not counted: the OS pages them.
        """
        held = sum(table.memory_bytes() for table in self.memtables())
        held += sum(seg.index.memory_bytes() for seg in self.segments)
        # list() copies in one step: readers may add search masks meanwhile.
        masks = [mask for mask, _ in self._stacks or []]
        masks += list(self._search_masks.values())
        masks += [m for seg in self.segments for m in seg.cached_masks()]
        return held + sum(mask.nbytes for mask in masks)

    def search_mask(self, position: int, flt: Filter | None) -> np.ndarray | None:
        """Rows of segment `position` a search may return: one array per filter, reused by
        every query (so per-query work never passes over all of a segment's rows); None when
        every row may (the kernels then skip a per-row test)."""
        stack_mask, full = self._stack_list()[position]
        if flt is None:
            return None if full else stack_mask
        masks = self._search_masks
        mask = masks.get((position, flt.key))
        if mask is None:
            if len(masks) >= _SEARCH_MASKS_KEPT:
                masks.clear()
            mask = stack_mask & self.segments[position].filter_mask(flt)
            masks[(position, flt.key)] = mask
        return mask

    def stack_masks(self) -> list[np.ndarray]:
        """Per segment: rows that are puts and not overridden by a newer segment."""
        return [mask for mask, _ in self._stack_list()]

    def _stack_list(self) -> list[tuple[np.ndarray, bool]]:
        stacks = self._stacks
        if stacks is None:
            stacks = [(mask, bool(mask.all())) for mask in stack_masks_of(self.segments)]
            self._stacks = stacks
        return stacks

    # -------------------------------------------------------------- point reads

    def lookup(self, keys: list[int]) -> list[Record | None]:
        """The live record of each key (None where there is none), newest layer first."""
        out: list[Record | None] = [None] * len(keys)
        for i, layer, row in self._find(keys):
            out[i] = Record(keys[i], layer_vector(layer, row), layer_metadata(layer, row),
                            layer_text(layer, row))
        return out

    def is_live(self, keys: list[int]) -> list[bool]:
        out = [False] * len(keys)
        for i, _, _ in self._find(keys):
            out[i] = True
        return out

    def _find(self, keys: list[int]) -> Iterator[tuple[int, Memtable | LiveSegment, int]]:
        """(position in keys, layer, row) of each key's live version. The newest layer that
        holds a key decides (a tombstone hides it); each segment is probed once for every key
        the newer layers left open (one binary search per key, vectorised)."""
        tables = self.memtables()
        pending = []
        for i, key in enumerate(keys):
            for table in tables:
                state, slot = table.state(key)
                if state == LIVE:
                    yield i, table, slot
                if state != ABSENT:
                    break
            else:
                pending.append(i)
        for seg in self.segments:
            if not pending:
                return
            rows = seg.reader.lookup(np.array([keys[i] for i in pending], dtype=np.uint64))
            tombstones = seg.reader.tombstones
            still = []
            for i, row in zip(pending, rows.tolist()):
                if row < 0:
                    still.append(i)
                elif not tombstones[row]:
                    yield i, seg, row
            pending = still

    # -------------------------------------------------------------- bulk reads

    def live_rows(self, flt: Filter | None) -> Iterator[tuple[object, np.ndarray]]:
        """(layer, rows) of every live, newest-wins row matching `flt`, layer by layer."""
        for layer, mask in self.live_masks(flt):
            yield layer, np.flatnonzero(mask)

    def live_masks(self, flt: Filter | None) -> Iterator[tuple[object, np.ndarray]]:
        """`live_rows` as one bool per row of each layer (keyword search scores by mask)."""
        seen: set[int] = set()
        for table in self.memtables():
            mask = table.live_mask().copy()
            if flt is not None:
                mask &= flt.mask(table.columns)[: table.n]
            if seen:
                ids = table.view_ids()
                for row in np.flatnonzero(mask).tolist():
                    mask[row] = int(ids[row]) not in seen
            seen.update(table.slot_of)
            yield table, mask
        shadow = np.fromiter(seen, dtype=np.uint64, count=len(seen))
        for seg, stack_mask in zip(self.segments, self.stack_masks()):
            mask = stack_mask.copy()
            if flt is not None:
                mask &= flt.mask(seg.reader.columns)
            if len(shadow):
                hidden = seg.reader.lookup(shadow)
                mask[hidden[hidden >= 0]] = False
            yield seg, mask

    def count(self) -> int:
        return sum(len(rows) for _, rows in self.live_rows(None))

    def rows(self) -> int:
        """Rows a search reads (dead ones included): a cheap measure of its cost."""
        return sum(t.n for t in self.memtables()) + sum(s.reader.n for s in self.segments)

    def matching_ids(self, flt: Filter | None) -> np.ndarray:
        parts = [_layer_ids(layer)[rows] for layer, rows in self.live_rows(flt)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def search(self, queries: np.ndarray, params: SearchParams) -> list[list[tuple]]:
        """Per query, up to k (score, id, layer, row), best first, ties by id."""
        per_query: list[list[tuple]] = [[] for _ in range(len(queries))]
        tables = self.memtables()
        metric = cast(kernels.Metric, self.meta.metric)
        for index, table in enumerate(tables):
            if table.n == 0:
                continue
            mask = table.live_mask()
            if params.flt is not None:
                mask = mask & params.flt.mask(table.columns)[: table.n]
            vectors = table.view_vectors()

            def rank(kk: int, vectors=vectors, mask=mask):
                return kernels.topk(vectors, queries, kk, metric, mask=mask)

            _collect(rank, table, table.view_ids(), tables[:index], params.k, table.n, per_query)
        for position, (seg, share) in enumerate(zip(self.segments, self.shares(params.shards))):
            seg_mask = self.search_mask(position, params.flt)

            def rank_segment(kk: int, seg=seg, seg_mask=seg_mask, share=share):
                return search_segment(seg, queries, kk, metric, seg_mask, params, share)

            _collect(rank_segment, seg, seg.reader.ids, tables, params.k, seg.reader.n, per_query)
        for found in per_query:
            rank_hits(found)
            del found[params.k :]
        return per_query

    def shares(self, shards: int) -> list[float]:
        """Each segment's share of the rows a search of `shards` shards visits: ids spread
        evenly over the shards, so this shard's rows times `shards` estimate them."""
        searched = shards * (sum(t.n for t in self.memtables()) + sum(s.reader.n for s in self.segments))
        return [seg.reader.n / searched for seg in self.segments]

    def plan_part(self, shards: int) -> list[tuple[LiveSegment, np.ndarray | None, float]] | None:
        """(segment, mask, share) of each segment an unfiltered search visits, as `search`
        gives them, or None while a memtable holds rows (read_plan.py)."""
        if any(table.n for table in self.memtables()):
            return None
        return [(seg, self.search_mask(position, None), share)
                for position, (seg, share) in enumerate(zip(self.segments, self.shares(shards)))]


def _layer_ids(layer) -> np.ndarray:
    return layer.view_ids() if isinstance(layer, Memtable) else layer.reader.ids


def found_hits(hits: list[tuple], held: set[LiveSegment]) -> list[tuple]:
    """`hits` (score, id, layer, row), changed in place so they outlive the read: a memtable
    row's metadata and text are read now (memtable slots are overwritten in place), as
    (score, id, None, (metadata, text)); a segment row stays as it is, not yet decoded, its
    (immutable) segment acquired once into `held`. The caller holds those segments until it
    has read the hits (read_payloads) or dropped them, so only the hits that make the final
    k across shards pay for decoding."""
    for i, (score, key, layer, row) in enumerate(hits):
        if isinstance(layer, Memtable):
            hits[i] = (score, key, None, (layer_metadata(layer, row), layer_text(layer, row)))
        elif layer not in held:
            held.add(layer.acquire())
    return hits


def read_payloads(hits: list[tuple]) -> list[tuple]:
    """found_hits' hits as (score, id, metadata, text): the rows of each segment are decoded
    in one call (a search's final k come from a few segments)."""
    rows_of: dict[LiveSegment, list[int]] = {}
    for _, _, segment, row in hits:
        if segment is not None:
            rows_of.setdefault(segment, []).append(row)
    # consumed in the order the rows were gathered
    decoded = {seg: iter(seg.reader.payloads(rows)) for seg, rows in rows_of.items()}
    return [(score, key, *(payload if segment is None else next(decoded[segment])))
            for score, key, segment, payload in hits]


def layer_metadata(layer, row: int) -> dict | None:
    if isinstance(layer, Memtable):
        return clone_metadata(layer.metadatas[row])
    return layer.reader.metadata([row])[0]


def layer_text(layer, row: int) -> str | None:
    if isinstance(layer, Memtable):
        return layer.texts[row]
    return layer.reader.texts([row])[0]


def layer_vector(layer, row: int) -> np.ndarray:
    if isinstance(layer, Memtable):
        return layer.vectors[row].copy()
    return np.array(layer.reader.vectors[row], dtype=np.float32)


def search_segment(seg: LiveSegment, queries: np.ndarray, k: int, metric, mask: np.ndarray | None,
                   params: SearchParams, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the segment's k best allowed rows per query, like kernels.topk:
    exactly with params.exact, else routed by WSBR with the budget of its `share`."""
    return search_segments([(seg, mask, share)], queries, k, metric, params)[0]


def search_segments(parts: list[tuple[LiveSegment, np.ndarray | None, float]],
                    queries: np.ndarray, k: int, metric, params: SearchParams,
                    helpers: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """search_segment of each (segment, mask, share) of `parts`; routed ones at once, on this
    thread and up to `helpers` threads of the kernels' pool (wsbr.search_segments)."""
    if params.exact:
        return [kernels.topk(seg.reader.vectors, queries, k, metric, mask=mask)
                for seg, mask, _ in parts]
    return wsbr.search_segments(
        [(seg.reader.vectors, seg.index, mask, share) for seg, mask, share in parts], queries, k,
        metric, top_blocks=params.top_blocks, widen_blocks=params.widen_blocks, mode=params.mode,
        routing_queries=params.routing, helpers=helpers)


def layer_hits(scores: np.ndarray, rows: np.ndarray, ids: np.ndarray, layer) -> list[list[tuple]]:
    """Per query, its (score, id, layer, row) from a kernel's best-first (scores, rows)
    matrices, whose padding (row -1) ends each list."""
    keys = ids.take(np.maximum(rows, 0)).tolist()  # one gather: the padding's key is dropped
    out = []
    for q_scores, q_keys, q_rows in zip(scores.tolist(), keys, rows.tolist()):
        if q_rows[-1] < 0:
            del q_rows[q_rows.index(-1) :]
        out.append(list(zip(q_scores, q_keys, repeat(layer), q_rows)))
    return out


def _collect(rank: Callable, layer, ids: np.ndarray, newer: list[Memtable], k: int, n_rows: int,
             per_query: list[list[tuple]]) -> None:
    """Add this layer's best k rows per query that no newer memtable overrides."""
    newer = [t for t in newer if t.n]  # an empty memtable overrides nothing
    want = k + 8 if newer else k
    while True:
        scores, rows = rank(min(want, max(n_rows, 1)))
        short = False
        kept_all: list[list[tuple]] = []
        for hits in layer_hits(scores, rows, ids, layer):
            kept = hits  # want == k rows were asked for
            if newer:
                kept = [hit for hit in hits if not any(hit[1] in t.slot_of for t in newer)][:k]
            if len(kept) < k and len(hits) == rows.shape[1] and want < n_rows:
                short = True
            kept_all.append(kept)
        if not short:
            break
        want *= 4
    for found, kept in zip(per_query, kept_all):
        found.extend(kept)


def stack_masks_of(segments: list[LiveSegment]) -> list[np.ndarray]:
    masks = []
    newer_ids: list[np.ndarray] = []
    for seg in segments:
        mask = ~np.asarray(seg.reader.tombstones, dtype=bool)
        for ids in newer_ids:
            mask &= ~np.isin(seg.reader.ids, ids, assume_unique=True)
        masks.append(mask)
        newer_ids.append(np.asarray(seg.reader.ids))
    return masks


class Snapshot:
    """Live records of one membrane in one shard, frozen at a point in time, for scan().

    Holds references on its segments so compaction cannot delete their files
    until the scan is done; the active memtable's live rows are copied.
    """

    def __init__(self, state: MembraneState, flt: Filter | None) -> None:
        self._parts: list[tuple[object, np.ndarray]] = []
        for layer, rows in state.live_rows(flt):
            if isinstance(layer, Memtable) and not layer.frozen:
                layer = _copy_rows(layer, rows)
                rows = np.arange(len(rows))
            elif isinstance(layer, LiveSegment):
                layer.acquire()
            self._parts.append((layer, rows))

    def records(self) -> Iterator[Record]:
        try:
            for layer, rows in self._parts:
                ids = _layer_ids(layer)
                for row in rows.tolist():
                    yield Record(int(ids[row]), layer_vector(layer, row), layer_metadata(layer, row),
                                 layer_text(layer, row))
        finally:
            self.release()

    def release(self) -> None:
        parts, self._parts = self._parts, []
        for layer, _ in parts:
            if isinstance(layer, LiveSegment):
                layer.release()


def _copy_rows(table: Memtable, rows: np.ndarray) -> Memtable:
    copy = Memtable(table.dim)
    copy.n = len(rows)
    copy.ids = table.ids[rows].copy()
    copy.vectors = table.vectors[rows].copy()
    copy.live = np.ones(len(rows), dtype=bool)
    copy.metadatas = [clone_metadata(table.metadatas[r]) for r in rows.tolist()]
    copy.texts = [table.texts[r] for r in rows.tolist()]
    copy.frozen = True
    return copy
