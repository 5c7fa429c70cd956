"""Turns rows into an immutable segment + WSBR sidecar pair (freeze and compaction alike).

Runs on the background worker. The files are written under temporary names,
fsynced and renamed here; making them live is the manifest commit's job
(shard.py), so a crash before that commit leaves only orphans, removed on open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import filenames, keyword_index, wsbr
from .errors import CorruptionError
from .layers import LiveSegment
from .manifest import MembraneMeta, SegmentMeta
from .options import IndexParams
from .segment import SegmentReader, write_segment
from .worker import checkpoint


@dataclass
class BuiltSegment:
    membrane_id: int
    live: LiveSegment


def build_segment(root: str, shard: int, membrane: MembraneMeta, segment_id: int, ids: np.ndarray,
                  tombstones: np.ndarray, vectors: np.ndarray,
                  metadatas: Sequence[dict | None],
                  texts: Sequence[str | None]) -> BuiltSegment:
    """Write rows (any order) as segment `segment_id`; rows are reordered into WSBR blocks."""
    params = IndexParams.from_dict(membrane.index)
    # Small LAPACK calls slow down 40-100x when a multi-threaded BLAS competes with the
    # shard threads for two cores; one BLAS thread is faster and leaves the shards alone.
    with threadpool_limits(1, user_api="blas"):
        order, index = wsbr.build_index(vectors, membrane.metric, params)
    checkpoint()  # before the longest write: an interrupted build leaves no file
    seg_path = filenames.segment_path(root, shard, membrane.membrane_id, segment_id)
    side_path = filenames.sidecar_path(root, shard, membrane.membrane_id, segment_id)
    ordered_texts = [texts[i] for i in order.tolist()]
    checksum = write_segment(
        seg_path,
        membrane_id=membrane.membrane_id,
        dim=membrane.dim,
        metric=membrane.metric,
        ids=np.ascontiguousarray(ids[order]),
        tombstones=np.ascontiguousarray(tombstones[order]),
        vectors=np.ascontiguousarray(vectors[order]),
        metadatas=[metadatas[i] for i in order.tolist()],
        texts=ordered_texts,
        keywords=keyword_index.encode(ordered_texts, params.analyzer()),
    )
    sidecar_bytes = index.write(side_path, checksum)
    reader = SegmentReader(seg_path, membrane_id=membrane.membrane_id, dim=membrane.dim,
                           metric=membrane.metric)
    # Read back, mapped: searches then page the int8 row copy from the file instead of
    # holding the anonymous copy the build made.
    index = wsbr.WsbrIndex.read(side_path, n_rows=reader.n, dim=membrane.dim,
                                segment_checksum=checksum)
    meta = SegmentMeta(
        segment_id=segment_id,
        rows=len(ids),
        live_rows=int(len(ids) - np.count_nonzero(tombstones)),
        nbytes=reader.nbytes + sidecar_bytes,
        data_checksum=checksum,
        has_sidecar=True,
    )
    return BuiltSegment(membrane.membrane_id, LiveSegment(meta, reader, index, (seg_path, side_path)))


def open_segment(root: str, shard: int, membrane: MembraneMeta, meta: SegmentMeta) -> LiveSegment:
    """Map a live segment and read its sidecar; missing or damaged files raise CorruptionError."""
    seg_path = filenames.segment_path(root, shard, membrane.membrane_id, meta.segment_id)
    side_path = filenames.sidecar_path(root, shard, membrane.membrane_id, meta.segment_id)
    reader = SegmentReader(seg_path, membrane_id=membrane.membrane_id, dim=membrane.dim,
                           metric=membrane.metric)
    if reader.n != meta.rows or reader.data_checksum != meta.data_checksum:
        raise CorruptionError(f"segment {seg_path} does not match the manifest's record of it")
    index = wsbr.WsbrIndex.read(side_path, n_rows=reader.n, dim=membrane.dim,
                                segment_checksum=reader.data_checksum)
    _check_sidecar_metric(index, membrane.metric, side_path)
    return LiveSegment(meta, reader, index, (seg_path, side_path))


def _check_sidecar_metric(index: wsbr.WsbrIndex, metric: str, path: str) -> None:
    if index.metric != metric:
        raise CorruptionError(f"sidecar {path} routes for metric {index.metric!r}, the membrane "
                              f"uses {metric!r}")


def verify_sidecar(seg: LiveSegment) -> None:
    """Re-read the sidecar from disk with every check (db.verify)."""
    index = wsbr.WsbrIndex.read(seg.paths[1], n_rows=seg.reader.n, dim=seg.reader.dim,
                                segment_checksum=seg.reader.data_checksum)
    _check_sidecar_metric(index, seg.reader.metric, seg.paths[1])
