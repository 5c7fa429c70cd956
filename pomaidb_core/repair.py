"""Repair: salvage every intact record and segment of a damaged database (LevelDB's RepairDB).

Never run implicitly: a normal open fails closed with CorruptionError, and the
user decides to run `pdb.repair(path)` (or `pomaidb repair PATH`). Repair takes
the single-writer LOCK and then:

1. Manifest: the newest version that reads back intact is used; newer, damaged
   versions are moved aside (older versions are what was live before).
2. Segments: each live segment is fully verified with its sidecar. A damaged
   segment is dropped; a good segment whose sidecar is damaged or missing is
   rewritten with a fresh sidecar.
3. WAL: every intact frame of every log file is kept, whatever damage lies
   between frames; records are replayed in sequence order into memtables (the
   records of membranes the manifest does not know are dropped) and written
   out as new segments, newest of their shard.
4. One manifest commit makes the result live and covers every salvaged
   record; only then are the old log files moved aside.

Nothing is deleted: damaged and superseded files go to `<root>/lost/` (see
filenames.py), so nothing repair judged bad is beyond a person's reach. An
interrupted repair leaves the old state or the new one; running it again is safe.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from . import builder, filenames, fs, records, txn, wal
from .errors import CorruptionError, InvalidArgumentError, NotFoundError, StorageError
from .manifest import Manifest, ManifestStore, MembraneMeta, SegmentMeta, read_manifest
from .memtable import Memtable
from .segment import SegmentReader


def repair(path: str | os.PathLike) -> dict[str, Any]:
    """Salvage a damaged database in place; returns a report of what was kept and dropped."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgumentError("path must be a non-empty str or os.PathLike")
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(filenames.manifest_dir(root)):
        raise NotFoundError(f"no PomaiDB database at {root} (no manifest directory)")
    lock = fs.FileLock(filenames.lock_path(root))
    try:
        return _Repair(root).run()
    finally:
        lock.release()


