"""A shard's segmented write-ahead log.

Files live in `shard_<i>/wal/` and are named by the first sequence number they
may hold (`<seq:020d>.wal`, see filenames.py). A file is a plain sequence of
records, each (little-endian):

    offset  width  field
    0       4      crc32c   over bytes 4 .. 17+length (length, type, seq, payload)
    4       4      length   of the payload
    8       1      type     records.PUT_BATCH | records.DELETE_BATCH (frozen values)
    9       8      seq      per-shard sequence number, +1 per record, across files
    17      length payload  records.py encoding

Recovery rules (`read_wal`):
* A record that fails its checksum or runs past the end of the file, with no
  valid record anywhere after it, is a torn tail: it was never acknowledged, so
  it is dropped (and truncated away when the log is reopened for writing).
* A bad record followed by a valid one is damage to acknowledged data:
  CorruptionError. "Followed" is found by searching the rest of the log for a
  record header whose seq is plausible and whose checksum holds.
* Sequence numbers must be consecutive; a gap or repeat is CorruptionError, and so
  is a log whose first file starts after the manifest's covered position.

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
from .errors import CorruptionError
from .kernels import crc32c
from .records import DeleteBatch, PutBatch, decode

HEADER = struct.Struct("<IIBQ")
HEADER_SIZE = HEADER.size  # 17
MAX_RECORD_BYTES = 1 << 31  # a length beyond this is damage, never a real record
_SCAN_BUDGET_PASSES = 4  # CRC work of the torn-tail scan, in passes over the file


@dataclass(frozen=True)
class WalRecord:
    seq: int
    kind: int
    payload: bytes


def frame(seq: int, kind: int, payload: bytes) -> bytes:
    body = struct.pack("<IBQ", len(payload), kind, seq) + payload
    return struct.pack("<I", crc32c(body)) + body


def _valid_at(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(kind, seq, end) of a checksum-valid record starting at `offset`, else None."""
    if offset + HEADER_SIZE > len(data):
        return None
    crc, length, kind, seq = HEADER.unpack_from(data, offset)
    end = offset + HEADER_SIZE + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return None
    if crc32c(memoryview(data)[offset + 4 : end]) != crc:
        return None
    return kind, seq, end


def _later_valid_record(data: bytes, start: int, min_seq: int) -> bool:
    """Is there a valid record at any offset >= start with seq >= min_seq?

    Each candidate costs a CRC over the length its header claims; a tail crafted
    full of plausible headers would make that quadratic in the file size (hours
    for one WAL file). Past a few passes' worth of CRC the answer is "cannot rule
    it out": True, so the log is refused (fail closed) instead of hanging the open.
    """
    tail = np.frombuffer(data, dtype=np.uint8)[start:]
    if len(tail) < HEADER_SIZE:
        return False
    max_seq = min_seq + len(tail) // HEADER_SIZE + 1
    budget = _SCAN_BUDGET_PASSES * len(data)
    for align in range(8):
        usable = (len(tail) - 9 - align) // 8
        if usable <= 0:
            continue
        seqs = tail[9 + align : 9 + align + usable * 8].view("<u8")
        for idx in np.flatnonzero((seqs >= min_seq) & (seqs <= max_seq)).tolist():
            offset = start + align + 8 * idx
            length = HEADER.unpack_from(data, offset)[1]
            if offset + HEADER_SIZE + length > len(data):
                continue  # runs past the end: no CRC to compute
            budget -= length
            if budget < 0 or _valid_at(data, offset) is not None:
                return True
    return False


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


def read_wal(files: list[WalFile], covered: int) -> ReplayResult:
    """All records with seq > covered, in order; applies the recovery rules above."""
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
            found = _valid_at(data, offset)
            if found is None:
                min_seq = expected if expected is not None else wal_file.first_seq
                damaged = _later_valid_record(data, offset + 1, min_seq) or any(
                    fs.file_size(f.path) > 0 for f in files[index + 1 :]
                )
                if damaged:
                    raise CorruptionError(
                        f"WAL {wal_file.path} is damaged at byte {offset} and valid records "
                        "follow: acknowledged writes may be lost, refusing to open"
                    )
                last = expected - 1 if expected is not None else covered
                return ReplayResult(records, max(last, covered), wal_file.path, offset)
            kind, seq, end = found
            if expected is not None and seq != expected:
                raise CorruptionError(
                    f"WAL {wal_file.path}: sequence {seq} where {expected} was expected"
                )
            if seq < wal_file.first_seq:
                raise CorruptionError(f"WAL {wal_file.path}: sequence {seq} before its file start")
            if seq > covered:
                records.append(WalRecord(seq, kind, data[offset + HEADER_SIZE : end]))
            expected = seq + 1
            offset = end
    last = expected - 1 if expected is not None else covered
    return ReplayResult(records, max(last, covered), None, 0)


class WalWriter:
    """Appends framed records for one shard. Runs on the shard thread only.

    A failed write or fsync leaves the file in an unknown state; the shard then
    refuses writes (shard.py), since a later success could not prove the earlier
    data reached the disk.
    """

    def __init__(self, root: str, shard: int, next_seq: int, file_limit_bytes: int) -> None:
        self._root = root
        self._shard = shard
        self._file_limit = file_limit_bytes
        self.next_seq = next_seq
        self._file: fs.WritableFile | None = None
        self._size = 0
        self._pending: list[bytes] = []  # framed records not yet written (one write per flush)
        self._dirty = False  # written but not yet fsynced

    def append(self, kind: int, payload: bytes) -> int:
        """Frame one record into the pending buffer; returns its sequence number.

        Nothing reaches the file until `flush` (or `sync`): the shard appends a
        whole mailbox drain and then writes it with one write() call.
        """
        if self._file is None or self._size >= self._file_limit:
            self.rotate()
        seq = self.next_seq
        data = frame(seq, kind, payload)
        self._pending.append(data)
        self.next_seq += 1
        self._size += len(data)
        return seq

    def flush(self) -> None:
        """write() every pending record (they survive a process kill from here on)."""
        if not self._pending:
            return
        assert self._file is not None
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._file.write(data)
        self._dirty = True

    def sync(self) -> None:
        """flush, then fsync (they survive power loss from here on)."""
        self.flush()
        if self._file is not None and self._dirty:
            self._file.fsync()
            self._dirty = False

    def rotate(self) -> None:
        """Start a new file at next_seq; the old one is synced and closed first."""
        self.close()
        path = filenames.wal_path(self._root, self._shard, self.next_seq)
        self._file = fs.create(path)
        self._size = 0
        fs.fsync_dir(filenames.wal_dir(self._root, self._shard))

    def drop_covered(self, covered: int) -> None:
        """Delete files whose every record has seq <= covered (they live in segments now)."""
        files = list_wal_files(self._root, self._shard)
        for current, following in itertools.pairwise(files):
            if following.first_seq - 1 <= covered:
                fs.unlink(current.path)
        fs.fsync_dir(filenames.wal_dir(self._root, self._shard))

    def close(self) -> None:
        if self._file is not None:
            try:
                self.sync()
            finally:
                self._file.close()
                self._file = None


def truncate_torn_tail(path: str, offset: int) -> None:
    handle = fs.open_append(path)
    try:
        handle.truncate(offset)
        handle.fsync()
    finally:
        handle.close()


def iter_decoded(result: ReplayResult) -> Iterator[tuple[int, DeleteBatch | PutBatch]]:
    for record in result.records:
        yield record.seq, decode(record.kind, record.payload)
