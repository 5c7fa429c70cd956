"""A shard's segmented write-ahead log.

Files live in `shard_<i>/wal/` and are named by the first sequence number they
may hold (`<seq:020d>.wal`, see filenames.py). A file is a plain sequence of
frames, each (little-endian):

    offset  width  field
    0       4      crc32c   over bytes 4 .. 17+length (length, type, seq, payload)
    4       4      length   of the payload
    8       1      type     frozen values: 1 PUT_BATCH, 2 DELETE_BATCH (one record,
                            written before groups existed; still read), 3 GROUP
    9       8      seq      sequence number of the frame's first record
    17      length payload

A GROUP frame holds every record of one group commit (a mailbox drain):

    0       8      synced_through  highest seq known fsynced when the group was written
    8       4      count           records in the group; they take seq .. seq+count-1
    12      ...    count x { u8 type (a records.py record type),
                             u32 length, payload[length] (records.py encoding) }

Why groups: one write() of a group can reach the disk out of page order, so
after a power loss any page of the unsynced tail may be missing while a later
one survived. A group is checksummed as one unit, so it is all there or not
there; and `synced_through` tells recovery whether damaged bytes had been
fsynced (damage to acknowledged data) or not (a torn tail).

Recovery rules (`read_wal`):
* Frames must have consecutive sequence numbers; a gap or repeat is
  CorruptionError, and so is a log whose first needed file starts after the
  manifest's covered position.
* A frame that fails its checksum or runs past the end of its file is damage.
  It is a torn tail (never acknowledged under the sync policy: dropped, and
  truncated away when the log is reopened for writing, with any later files)
  unless a valid frame after it proves it had been fsynced: a GROUP whose
  synced_through reaches the damaged position, or any pre-group frame (those
  carry no sync mark, so the old rule holds: valid data after damage is
  corruption). Proven damage is CorruptionError.
* Files whose every record is covered by the manifest are not read at all.

Reset after a freeze: the manifest records `wal_covered` per shard; whole files
whose records are all covered are deleted (`WalWriter.drop_covered`), and replay
skips covered records in the files that remain.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import filenames, fs
from .errors import CorruptionError, StorageError
from .kernels import crc32c
from .records import DELETE_BATCH, PUT_BATCH, LogRecord, decode

GROUP = 3  # frame type (frozen on-disk value)
_FRAME_TYPES = frozenset({PUT_BATCH, DELETE_BATCH, GROUP})
HEADER = struct.Struct("<IIBQ")
HEADER_SIZE = HEADER.size  # 17
_GROUP_HEAD = struct.Struct("<QI")
_ITEM_HEAD = struct.Struct("<BI")
MAX_FRAME_BYTES = 1 << 31  # a length beyond this is damage, never a real frame
# The writer's bound on one group's payload; a record must fit in a group of its own.
MAX_GROUP_BYTES = 1 << 30
MAX_RECORD_BYTES = MAX_GROUP_BYTES - _GROUP_HEAD.size - _ITEM_HEAD.size
_SCAN_BUDGET_PASSES = 4  # CRC work of the damage scan, in passes over the file


@dataclass(frozen=True)
class WalRecord:
    seq: int
    kind: int
    payload: bytes


@dataclass(frozen=True)
class _Frame:
    kind: int
    seq: int
    end: int  # offset just past the frame
    payload: memoryview

    def synced_through(self) -> int | None:
        """The sync mark of a GROUP; None for a pre-group frame (no mark)."""
        return _GROUP_HEAD.unpack_from(self.payload, 0)[0] if self.kind == GROUP else None


def frame(seq: int, kind: int, payload: bytes) -> bytes:
    body = struct.pack("<IBQ", len(payload), kind, seq) + payload
    return struct.pack("<I", crc32c(body)) + body


def group_payload(synced_through: int, items: list[tuple[int, bytes]]) -> bytes:
    parts = [_GROUP_HEAD.pack(synced_through, len(items))]
    for kind, payload in items:
        parts.append(_ITEM_HEAD.pack(kind, len(payload)))
        parts.append(payload)
    return b"".join(parts)


def _frame_at(data: bytes, offset: int) -> _Frame | None:
    """The checksum-valid frame starting at `offset`, else None."""
    if offset + HEADER_SIZE > len(data):
        return None
    crc, length, kind, seq = HEADER.unpack_from(data, offset)
    end = offset + HEADER_SIZE + length
    if length > MAX_FRAME_BYTES or end > len(data):
        return None
    if crc32c(memoryview(data)[offset + 4 : end]) != crc:
        return None
    return _Frame(kind, seq, end, memoryview(data)[offset + HEADER_SIZE : end])


def _frame_records(found: _Frame, path: str) -> list[WalRecord]:
    """The records of a valid frame; a valid checksum over a shape the writer never makes is corruption."""
    if found.kind in (PUT_BATCH, DELETE_BATCH):
        return [WalRecord(found.seq, found.kind, bytes(found.payload))]
    if found.kind != GROUP or len(found.payload) < _GROUP_HEAD.size:
        raise CorruptionError(f"WAL {path}: frame {found.seq} has unknown type {found.kind}")
    _, count = _GROUP_HEAD.unpack_from(found.payload, 0)
    offset, out = _GROUP_HEAD.size, []
    for i in range(count):
        if offset + _ITEM_HEAD.size > len(found.payload):
            raise CorruptionError(f"WAL {path}: group {found.seq} is shorter than its records")
        kind, length = _ITEM_HEAD.unpack_from(found.payload, offset)
        offset += _ITEM_HEAD.size
        if offset + length > len(found.payload):
            raise CorruptionError(f"WAL {path}: group {found.seq} is shorter than its records")
        out.append(WalRecord(found.seq + i, kind, bytes(found.payload[offset : offset + length])))
        offset += length
    if offset != len(found.payload) or count == 0:
        raise CorruptionError(f"WAL {path}: group {found.seq} does not match its record count")
    return out


def _frames_after(data: bytes, start: int, min_seq: int, budget: int | None) -> Iterator[_Frame | None]:
    """Valid frames at offsets >= start whose seq is plausible (>= min_seq), in offset order.

    Each candidate costs a CRC over the length its header claims; a tail crafted
    full of plausible headers would make that quadratic in the file size (hours
    for one WAL file). With a `budget` (bytes of CRC), None is yielded once it is
    spent: the caller cannot rule out what it was looking for.
    """
    tail = np.frombuffer(data, dtype=np.uint8)[start:]
    if len(tail) < HEADER_SIZE:
        return
    max_seq = min_seq + len(tail) // HEADER_SIZE + 1
    found = []
    for align in range(8):
        usable = (len(tail) - 9 - align) // 8
        if usable > 0:
            seqs = tail[9 + align : 9 + align + usable * 8].view("<u8")
            found.append(start + align + 8 * np.flatnonzero((seqs >= min_seq) & (seqs <= max_seq)))
    for offset in np.sort(np.concatenate(found)).tolist() if found else []:
        _, length, kind, _ = HEADER.unpack_from(data, offset)
        if kind not in _FRAME_TYPES or offset + HEADER_SIZE + length > len(data):
            continue  # not a frame's header (payload bytes that look like a seq): no CRC to compute
        if budget is not None:
            budget -= length
            if budget < 0:
                yield None
                return
        frame_ = _frame_at(data, offset)
        if frame_ is not None:
            yield frame_


def _proves_damage(data: bytes, start: int, expected: int) -> bool:
    """Is there a valid frame at or after `start` showing that the bytes before it were fsynced?

    Past a few passes' worth of CRC the answer is "cannot rule it out": True, so
    the log is refused (fail closed) instead of hanging the open.
    """
    budget = _SCAN_BUDGET_PASSES * max(len(data), 1)
    return any(found is None or _fsynced_before(found, expected)
               for found in _frames_after(data, start, expected, budget))


def _fsynced_before(found: _Frame, expected: int) -> bool:
    if found.kind == GROUP and len(found.payload) >= _GROUP_HEAD.size:
        synced = found.synced_through()
        return synced is not None and synced >= expected
    return True  # a pre-group frame carries no sync mark: assume the worst


@dataclass(frozen=True)
class WalFile:
    path: str
    first_seq: int


def list_wal_files(root: str, shard: int) -> list[WalFile]:
    directory = filenames.wal_dir(root, shard)
    files = []
    for name in fs.listdir(directory):
        first = filenames.parse_wal_name(name)
        if first is not None:
            files.append(WalFile(f"{directory}/{name}", first))
    return sorted(files, key=lambda f: f.first_seq)


@dataclass
class ReplayResult:
    records: list[WalRecord]
    last_seq: int  # highest seq seen (or the covered point if none)
    torn_file: str | None  # the file holding a torn tail, if any
    torn_offset: int  # where its valid prefix ends
    torn_later: list[str]  # files after the torn one: all unsynced, dropped with it


def needed_files(files: list[WalFile], covered: int) -> list[WalFile]:
    """The files that may hold a record after `covered` (the rest are wholly in segments)."""
    return [f for f, nxt in itertools.zip_longest(files, files[1:])
            if nxt is None or nxt.first_seq - 1 > covered]


def read_wal(files: list[WalFile], covered: int) -> ReplayResult:
    """All records with seq > covered, in order; applies the recovery rules above."""
    files = needed_files(files, covered)
    if files and files[0].first_seq > covered + 1:
        # Records covered+1 .. first_seq-1 are neither in segments nor in the log: a WAL
        # file is missing (or, for a reader, a writer reset the WAL after it read the manifest).
        raise CorruptionError(
            f"WAL of {os.path.dirname(files[0].path)} starts at sequence {files[0].first_seq} but "
            f"the manifest covers only up to {covered}: log records are missing")
    records: list[WalRecord] = []
    expected: int | None = None
    for index, wal_file in enumerate(files):
        data = fs.read_file(wal_file.path)
        offset = 0
        while offset < len(data):
            found = _frame_at(data, offset)
            if found is None:
                at = expected if expected is not None else wal_file.first_seq
                later = files[index + 1 :]
                if _proves_damage(data, offset + 1, at) or any(
                        _proves_damage(fs.read_file(f.path), 0, at) for f in later):
                    raise CorruptionError(
                        f"WAL {wal_file.path} is damaged at byte {offset} and records written "
                        "after it had been synced: acknowledged writes may be lost, refusing to open")
                last = expected - 1 if expected is not None else covered
                return ReplayResult(records, max(last, covered), wal_file.path, offset,
                                    [f.path for f in later])
            if expected is not None and found.seq != expected:
                raise CorruptionError(
                    f"WAL {wal_file.path}: sequence {found.seq} where {expected} was expected")
            if found.seq < wal_file.first_seq:
                raise CorruptionError(
                    f"WAL {wal_file.path}: sequence {found.seq} before its file start")
            batch = _frame_records(found, wal_file.path)
            records.extend(r for r in batch if r.seq > covered)
            expected = found.seq + len(batch)
            offset = found.end
    last = expected - 1 if expected is not None else covered
    return ReplayResult(records, max(last, covered), None, 0, [])


class WalWriter:
    """Appends records for one shard, one GROUP frame per commit. Runs on the shard thread only.

    A failed write or fsync leaves the file in an unknown state: the writer is
    broken from then on (every later call raises), since a later success could
    not prove the earlier data reached the disk. It first tries to cut the
    failed group off the file, so that a rejected write does not come back
    when the log is replayed.
    """

    def __init__(self, root: str, shard: int, next_seq: int, file_limit_bytes: int) -> None:
        self._root = root
        self._shard = shard
        self._file_limit = file_limit_bytes
        self.next_seq = next_seq
        self._synced_seq = next_seq - 1  # the caller fsyncs what it replayed before writing
        self._file: fs.WritableFile | None = None
        self._size = 0  # bytes in the current file
        self._group: list[tuple[int, bytes]] = []  # records of the group being built
        self._group_bytes = 0
        self._broken: StorageError | None = None
        self._rollback_to: int | None = None  # file size before the failed group, if not yet cut

    def append(self, kind: int, payload: bytes) -> int:
        """Add one record to the current group; returns its sequence number. No IO."""
        self._check_usable()
        assert len(payload) <= MAX_RECORD_BYTES, "callers refuse records larger than a group"
        seq = self.next_seq + len(self._group)
        self._group.append((kind, payload))
        return seq

    @property
    def pending(self) -> int:
        """Records appended but not yet committed."""
        return len(self._group)

    def commit(self, durable: bool) -> None:
        """Write the current group (one frame, or a few if it is huge); fsync if `durable`.

        On failure the group is discarded, the writer is broken and the error is raised.
        """
        self._check_usable()
        group, self._group = self._group, []
        if not group:
            if durable:
                self._fsync()
            return
        if self._file is None or self._size >= self._file_limit:
            self.rotate()
        assert self._file is not None
        start = self._size
        try:
            frames = self._frames(group)
            self._file.write(frames)
            self._size += len(frames)
            self.next_seq += len(group)
            if durable:
                self._fsync()
        except StorageError as exc:
            self._break(exc, start)
            raise

    def _frames(self, group: list[tuple[int, bytes]]) -> bytes:
        out: list[bytes] = []
        chunk: list[tuple[int, bytes]] = []
        seq, size = self.next_seq, 0
        for item in group:
            if chunk and size + _ITEM_HEAD.size + len(item[1]) > MAX_GROUP_BYTES - _GROUP_HEAD.size:
                out.append(frame(seq, GROUP, group_payload(self._synced_seq, chunk)))
                seq, chunk, size = seq + len(chunk), [], 0
            chunk.append(item)
            size += _ITEM_HEAD.size + len(item[1])
        out.append(frame(seq, GROUP, group_payload(self._synced_seq, chunk)))
        return out[0] if len(out) == 1 else b"".join(out)

    def _fsync(self) -> None:
        if self._file is not None and self._synced_seq < self.next_seq - 1:
            self._file.fsync()
        self._synced_seq = self.next_seq - 1

    def sync(self) -> None:
        """fsync everything committed so far; raises if the writer is broken."""
        self._check_usable()
        try:
            self._fsync()
        except StorageError as exc:
            self._break(exc, None)
            raise

    def rotate(self) -> None:
        """Start a new file at next_seq; the old one is synced and closed first."""
        self._check_usable()
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
        try:
            path = filenames.wal_path(self._root, self._shard, self.next_seq)
            self._file = fs.create(path)
            self._size = 0
            fs.fsync_dir(filenames.wal_dir(self._root, self._shard))
        except StorageError as exc:
            self._break(exc, None)
            raise

    def drop_covered(self, covered: int) -> None:
        """Delete files whose every record has seq <= covered (they live in segments now)."""
        files = list_wal_files(self._root, self._shard)
        for current, following in itertools.pairwise(files):
            if following.first_seq - 1 <= covered:
                fs.unlink(current.path)
        fs.fsync_dir(filenames.wal_dir(self._root, self._shard))

    def close(self) -> None:
        """Sync and close; a broken writer only retries cutting off its failed group."""
        if self._file is None:
            return
        try:
            if self._broken is None:
                self.sync()
            else:
                self._cut_failed_group()
        finally:
            self._file.close()
            self._file = None

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise StorageError(f"the WAL is unusable after an earlier failure: {self._broken}")

    def _break(self, exc: StorageError, rollback_to: int | None) -> None:
        self._broken = exc
        self._rollback_to = rollback_to
        self._cut_failed_group()

    def _cut_failed_group(self) -> None:
        """Best effort: truncate the file to before the failed group and fsync that."""
        if self._rollback_to is None or self._file is None:
            return
        try:
            self._file.truncate(self._rollback_to)
            self._file.fsync()
        except StorageError:
            return  # the disk refuses even this: close() tries again
        self._rollback_to = None


def sync_file(path: str) -> None:
    """fsync an existing log file (what a crashed writer left may sit only in the page cache)."""
    handle = fs.open_append(path)
    try:
        handle.fsync()
    finally:
        handle.close()


def truncate_torn_tail(path: str, offset: int) -> None:
    handle = fs.open_append(path)
    try:
        handle.truncate(offset)
        handle.fsync()
    finally:
        handle.close()


@dataclass
class Salvage:
    records: list[WalRecord]  # every record of every intact frame, by seq, first copy kept
    damaged_bytes: int  # bytes no intact frame accounts for


def salvage(files: list[WalFile]) -> Salvage:
    """Every intact frame of every file, skipping damage wherever it is (repair only)."""
    by_seq: dict[int, WalRecord] = {}
    damaged = 0
    for wal_file in files:
        data = fs.read_file(wal_file.path)
        offset = 0
        while offset < len(data):
            found = _frame_at(data, offset)
            if found is None:
                found = next(_frames_after(data, offset + 1, wal_file.first_seq, None), None)
                damaged += (found.end - HEADER_SIZE - len(found.payload) if found else len(data)) - offset
                if found is None:
                    break
            try:
                for record in _frame_records(found, wal_file.path):
                    by_seq.setdefault(record.seq, record)
            except CorruptionError:
                damaged += found.end - offset
            offset = found.end
    return Salvage([by_seq[seq] for seq in sorted(by_seq)], damaged)


def iter_decoded(result: ReplayResult) -> Iterator[tuple[int, LogRecord]]:
    for record in result.records:
        yield record.seq, decode(record.kind, record.payload)