class _Repair:
    def __init__(self, root: str) -> None:
        self.root = root
        self.lost = filenames.lost_dir(root)
        self.report: dict[str, Any] = {
            "path": root, "manifest": None, "manifests_set_aside": [], "segments_kept": 0,
            "segments_rebuilt": [], "segments_dropped": [], "wal_records_salvaged": 0,
            "wal_records_dropped": 0, "wal_damaged_bytes": 0, "files_set_aside": [],
        }

    def run(self) -> dict[str, Any]:
        store, manifest = self._pick_manifest()
        next_id = [manifest.next_segment_id]

        def allocate() -> int:
            next_id[0] += 1
            return next_id[0] - 1

        segments: dict[tuple[int, int], tuple[SegmentMeta, ...]] = {}
        covered = list(manifest.wal_covered)
        old_logs = [f.path for shard in range(manifest.shards)
                    for f in wal.list_wal_files(self.root, shard)]
        logs = [self._read_log(shard, manifest) for shard in range(manifest.shards)]
        committed = txn.committed_keys([_evidence(decoded) for _, decoded in logs])
        for shard in range(manifest.shards):
            for mid, meta in _by_id(manifest).items():
                kept = self._salvage_segments(shard, meta, manifest.segments.get((shard, mid), ()),
                                              allocate)
                segments[(shard, mid)] = tuple(kept)
            built, covered[shard] = self._salvage_log(shard, manifest, *logs[shard], committed,
                                                      allocate)
            for mid, seg in built.items():
                segments[(shard, mid)] = (seg,) + segments.get((shard, mid), ())

        def edit(current: Manifest) -> Manifest:
            return dataclasses.replace(current, segments=segments, wal_covered=tuple(covered),
                                       next_segment_id=max(current.next_segment_id, next_id[0]))

        store.commit(edit)
        for shard in range(manifest.shards):
            fs.fsync_dir(filenames.segment_dir(self.root, shard))
        for log in old_logs:
            self._set_aside(log)
        return self.report

    # ---------------------------------------------------------------- manifest

    def _pick_manifest(self) -> tuple[ManifestStore, Manifest]:
        directory = filenames.manifest_dir(self.root)
        versions = sorted((n for n in map(filenames.parse_manifest_name, fs.listdir(directory))
                           if n is not None), reverse=True)
        for index, number in enumerate(versions):
            try:
                read_manifest(filenames.manifest_path(self.root, number))
            except (CorruptionError, StorageError):
                continue
            for newer in versions[:index]:  # damaged: set aside only now that one is good
                self._set_aside(filenames.manifest_path(self.root, newer))
                self.report["manifests_set_aside"].append(newer)
            store = ManifestStore(self.root)
            store.load_or_create(None, create=True)
            self.report["manifest"] = number
            return store, store.current
        raise CorruptionError(
            f"{self.root}: no manifest version reads back intact; without one the membranes "
            "(names, dims, metrics) are unknown, so repair changed nothing")

    # ---------------------------------------------------------------- segments

    def _salvage_segments(self, shard: int, meta: MembraneMeta, live: tuple[SegmentMeta, ...],
                          allocate) -> list[SegmentMeta]:
        kept = []
        for seg in live:
            seg_path = filenames.segment_path(self.root, shard, meta.membrane_id, seg.segment_id)
            try:
                reader = SegmentReader(seg_path, membrane_id=meta.membrane_id, dim=meta.dim,
                                       metric=meta.metric)
            except (CorruptionError, StorageError) as exc:
                self._drop_segment(shard, meta, seg, exc)
                continue
            try:
                reader.verify()
                if reader.n != seg.rows or reader.data_checksum != seg.data_checksum:
                    raise CorruptionError(f"{seg_path} does not match the manifest's record of it")
            except CorruptionError as exc:
                reader.close()
                self._drop_segment(shard, meta, seg, exc)
                continue
            try:
                builder.open_segment(self.root, shard, meta, seg).reader.close()
            except (CorruptionError, StorageError):
                kept.append(self._rebuild(shard, meta, seg, reader, allocate))
                continue
            reader.close()
            kept.append(seg)
            self.report["segments_kept"] += 1
        return kept

    def _rebuild(self, shard: int, meta: MembraneMeta, seg: SegmentMeta, reader: SegmentReader,
                 allocate) -> SegmentMeta:
        """An intact segment whose sidecar is not: written anew, with a fresh sidecar."""
        built = builder.build_segment(
            self.root, shard, meta, allocate(), np.array(reader.ids), np.array(reader.tombstones),
            np.array(reader.vectors), reader.metadata(range(reader.n)))
        built.live.reader.close()
        reader.close()
        seg_path = filenames.segment_path(self.root, shard, meta.membrane_id, seg.segment_id)
        self._set_aside(seg_path)
        self._set_aside(filenames.sidecar_path(self.root, shard, meta.membrane_id, seg.segment_id))
        self.report["segments_rebuilt"].append(os.path.basename(seg_path))
        return built.live.meta

    def _drop_segment(self, shard: int, meta: MembraneMeta, seg: SegmentMeta, why: Exception) -> None:
        seg_path = filenames.segment_path(self.root, shard, meta.membrane_id, seg.segment_id)
        self.report["segments_dropped"].append(
            {"file": os.path.basename(seg_path), "membrane": meta.name, "shard": shard,
             "rows": seg.rows, "live_rows": seg.live_rows, "reason": str(why)})
        self._set_aside(seg_path)
        self._set_aside(filenames.sidecar_path(self.root, shard, meta.membrane_id, seg.segment_id))

    # ---------------------------------------------------------------- the log

    def _read_log(self, shard: int, manifest: Manifest) -> tuple[wal.Salvage, list]:
        """What can be read of the shard's log: the salvage, and its records past the manifest."""
        found = wal.salvage(wal.list_wal_files(self.root, shard))
        self.report["wal_damaged_bytes"] += found.damaged_bytes
        membranes = _by_id(manifest)
        covered = manifest.wal_covered[shard]
        return found, [(r.seq, self._decode(r, membranes)) for r in found.records if r.seq > covered]

    def _salvage_log(self, shard: int, manifest: Manifest, found: wal.Salvage, decoded: list,
                     committed: set[bytes], allocate) -> tuple[dict[int, SegmentMeta], int]:
        """The shard's salvaged log records as new segments, and the seq they cover up to."""
        covered = manifest.wal_covered[shard]
        membranes = _by_id(manifest)
        aborted = {rec.prepared_seq for _, rec in decoded if isinstance(rec, records.Abort)}
        tables: dict[int, Memtable] = {}
        for seq, rec in decoded:
            if rec is None or isinstance(rec, (records.Abort, records.Commit)):
                continue
            if isinstance(rec, records.PreparedPut):
                if seq in aborted or (rec.key is not None and rec.key not in committed):
                    continue
                rec = rec.batch  # committed (a keyless part: presumed so), in log order
            table = tables.setdefault(rec.membrane_id, Memtable(membranes[rec.membrane_id].dim))
            if isinstance(rec, records.PutBatch):
                table.put_batch(rec.ids, rec.vectors, rec.metadatas, rec.meta_blobs)
            else:
                table.delete_batch(rec.ids)
            self.report["wal_records_salvaged"] += 1
        last = max([covered, *(r.seq for r in found.records)])
        seqs = {r.seq for r in found.records if r.seq > covered}
        self.report["wal_records_dropped"] += (last - covered) - len(seqs)  # gaps: lost to damage
        built = {}
        for mid, table in tables.items():
            n = table.n
            made = builder.build_segment(self.root, shard, membranes[mid], allocate(), table.ids[:n],
                                         ~table.live[:n], table.vectors[:n], table.metadatas[:n])
            made.live.reader.close()
            built[mid] = made.live.meta
        return built, last

    def _decode(self, record: wal.WalRecord, membranes: dict[int, MembraneMeta]) -> records.LogRecord | None:
        try:
            rec = records.decode(record.kind, record.payload)
        except CorruptionError:
            self.report["wal_records_dropped"] += 1
            return None
        if isinstance(rec, (records.Abort, records.Commit)):
            return rec
        meta = membranes.get(rec.membrane_id)
        batch = rec.batch if isinstance(rec, records.PreparedPut) else rec
        if meta is None or (isinstance(batch, records.PutBatch) and batch.vectors.shape[1] != meta.dim):
            self.report["wal_records_dropped"] += 1
            return None
        return rec

    # ---------------------------------------------------------------- files

    def _set_aside(self, path: str) -> None:
        if not fs.exists(path):
            return
        fs.makedirs(self.lost)
        relative = os.path.relpath(path, self.root).replace(os.sep, "__")
        fs.rename(path, os.path.join(self.lost, relative))
        fs.fsync_dir(self.lost)
        self.report["files_set_aside"].append(os.path.relpath(path, self.root))


def _evidence(decoded: list) -> txn.Evidence:
    """What one shard's salvaged log says of its cross-shard batches (txn.committed_keys)."""
    found = txn.Evidence()
    parts = {seq: rec for seq, rec in decoded
             if isinstance(rec, records.PreparedPut) and rec.key is not None}
    for _, rec in decoded:
        if isinstance(rec, records.Commit):
            found.committed.add(rec.key)
        elif isinstance(rec, records.Abort) and rec.prepared_seq in parts:
            found.aborted.add(parts.pop(rec.prepared_seq).key)
    found.held = {rec.key: rec.shards for rec in parts.values()}
    return found


def _by_id(manifest: Manifest) -> dict[int, MembraneMeta]:
    return {m.membrane_id: m for m in manifest.membranes.values()}
