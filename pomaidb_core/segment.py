"""Immutable segment files: one frozen batch of a membrane's records in one shard.

A segment is written once (`write_segment`) and then only memory-mapped
(`SegmentReader`). Opening validates the header and the section table and
nothing else, so it costs the same for ten rows as for ten million; every
section is checked against its CRC32C the first time it is touched (the column
data one array at a time, see below).

Byte layout (all integers little-endian). This writes format version 3; version 2 files (no
text sections, a 320-byte header) and version 1 files (no column sections either, a 256-byte
header) are still read (their rows have no text), and compaction rewrites them as version 3:

    offset  width  field
    0       8      magic b"PMDBSEG\\0"
    8       4      u32 format version: 3 (2 or 1 in older files)
    12      4      u32 flags: bit 0 = at least one row is a tombstone; other bits 0
    16      8      u64 membrane id
    24      8      u64 record count n (1 <= n < 2**32)
    32      8      u64 file size in bytes
    40      4      u32 dim (>= 1)
    44      1      u8 metric, a frozen enum: 1 = "cosine", 2 = "ip", 3 = "l2"
    45      1      u8 section count c = 12 (9 in version 2, 7 in version 1)
    46      2      zero
    48      24 c   section table: c entries of 24 bytes, in the order below:
                     u64 offset, u64 length, u32 CRC32C of the section's bytes,
                     u32 section kind (version 1: zero)
    48+24c  4      u32 header CRC32C of bytes [0, 48 + 24 c)
    ...            zero up to the header size: 384 bytes (320 in version 2, 256 in version 1)
    384            sections (320, 256 in versions 2, 1), in table order, each at the first 64-byte aligned
                   offset after the previous one; gaps are zero; the last
                   section ends exactly at the file size

    kind  section           length     content
    1     ids               8 n        u64 id of each row, in row order
    2     tombstones        n          u8 per row: 1 = delete marker (its vector is ignored), 0 = record
    3     vectors           4 n dim    f32 row-major; 64-byte aligned so kernels scan it in place
    4     sorted ids        8 n        the ids in strictly ascending order (ids are unique per segment)
    5     sorted rows       4 n        u32 row of each sorted id: ids[sorted_rows[i]] == sorted_ids[i]
    6     meta offsets      8 (n + 1)  u64 offsets into section 7; row r is [off[r], off[r + 1]);
                                       off[0] = 0, non-decreasing, off[n] = length of section 7
    7     meta blob         any        row r's metadata as UTF-8 JSON (an object); an empty
                                       range means None. The source of truth for metadata
    8     column directory  any        version 2: the typed metadata columns' directory (JSON)
    9     column data       any        version 2: their arrays; both are documented in
                                       segment_columns.py, which writes and reads them
    10    text lengths      4 n        version 3: u32 UTF-8 byte length of row r's text;
                                       0xFFFFFFFF = the row has no text
    11    text blob         any        version 3: the rows' texts, UTF-8, concatenated in row order
                                       (a payload: returned by reads, never filtered on)
    12    keyword index     any        version 3: postings and document lengths of the texts for
                                       BM25, documented in keyword_index.py, which writes and
                                       validates it

Section kinds are a frozen enum (written to disk, never renumbered). The column sections let a
filter run on a reopened segment without decoding any row's JSON: each field's arrays carry
their own CRC32C (in the directory), checked when a filter first names the field, so a filter
reads only its fields; hits decode the JSON of the final rows only.

The header CRC covers every header field and, through the section CRCs, every
data byte (the column data's section CRC is checked by `verify`; reads check its
arrays' CRCs); it is the segment's `data_checksum`, which the WSBR sidecar stores
to bind itself to this exact file. Only the zero padding is outside every CRC:
`verify` checks that it is zero.

Rows are never reordered here: the caller writes them in final (WSBR block)
order, and the sorted-id index makes `lookup` O(m log n) without a rebuild.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import fs, keyword_index, stored_json
from .columns import StoredColumns
from .errors import ClosedError, CorruptionError, InvalidArgumentError, StorageError
from .filenames import tmp_path
from .filters import MetadataColumns
from .kernels import crc32c
from .segment_columns import StoredColumnsReader, check_against_json, encode

MAGIC = b"PMDBSEG\0"
FORMAT_VERSION = 3
FLAG_HAS_TOMBSTONES = 1
METRIC_CODES = {"cosine": 1, "ip": 2, "l2": 3}  # frozen: written to disk, never renumbered
ALIGN = 64
MAX_ROWS = 2**32 - 1  # sorted rows are u32
_DECODE_CHUNK_ROWS = 256  # metadata rows sliced at a time: bounds what a big read holds

_FIXED = struct.Struct("<8sIIQQQIBBH")
_ENTRY = struct.Struct("<QQII")
_CRC = struct.Struct("<I")

(IDS, TOMBSTONES, VECTORS, SORTED_IDS, SORTED_ROWS, META_OFFSETS, META_BLOB, COLUMN_DIRECTORY,
 COLUMN_DATA, TEXT_LENGTHS, TEXT_BLOB, KEYWORDS) = range(12)  # a section's kind is its index + 1
SECTION_NAMES = (
    "ids",
    "tombstones",
    "vectors",
    "sorted ids",
    "sorted rows",
    "metadata offsets",
    "metadata",
    "column directory",
    "column data",
    "text lengths",
    "text",
    "keyword index",
)
TABLE_OFFSET = _FIXED.size
# format version -> (section count, header bytes)
LAYOUTS = {1: (7, 256), 2: (9, 320), 3: (12, 384)}
SECTION_COUNT, HEADER_BYTES = LAYOUTS[FORMAT_VERSION]
FIXED_SECTIONS = 6  # sections 0-5 have lengths fixed by n and dim; the rest any length


def header_crc_offset(section_count: int) -> int:
    return TABLE_OFFSET + section_count * _ENTRY.size


HEADER_CRC_OFFSET = header_crc_offset(SECTION_COUNT)
assert all(header_crc_offset(c) + _CRC.size <= size for c, size in LAYOUTS.values())

_U64 = np.dtype("<u8")
_U32 = np.dtype("<u4")
_F32 = np.dtype("<f4")


def _align(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def _section_lengths(n: int, dim: int, free_lengths: Sequence[int]) -> list[int]:
    """Every section's length, given those of the sections after the fixed ones (the text
    lengths section among them is fixed too: 4 n)."""
    lengths = [8 * n, n, 4 * n * dim, 8 * n, 4 * n, 8 * (n + 1), *free_lengths]
    if len(lengths) > TEXT_LENGTHS:
        lengths[TEXT_LENGTHS] = 4 * n
    return lengths


def _layout(lengths: Sequence[int], header_bytes: int) -> tuple[list[int], int]:
    """Canonical section offsets and the file size for these section lengths."""
    offsets, end = [], header_bytes
    for length in lengths:
        start = _align(end)
        offsets.append(start)
        end = start + length
    return offsets, end


def _pack_header(fields: tuple[Any, ...], table: Sequence[tuple[int, int, int]]) -> bytes:
    head = bytearray(HEADER_BYTES)
    _FIXED.pack_into(head, 0, *fields)
    for i, (offset, length, crc) in enumerate(table):
        _ENTRY.pack_into(head, TABLE_OFFSET + i * _ENTRY.size, offset, length, crc, i + 1)
    _CRC.pack_into(head, HEADER_CRC_OFFSET, crc32c(memoryview(head)[:HEADER_CRC_OFFSET]))
    return bytes(head)


# ---------------------------------------------------------------------------- writing


def _check_inputs(
    membrane_id: int,
    dim: int,
    metric: str,
    ids: np.ndarray,
    tombstones: np.ndarray,
    vectors: np.ndarray,
    n_meta: int,
) -> None:
    if metric not in METRIC_CODES:
        raise InvalidArgumentError(f"metric must be one of {sorted(METRIC_CODES)}, got {metric!r}")
    if not 0 <= membrane_id < 2**64 or not 1 <= dim < 2**32:
        raise InvalidArgumentError(f"bad membrane id {membrane_id} or dim {dim}")
    if ids.dtype != _U64 or ids.ndim != 1:
        raise InvalidArgumentError("ids must be a 1-d uint64 array")
    n = ids.shape[0]
    if not 1 <= n <= MAX_ROWS:
        raise InvalidArgumentError(f"a segment holds 1 to {MAX_ROWS} rows, got {n}")
    if tombstones.dtype != np.bool_ or tombstones.shape != (n,):
        raise InvalidArgumentError(f"tombstones must be a bool array of shape ({n},)")
    if vectors.dtype != _F32 or vectors.shape != (n, dim):
        raise InvalidArgumentError(f"vectors must be a float32 array of shape ({n}, {dim})")
    if n_meta != n:
        raise InvalidArgumentError(f"got {n_meta} metadata entries for {n} rows")


def _encode_metadata(metadatas: Sequence[dict | None]) -> tuple[np.ndarray, bytes]:
    offsets = np.zeros(len(metadatas) + 1, dtype=_U64)
    parts = []
    for row, meta in enumerate(metadatas):
        if meta is None:
            encoded = b""
        elif isinstance(meta, dict):
            try:
                encoded = json.dumps(
                    meta, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                ).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"metadata of row {row} is not JSON: {exc}") from None
        else:
            raise InvalidArgumentError(f"metadata of row {row} must be a dict or None")
        parts.append(encoded)
        offsets[row + 1] = len(encoded)
    np.cumsum(offsets, out=offsets)
    return offsets, b"".join(parts)


def _sorted_index(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.argsort(ids, kind="stable")
    sorted_ids = ids[rows]
    if sorted_ids.shape[0] > 1 and not (sorted_ids[1:] > sorted_ids[:-1]).all():
        raise InvalidArgumentError("ids must be unique within a segment")
    return sorted_ids, rows.astype(_U32)


def write_segment(
    path: str,
    *,
    membrane_id: int,
    dim: int,
    metric: str,
    ids: np.ndarray,
    tombstones: np.ndarray,
    vectors: np.ndarray,
    metadatas: Sequence[dict | None],
    texts: Sequence[str | None] | None = None,
    keywords: bytes | None = None,
) -> int:
    """Write a segment durably at `path` and return its data checksum.

    The file is written as `path + ".tmp"`, fsynced and renamed; the caller
    fsyncs the directory once for every file of its commit. Rows keep the
    given order; `keywords` is the keyword section of the texts (keyword_index.encode with
    the membrane's analyzer), needed only when some row has a text.
    Raises InvalidArgumentError for malformed input (an empty
    segment, duplicate ids, wrong dtypes or shapes) and StorageError when the
    disk refuses.
    """
    _check_inputs(membrane_id, dim, metric, ids, tombstones, vectors, len(metadatas))
    texts = [None] * len(ids) if texts is None else texts
    if len(texts) != len(ids):
        raise InvalidArgumentError(f"got {len(texts)} texts for {len(ids)} rows")
    if keywords is None:
        if any(t is not None for t in texts):
            raise InvalidArgumentError("rows with texts need their keyword index")
        keywords = keyword_index.encode(texts, str.split)
    n = ids.shape[0]
    vectors = np.ascontiguousarray(vectors)
    sorted_ids, sorted_rows = _sorted_index(ids)
    meta_offsets, blob = _encode_metadata(metadatas)
    directory, column_data = encode(MetadataColumns.from_list(metadatas), n)
    flags_u8 = np.ascontiguousarray(tombstones).view(np.uint8)
    encoded = [None if t is None else t.encode("utf-8") for t in texts]
    text_lengths = np.fromiter((keyword_index.NO_TEXT if b is None else len(b) for b in encoded),
                               dtype=_U32, count=n)
    sections: list[Any] = [
        np.ascontiguousarray(ids),
        flags_u8,
        vectors,
        sorted_ids,
        sorted_rows,
        meta_offsets,
        blob,
        directory,
        column_data,
        text_lengths,
        b"".join(b for b in encoded if b is not None),
        keywords,
    ]
    lengths = [memoryview(s).nbytes for s in sections]
    assert lengths == _section_lengths(n, dim, lengths[FIXED_SECTIONS:])
    offsets, file_size = _layout(lengths, HEADER_BYTES)
    table = [(off, length, crc32c(s)) for off, length, s in zip(offsets, lengths, sections)]
    flags = FLAG_HAS_TOMBSTONES if tombstones.any() else 0
    header = _pack_header(
        (
            MAGIC,
            FORMAT_VERSION,
            flags,
            membrane_id,
            n,
            file_size,
            dim,
            METRIC_CODES[metric],
            SECTION_COUNT,
            0,
        ),
        table,
    )
    _write_file(path, header, sections, offsets)
    return _CRC.unpack_from(header, HEADER_CRC_OFFSET)[0]


def _write_file(path: str, header: bytes, sections: list[Any], offsets: list[int]) -> None:
    tmp = tmp_path(path)
    handle = fs.create(tmp)
    try:
        handle.write(header)
        position = len(header)
        for section, offset in zip(sections, offsets):
            handle.write(bytes(offset - position))
            handle.write(memoryview(section).cast("B"))
            position = offset + memoryview(section).nbytes
        handle.fsync()
        handle.close()
        fs.rename(tmp, path)
    except BaseException:
        handle.close()
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    # A segment can be hundreds of MiB, so a failed write should not leave its
    # temporary behind on a full disk; the first error is the one to report.
    try:
        fs.unlink(tmp)
    except StorageError:
        pass


# ---------------------------------------------------------------------------- reading


class SegmentReader:
    """A memory-mapped, read-only segment; safe to share between threads.

    Opening checks only the header; each section is verified against its CRC
    on first access (under a lock) and then served as a zero-copy numpy view.
    Any mismatch raises CorruptionError, never a wrong answer.
    """

    def __init__(self, path: str, *, membrane_id: int, dim: int, metric: str) -> None:
        self.path = path
        self.dim = dim
        self.metric = metric
        self._lock = threading.RLock()  # a section check may load another section
        self._verified: dict[int, Any] = {}
        self._columns: MetadataColumns | None = None
        self._columns_lock = threading.Lock()  # building columns reads sections under _lock
        self._map = self._open_map(path)
        try:
            self._parse_header(membrane_id, dim, metric)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open_map(path: str) -> Any:
        if not fs.exists(path):
            raise CorruptionError(f"segment {path} is missing")
        mapped = fs.map_file(path)
        if mapped is None:
            raise CorruptionError(f"segment {path} is empty")
        return mapped

    def _corrupt(self, what: str) -> CorruptionError:
        return CorruptionError(f"segment {self.path}: {what}")

    def _parse_header(self, membrane_id: int, dim: int, metric: str) -> None:
        mapped = self._map
        self.nbytes = len(mapped)
        if self.nbytes < min(size for _, size in LAYOUTS.values()):
            raise self._corrupt(f"truncated to {self.nbytes} bytes")
        fields = _FIXED.unpack_from(mapped, 0)
        magic, version, flags, file_membrane, n, file_size, file_dim, code, count, zero = fields
        if magic != MAGIC:
            raise self._corrupt("bad magic (not a PomaiDB segment)")
        if version not in LAYOUTS:
            raise self._corrupt(f"unsupported format version {version}")
        self.format_version = version
        self._section_count, self._header_bytes = LAYOUTS[version]
        if self.nbytes < self._header_bytes:
            raise self._corrupt(f"truncated to {self.nbytes} bytes")
        crc_offset = header_crc_offset(self._section_count)
        (stored_crc,) = _CRC.unpack_from(mapped, crc_offset)
        if crc32c(mapped[:crc_offset]) != stored_crc:
            raise self._corrupt("header checksum mismatch")
        if file_size != self.nbytes:
            raise self._corrupt(f"header says {file_size} bytes, file has {self.nbytes}")
        if flags & ~FLAG_HAS_TOMBSTONES or count != self._section_count or zero != 0:
            raise self._corrupt("unknown flags or section count")
        if (file_membrane, file_dim, code) != (membrane_id, dim, METRIC_CODES.get(metric)):
            raise self._corrupt(
                f"holds membrane {file_membrane} dim {file_dim} metric code {code}, expected "
                f"membrane {membrane_id} dim {dim} metric {metric!r}"
            )
        if not 1 <= n <= MAX_ROWS:
            raise self._corrupt(f"bad record count {n}")
        self.n = n
        self.has_tombstones = bool(flags & FLAG_HAS_TOMBSTONES)
        self.data_checksum = stored_crc
        self._table = self._parse_table()

    def _parse_table(self) -> list[tuple[int, int, int]]:
        table = [
            _ENTRY.unpack_from(self._map, TABLE_OFFSET + i * _ENTRY.size)
            for i in range(self._section_count)
        ]
        kinds = [0] * len(table) if self.format_version == 1 else list(range(1, len(table) + 1))
        if [entry[3] for entry in table] != kinds:
            raise self._corrupt("wrong section kinds in the section table")
        lengths = [entry[1] for entry in table]
        expected = _section_lengths(self.n, self.dim, lengths[FIXED_SECTIONS:])
        offsets, end = _layout(expected, self._header_bytes)
        if lengths != expected or [e[0] for e in table] != offsets or end != self.nbytes:
            raise self._corrupt("section table does not match the record count and file size")
        return [(offset, length, crc) for offset, length, crc, _ in table]

    # ------------------------------------------------------------ lazy, verified sections

    def _section(self, index: int) -> Any:
        """The verified, decoded section `index` (cached after the first call)."""
        cached = self._verified.get(index)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._verified.get(index)
            if cached is None:
                cached = self._load(index)
                self._verified[index] = cached
            return cached

    def _mapped(self) -> Any:
        if self._map is None:
            raise ClosedError(f"segment {self.path} is closed")
        return self._map

    def _raw(self, index: int) -> memoryview:
        offset, length, crc = self._table[index]
        view = memoryview(self._mapped())[offset : offset + length]
        if crc32c(view) != crc:
            raise self._corrupt(f"{SECTION_NAMES[index]} section checksum mismatch")
        return view

    def _array(self, index: int, dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(self._raw(index), dtype=dtype)

    def _load(self, index: int) -> Any:
        if index == IDS:
            return self._array(IDS, _U64)
        if index == TOMBSTONES:
            return self._load_tombstones()
        if index == VECTORS:
            return self._array(VECTORS, _F32).reshape(self.n, self.dim)
        if index == SORTED_IDS:
            return self._load_sorted_index()
        if index == META_OFFSETS:
            return self._load_meta_offsets()
        if index == TEXT_LENGTHS:
            return self._load_text_offsets()
        if index == KEYWORDS:
            if self.format_version < 3:
                return keyword_index.empty_segment_keywords(self.n)
            return keyword_index.SegmentKeywords(self._raw(KEYWORDS), self.n, self._corrupt)
        assert index in (META_BLOB, TEXT_BLOB)
        return self._raw(index)

    def _load_text_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(has_text bool (n,), u64 offsets (n + 1,) into the text section)."""
        if self.format_version < 3:
            return np.zeros(self.n, dtype=bool), np.zeros(self.n + 1, dtype=np.uint64)
        lengths = self._array(TEXT_LENGTHS, _U32)
        present = lengths != keyword_index.NO_TEXT
        offsets = np.zeros(self.n + 1, dtype=np.uint64)
        np.cumsum(np.where(present, lengths, 0), out=offsets[1:])
        if offsets[-1] != self._table[TEXT_BLOB][1]:
            raise self._corrupt("text lengths do not add up to the text section")
        return present, offsets

    def _load_tombstones(self) -> np.ndarray:
        flags = self._array(TOMBSTONES, np.dtype(np.uint8))
        if (flags > 1).any():
            raise self._corrupt("tombstone flag other than 0 or 1")
        if bool(flags.any()) != self.has_tombstones:
            raise self._corrupt("tombstone flags disagree with the header")
        return flags.view(np.bool_)

    def _load_sorted_index(self) -> tuple[np.ndarray, np.ndarray]:
        sorted_ids = self._array(SORTED_IDS, _U64)
        rows = self._array(SORTED_ROWS, _U32)
        if self.n > 1 and not (sorted_ids[1:] > sorted_ids[:-1]).all():
            raise self._corrupt("sorted id index is not strictly ascending")
        # Checked against the id column so a lookup can never land on a wrong row.
        if rows.max() >= self.n or not np.array_equal(self.ids[rows], sorted_ids):
            raise self._corrupt("sorted id index does not match the id column")
        return sorted_ids, rows

    def _load_meta_offsets(self) -> np.ndarray:
        offsets = self._array(META_OFFSETS, _U64)
        blob_length = self._table[META_BLOB][1]
        if offsets[0] != 0 or offsets[-1] != blob_length or (offsets[1:] < offsets[:-1]).any():
            raise self._corrupt("metadata offsets are not a partition of the metadata section")
        return offsets

    @property
    def ids(self) -> np.ndarray:
        """uint64 (n,) id of each row, zero-copy from the map."""
        return self._section(IDS)

    @property
    def tombstones(self) -> np.ndarray:
        """bool (n,) True where the row is a delete marker, zero-copy from the map."""
        return self._section(TOMBSTONES)

    @property
    def vectors(self) -> np.ndarray:
        """float32 (n, dim) C-contiguous, 64-byte aligned, zero-copy from the map."""
        return self._section(VECTORS)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """int64 row of each id (-1 where absent), by binary search in the sorted index."""
        wanted = np.asarray(ids, dtype=np.uint64).reshape(-1)
        sorted_ids, rows = self._section(SORTED_IDS)
        positions = np.searchsorted(sorted_ids, wanted)
        np.minimum(positions, self.n - 1, out=positions)
        found = sorted_ids[positions] == wanted
        return np.where(found, rows[positions].astype(np.int64), np.int64(-1))

    def metadata(self, rows: Iterable[int]) -> list[dict | None]:
        """Decoded metadata of each row (None where the row has none)."""
        return self._metadata_of(self._checked_rows(rows))

    def texts(self, rows: Iterable[int]) -> list[str | None]:
        """Each row's text (None where the row has none)."""
        return self._texts_of(self._checked_rows(rows))

    def payloads(self, rows: Iterable[int]) -> list[tuple[dict | None, str | None]]:
        """(metadata, text) of each row, the rows checked once for both (a search's hits)."""
        rows = self._checked_rows(rows)
        return list(zip(self._metadata_of(rows), self._texts_of(rows)))

    def _metadata_of(self, rows: list[int]) -> list[dict | None]:
        out: list[dict | None] = []
        for start in range(0, len(rows), _DECODE_CHUNK_ROWS):
            chunk = rows[start : start + _DECODE_CHUNK_ROWS]
            values = stored_json.decode_objects(self._metadata_json(chunk))
            out += self._decode_rows(chunk) if values is None else values
        return out

    def _checked_rows(self, rows: Iterable[int]) -> list[int]:
        rows = [int(row) for row in rows]
        for row in rows:
            if not 0 <= row < self.n:
                raise InvalidArgumentError(f"row {row} out of range for {self.n} rows")
        return rows

    def _metadata_json(self, rows: list[int]) -> list:
        offsets = self._section(META_OFFSETS)
        blob = self._section(META_BLOB)
        return [blob[int(offsets[row]) : int(offsets[row + 1])] for row in rows]

    def _decode_rows(self, rows: list[int]) -> list[dict | None]:
        """Row by row, so a failure names its row."""
        offsets = self._section(META_OFFSETS)
        blob = self._section(META_BLOB)
        return [self._decode(row, offsets, blob) for row in rows]

    def _decode(self, row: int, offsets: np.ndarray, blob: memoryview) -> dict | None:
        start, end = int(offsets[row]), int(offsets[row + 1])
        if start == end:
            return None
        try:
            value = stored_json.STRICT.decode(bytes(blob[start:end]).decode("utf-8"))
        except (ValueError, RecursionError):
            raise self._corrupt(f"metadata of row {row} is not valid JSON") from None
        if not isinstance(value, dict):
            raise self._corrupt(f"metadata of row {row} is not a JSON object")
        return value

    def _texts_of(self, rows: list[int]) -> list[str | None]:
        present, offsets = self._section(TEXT_LENGTHS)
        blob = self._section(TEXT_BLOB) if self.format_version >= 3 else memoryview(b"")
        out: list[str | None] = []
        for row in rows:
            if not present[row]:
                out.append(None)
                continue
            try:
                out.append(bytes(blob[int(offsets[row]) : int(offsets[row + 1])]).decode("utf-8"))
            except UnicodeDecodeError:
                raise self._corrupt(f"text of row {row} is not UTF-8") from None
        return out

    @property
    def keywords(self) -> keyword_index.SegmentKeywords:
        """The rows' keyword index (empty for a segment written before texts existed)."""
        return self._section(KEYWORDS)

    @property
    def columns(self) -> MetadataColumns:
        """Per-field metadata columns for fast filters: mapped from the column sections
        (version 2), or built once from every row's JSON (version 1)."""
        with self._columns_lock:
            if self._columns is None:
                self._columns = self._build_columns()
            return self._columns

    def _build_columns(self) -> MetadataColumns:
        if self.format_version >= 2:
            return self._stored_columns()
        try:
            return MetadataColumns.from_list(self.metadata(range(self.n)))
        except InvalidArgumentError as exc:
            # Every metadata was validated before it was written.
            raise self._corrupt(f"metadata unusable for filtering: {exc}") from None

    def _stored_columns(self) -> StoredColumns:
        """Validates the column directory now and each field's arrays when first used."""
        offset, length, _ = self._table[COLUMN_DATA]
        data = memoryview(self._mapped())[offset : offset + length]
        return StoredColumnsReader(
            self._raw(COLUMN_DIRECTORY), data, self.n, self.metadata, self._corrupt
        ).columns()

    def verify(self, keywords: bool = True) -> None:
        """Check every checksum, every structural invariant and the zero padding; version 2
        columns are also checked against the rows' JSON. `keywords=False` leaves out the
        keyword index (repair checks it apart: it can be rebuilt from the texts)."""
        # Checksums are recomputed even for cached sections: verify exists to
        # catch a file that went bad after it was first read.
        for index in range(self._section_count):
            if index != KEYWORDS or keywords:
                self._raw(index)
        for index in (TOMBSTONES, SORTED_IDS, META_OFFSETS, TEXT_LENGTHS):
            self._section(index)
        if keywords:
            self.verify_keywords()
        self.texts(range(self.n))
        metadatas = self.metadata(range(self.n))
        if self.format_version >= 2:
            from_json = MetadataColumns.from_list(metadatas)
            problem = check_against_json(self._stored_columns(), from_json, self.n)
            if problem is not None:
                raise self._corrupt(problem)
        self._verify_padding()

    def verify_keywords(self) -> None:
        """A fresh parse of the keyword index (the cached one was checked when first read)."""
        if self.format_version >= 3:
            keyword_index.SegmentKeywords(self._raw(KEYWORDS), self.n, self._corrupt)

    def _verify_padding(self) -> None:
        mapped = self._mapped()
        gaps = [(header_crc_offset(self._section_count) + _CRC.size, self._table[0][0])]
        for (offset, length, _), (next_offset, _, _) in zip(self._table, self._table[1:]):
            gaps.append((offset + length, next_offset))
        if any(mapped[start:end].count(0) != end - start for start, end in gaps):
            raise self._corrupt("nonzero padding")

    def close(self) -> None:
        """Release the map; arrays already handed out keep it alive until dropped."""
        mapped, self._map = self._map, None
        self._verified = {}
        with self._columns_lock:
            self._columns = None  # v2 columns are views of the map
        if mapped is not None:
            try:
                mapped.close()
            except BufferError:
                # Views are still referenced (a search in flight): the map is
                # unmapped when the last of them is garbage-collected.
                pass
