"""Compaction: merge all of a membrane's segments in one shard into one.

Policy (automatic): when a shard holds `Options.compaction_trigger` or more
segments of a membrane, they are merged in the background; `db.compact()`
merges every membrane whose shard holds two or more segments, or one that
carries dead rows. Because *all* of the shard's segments of that membrane are
merged, nothing older remains for a tombstone to hide, so tombstones and
overridden rows are dropped. Memtables frozen meanwhile are newer than every
input and are untouched; the merged segment takes the inputs' place at the old
end of the stack (see shard.py's install step).
"""

from __future__ import annotations

import numpy as np

from .layers import LiveSegment, stack_masks_of


def worth_compacting(segments: list[LiveSegment], trigger: int, forced: bool) -> bool:
    if len(segments) >= trigger:
        return True
    if not forced or not segments:
        return False
    return len(segments) >= 2 or segments[0].meta.live_rows < segments[0].meta.rows


def merged_rows(segments: list[LiveSegment]) -> tuple[np.ndarray, np.ndarray, list]:
    """(ids, vectors, metadatas) of every row that survives the merge, newest segment first."""
    ids_parts, vector_parts, metadatas = [], [], []
    for seg, mask in zip(segments, stack_masks_of(segments)):
        rows = np.flatnonzero(mask)
        ids_parts.append(np.asarray(seg.reader.ids)[rows])
        vector_parts.append(np.asarray(seg.reader.vectors)[rows])
        metadatas.extend(seg.reader.metadata(rows.tolist()))
    dim = segments[0].reader.dim
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.uint64)
    vectors = np.concatenate(vector_parts) if vector_parts else np.zeros((0, dim), np.float32)
    return ids, np.ascontiguousarray(vectors, dtype=np.float32), metadatas
