"""Fuzzed readers: WAL, WAL record payloads, segments, manifests and WSBR sidecars.

Every reader gets damaged bytes (bit flips, truncations, splices, zeroed runs,
trailing garbage) and *forged* bytes (damage with every checksum recomputed, so
the structural checks behind the checksums are what is tested). Each must
return what was written, or records that satisfy every invariant the writer
guarantees, or raise CorruptionError: never another exception, never a hang,
and never memory in proportion to a length field it has not checked against
the size of the file (tracemalloc watches every example).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import tempfile
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pomaidb_core as pdb
from pomaidb_core import filenames, records, segment, validation, wal, wsbr
from pomaidb_core.errors import CorruptionError
from pomaidb_core.filters import compile_filter
from pomaidb_core.kernels import crc32c
from pomaidb_core.manifest import (
    HEADER_BYTES as MANIFEST_HEADER_BYTES,
)
from pomaidb_core.manifest import (
    Manifest,
    MembraneMeta,
    SegmentMeta,
    decode_manifest,
    encode_manifest,
)
from pomaidb_core.options import IndexParams

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
MEMORY_SLACK = 4 << 20  # bytes a reader may allocate beyond a few copies of its input


# ---------------------------------------------------------------------------- helpers


class MemoryBound:
    """Peak memory allocated inside the block may not exceed a few times the input.

    Traced only inside the block: tracing Hypothesis's own engine would cost
    more than the readers themselves.
    """

    def __init__(self, input_bytes: int) -> None:
        self.limit = 4 * input_bytes + MEMORY_SLACK

    def __enter__(self) -> MemoryBound:
        tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= self.limit, f"a reader allocated {peak} bytes for a damaged input"


def test_memory_bound_catches_an_allocation_sized_by_a_length_field():
    with pytest.raises(AssertionError, match="allocated"), MemoryBound(100):
        np.zeros(16 << 20, dtype=np.uint8)


def damage(data: st.DataObject, original: bytes) -> bytes:
    """1 to 3 random edits: flip a bit, truncate, splice in bytes, zero a run, append garbage."""
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        how = data.draw(st.sampled_from(("flip", "truncate", "splice", "zero", "append")))
        at = data.draw(st.integers(0, max(len(buf) - 1, 0)), label="at")
        if how == "flip" and buf:
            buf[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif how == "truncate":
            del buf[at:]
        elif how == "splice":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=64), label="spliced")
        elif how == "zero":
            length = data.draw(st.integers(1, 64), label="length")
            buf[at:at + length] = bytes(len(buf[at:at + length]))
        else:
            buf += data.draw(st.binary(min_size=1, max_size=64), label="appended")
    return bytes(buf)


def overwrite(data: st.DataObject, buf: bytearray, start: int, end: int) -> None:
    """Replace 1 to 8 bytes somewhere in [start, end) with arbitrary ones."""
    if end <= start:
        return
    at = data.draw(st.integers(start, end - 1), label="forge at")
    new = data.draw(st.binary(min_size=1, max_size=8), label="forged bytes")
    new = new[: end - at]
    buf[at:at + len(new)] = new


def _json_valued(value) -> None:
    json.dumps(value, allow_nan=False)  # raises for NaN, inf and non-JSON types


# ---------------------------------------------------------------------------- WAL


def _put_payload(membrane_id: int, ids, dim: int, seed: int) -> bytes:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    metas = [None if i % 3 == 0 else {"i": i, "tags": ["a", "b"], "x": 1.5} for i in ids]
    batch = validation.make_put_batch(membrane_id, ids, vectors, metas, dim, 1 << 20)
    return records.encode_put(batch)


def _delete_payload(membrane_id: int, ids) -> bytes:
    return records.encode_delete(records.DeleteBatch(membrane_id, np.asarray(ids, np.uint64)))


PAYLOADS = [
    (records.PUT_BATCH, _put_payload(1, [1, 2, 3], 4, 0)),
    (records.DELETE_BATCH, _delete_payload(1, [2])),
    (records.PUT_BATCH, _put_payload(2, list(range(10, 20)), 3, 1)),
    (records.PUT_BATCH, _put_payload(1, [7], 4, 2)),
    (records.DELETE_BATCH, _delete_payload(2, [10, 11, 12])),
    (records.PUT_BATCH, _put_payload(1, [40, 41], 4, 3)),
]
ORIGINAL_WAL = b"".join(wal.frame(seq, kind, payload)
                        for seq, (kind, payload) in enumerate(PAYLOADS, start=1))


def assert_valid_batch(batch) -> None:
    """What the writer guarantees of every logical record it frames."""
    assert isinstance(batch, (records.PutBatch, records.DeleteBatch))
    assert batch.ids.dtype == np.uint64 and batch.ids.ndim == 1
    if isinstance(batch, records.PutBatch):
        n = len(batch.ids)
        assert len(np.unique(batch.ids)) == n, "a put batch repeats an id"
        assert batch.vectors.dtype == np.float32 and batch.vectors.ndim == 2
        assert batch.vectors.shape[0] == n and batch.vectors.shape[1] >= 1
        assert np.isfinite(batch.vectors).all(), "a put batch holds NaN or inf"
        assert len(batch.metadatas) == n == len(batch.meta_blobs)
        for meta in batch.metadatas:
            assert meta is None or isinstance(meta, dict)
            _json_valued(meta)


def _replay(directory: str, data: bytes):
    path = filenames.wal_path(directory, 0, 1)
    with open(path, "wb") as handle:
        handle.write(data)
    return wal.read_wal(wal.list_wal_files(directory, 0), 0)


@pytest.fixture(scope="module")
def wal_root():
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(filenames.wal_dir(root, 0))
        yield root


def test_every_truncation_of_a_wal_is_a_torn_tail_never_corruption(wal_root):
    original = _replay(wal_root, ORIGINAL_WAL).records
    for cut in range(len(ORIGINAL_WAL) + 1):
        result = _replay(wal_root, ORIGINAL_WAL[:cut])
        assert result.records == original[: len(result.records)]
        assert sum(wal.HEADER_SIZE + len(r.payload) for r in result.records) <= cut


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_damaged_wal_replays_a_prefix_of_what_was_written_or_is_corruption(wal_root, data):
    damaged = damage(data, ORIGINAL_WAL)
    with MemoryBound(len(damaged)):
        try:
            result = _replay(wal_root, damaged)
        except CorruptionError:
            return
        for record in result.records:
            assert (record.kind, record.payload) == PAYLOADS[record.seq - 1]
            assert_valid_batch(records.decode(record.kind, record.payload))


@settings(FUZZ, max_examples=500)
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_a_wal_are_empty_or_corruption(wal_root, data):
    with MemoryBound(len(data)):
        try:
            result = _replay(wal_root, data)
        except CorruptionError:
            return
        for record in result.records:
            try:
                assert_valid_batch(records.decode(record.kind, record.payload))
            except CorruptionError:
                pass


@settings(FUZZ, max_examples=2000)
@given(data=st.data())
def test_damaged_or_forged_record_payloads_decode_valid_or_raise_corruption(data):
    """Payloads behind a valid CRC (a forged record): the codec's own checks must hold."""
    kind, original = data.draw(st.sampled_from(PAYLOADS), label="record")
    payload = damage(data, original)
    if data.draw(st.booleans(), label="forge header"):
        head = struct.pack("<III", *data.draw(st.tuples(*[st.integers(0, 2**32 - 1)] * 3)))
        payload = head + payload[12:]
    with MemoryBound(len(payload)):
        try:
            batch = records.decode(kind, payload)
        except CorruptionError:
            return
        assert_valid_batch(batch)


@pytest.mark.parametrize("kind,payload", [
    (records.PUT_BATCH, struct.pack("<III", 1, 1, 1) + struct.pack("<Qf", 5, 1.0)
     + struct.pack("<I", 200_000) + b"[" * 100_000 + b"]" * 100_000),
    (records.PUT_BATCH, struct.pack("<III", 1, 1, 1) + struct.pack("<Qf", 5, 1.0)
     + struct.pack("<I", 10) + b'{"a": NaN}'),
    (records.PUT_BATCH, struct.pack("<III", 1, 1, 1) + struct.pack("<Qf", 5, float("inf"))
     + struct.pack("<I", 0xFFFFFFFF)),
    (records.PUT_BATCH, struct.pack("<III", 1, 2, 1) + struct.pack("<QQff", 5, 5, 1.0, 2.0)
     + struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)),
], ids=["deeply-nested-metadata", "nan-metadata", "infinite-vector", "repeated-id"])
def test_forged_record_the_writer_never_writes_is_corruption(kind, payload):
    with pytest.raises(CorruptionError):
        records.decode(kind, payload)


# ---------------------------------------------------------------------------- segments

SEG_DIM, SEG_MEMBRANE, SEG_METRIC = 5, 3, "l2"


def _segment_rows():
    rng = np.random.default_rng(7)
    n = 40
    ids = rng.permutation(np.arange(1000, 1000 + 3 * n, 3, dtype=np.uint64))
    tombstones = np.zeros(n, dtype=bool)
    tombstones[::7] = True
    vectors = rng.standard_normal((n, SEG_DIM)).astype(np.float32)
    # Every kind of v2 column: numbers, strings, lists, nested objects and a payload field.
    metas = [None if i % 4 == 0 else {"i": i, "tag": f"t{i % 3}", "l": [1, "x", i % 2],
                                      "o": {"a": i % 2}, "text": f"{i} " + "p" * 260}
             for i in range(n)]
    return ids, tombstones, vectors, metas


SEG_FILTERS = [compile_filter(spec) for spec in (
    {"tag": "t1"}, {"i": {"$gte": 20}}, {"l": {"$contains": "x"}}, {"l": {"$any": [0, True]}},
    {"o.a": 1}, {"text": {"$like": "1%"}}, {"tag": {"$is_empty": False}}, {"i": {"$exists": False}})]


def _exercise_columns(reader: segment.SegmentReader, metas: list | None) -> None:
    """Every filter: the written rows' answer (metas), or a mask of the right shape (None)."""
    try:
        columns = reader.columns
        for flt in SEG_FILTERS:
            mask = flt.mask(columns)
            assert mask.dtype == np.bool_ and mask.shape == (reader.n,)
            if metas is not None:
                assert mask.tolist() == [flt.matches(m) for m in metas]
    except CorruptionError:
        pass


@pytest.fixture(scope="module")
def seg_dir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


@pytest.fixture(scope="module")
def original_segment(seg_dir):
    ids, tombstones, vectors, metas = _segment_rows()
    path = f"{seg_dir}/original.seg"
    segment.write_segment(path, membrane_id=SEG_MEMBRANE, dim=SEG_DIM, metric=SEG_METRIC,
                          ids=ids, tombstones=tombstones, vectors=vectors, metadatas=metas)
    with open(path, "rb") as handle:
        return handle.read()


def _exercise_segment(path: str, original: bytes | None) -> None:
    """Every accessor: the written value, or a structurally sound one for a forgery (None)."""
    forged = original is None
    ids, tombstones, vectors, metas = _segment_rows()
    try:
        reader = segment.SegmentReader(path, membrane_id=SEG_MEMBRANE, dim=SEG_DIM,
                                       metric=SEG_METRIC)
    except CorruptionError:
        return
    try:
        n = reader.n
        for name, expected in (("ids", ids), ("tombstones", tombstones), ("vectors", vectors)):
            try:
                got = getattr(reader, name)
            except CorruptionError:
                continue
            assert len(got) == n
            if not forged:
                np.testing.assert_array_equal(got, expected)
        probes = np.concatenate([ids, np.array([0, 1, 2**64 - 1], dtype=np.uint64)])
        try:
            rows = reader.lookup(probes)
            assert ((rows >= -1) & (rows < n)).all()
            found = rows >= 0
            assert (reader.ids[rows[found]] == probes[found]).all()
            if not forged:
                assert (rows[: len(ids)] == np.arange(len(ids))).all()
        except CorruptionError:
            pass
        try:
            got_metas = reader.metadata(range(n))
            assert all(m is None or isinstance(m, dict) for m in got_metas)
            if not forged:
                assert got_metas == metas
        except CorruptionError:
            pass
        _exercise_columns(reader, None if forged else metas)
        try:
            reader.verify()
        except CorruptionError:
            return
        if not forged:
            with open(path, "rb") as handle:
                assert handle.read() == original, "verify() passed a damaged segment"
    finally:
        reader.close()


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_damaged_segment_answers_as_written_or_raises_corruption(seg_dir, original_segment,
                                                                  data):
    damaged = damage(data, original_segment)
    path = f"{seg_dir}/damaged.seg"
    _write_bytes(path, damaged)
    with MemoryBound(len(damaged)):
        _exercise_segment(path, original_segment)


def _reseal_segment(buf: bytearray) -> None:
    """Recompute every section CRC in the table, then the header CRC, over forged bytes."""
    for i in range(segment.SECTION_COUNT):
        entry = segment.TABLE_OFFSET + i * segment._ENTRY.size
        offset, length, _, zero = segment._ENTRY.unpack_from(buf, entry)
        if offset + length <= len(buf):
            crc = crc32c(bytes(buf[offset:offset + length]))
            segment._ENTRY.pack_into(buf, entry, offset, length, crc, zero)
    head_crc = crc32c(bytes(buf[: segment.HEADER_CRC_OFFSET]))
    struct.pack_into("<I", buf, segment.HEADER_CRC_OFFSET, head_crc)


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_forged_segment_with_valid_checksums_never_answers_inconsistently(seg_dir,
                                                                          original_segment,
                                                                          data):
    buf = bytearray(original_segment)
    for _ in range(data.draw(st.integers(1, 3), label="forgeries")):
        if data.draw(st.booleans(), label="in header"):
            overwrite(data, buf, 12, segment.HEADER_CRC_OFFSET)  # flags, counts, table
        else:
            overwrite(data, buf, segment.HEADER_BYTES, len(buf))
    _reseal_segment(buf)
    path = f"{seg_dir}/forged.seg"
    _write_bytes(path, bytes(buf))
    with MemoryBound(len(buf)):
        _exercise_segment(path, None)


def _relayout_segment(buf: bytes, directory: dict, column_data: bytes) -> bytes:
    """The segment with new column sections, every CRC (the directory's too) recomputed."""
    table = [segment._ENTRY.unpack_from(buf, segment.TABLE_OFFSET + i * segment._ENTRY.size)
             for i in range(segment.SECTION_COUNT)]
    sections = [bytes(buf[offset:offset + length]) for offset, length, _, _ in table]
    for entry in directory["fields"]:
        for place in entry.get("arrays", {}).values():
            place[2] = crc32c(column_data[place[0]:place[0] + place[1]])
    sections[segment.COLUMN_DIRECTORY] = json.dumps(directory).encode()
    sections[segment.COLUMN_DATA] = column_data
    offsets, size = segment._layout([len(s) for s in sections], segment.HEADER_BYTES)
    fields = list(segment._FIXED.unpack_from(buf, 0))
    fields[5] = size
    out = bytearray(segment._pack_header(
        tuple(fields), [(o, len(s), crc32c(s)) for o, s in zip(offsets, sections)]))
    for offset, section in zip(offsets, sections):
        out += bytes(offset - len(out)) + section
    return bytes(out)


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_forged_column_arrays_behind_valid_checksums_fail_closed(seg_dir, original_segment, data):
    """Forged bytes inside one column array, every checksum recomputed: filters give masks of the
    right shape or CorruptionError, and whatever verify() passes answers as written."""
    buf = original_segment
    table = [segment._ENTRY.unpack_from(buf, segment.TABLE_OFFSET + i * segment._ENTRY.size)
             for i in range(segment.SECTION_COUNT)]
    d_offset, d_length, _, _ = table[segment.COLUMN_DIRECTORY]
    c_offset, c_length, _, _ = table[segment.COLUMN_DATA]
    directory = json.loads(buf[d_offset:d_offset + d_length])
    column_data = bytearray(buf[c_offset:c_offset + c_length])
    places = [place for entry in directory["fields"] for place in entry.get("arrays", {}).values()]
    for _ in range(data.draw(st.integers(1, 3), label="forgeries")):
        offset, length, _ = data.draw(st.sampled_from(places), label="array")
        overwrite(data, column_data, offset, offset + length)
    path = f"{seg_dir}/forged-columns.seg"
    _write_bytes(path, _relayout_segment(buf, directory, bytes(column_data)))
    _, _, _, metas = _segment_rows()
    with MemoryBound(len(buf)):
        reader = segment.SegmentReader(path, membrane_id=SEG_MEMBRANE, dim=SEG_DIM,
                                       metric=SEG_METRIC)
        try:
            _exercise_columns(reader, None)
            try:
                reader.verify()
            except CorruptionError:
                return
            fresh = segment.SegmentReader(path, membrane_id=SEG_MEMBRANE, dim=SEG_DIM,
                                          metric=SEG_METRIC)
            _exercise_columns(fresh, metas)
            fresh.close()
        finally:
            reader.close()


# ---------------------------------------------------------------------------- manifests


def _manifest() -> Manifest:
    params = IndexParams().to_dict()
    return Manifest(
        number=7, shards=2, next_membrane_id=3, next_segment_id=9,
        membranes={"a": MembraneMeta(1, "a", 4, "cosine", params),
                   "b": MembraneMeta(2, "b", 3, "l2", params)},
        wal_covered=(10, 0),
        segments={(0, 1): (SegmentMeta(5, 10, 9, 4096, 123, True),
                           SegmentMeta(2, 4, 4, 1024, 456, True)),
                  (1, 2): (SegmentMeta(8, 1, 1, 512, 789, True),)},
    )


ORIGINAL_MANIFEST = encode_manifest(_manifest())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _seal_manifest(body: bytes) -> bytes:
    head = struct.pack("<8sIII", b"PMDBMAN\0", 1, len(body), crc32c(body))
    return head + struct.pack("<I", crc32c(head)) + body


def test_sealing_reproduces_a_real_manifest():
    assert _seal_manifest(ORIGINAL_MANIFEST[MANIFEST_HEADER_BYTES:]) == ORIGINAL_MANIFEST


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_damaged_manifest_is_corruption_unless_unchanged(data):
    damaged = damage(data, ORIGINAL_MANIFEST)
    with MemoryBound(len(damaged)):
        try:
            manifest = decode_manifest(damaged, "fuzz")
        except CorruptionError:
            return
    assert manifest == _manifest()


def _replace_somewhere(data: st.DataObject, tree, depth: int = 0):
    """The JSON tree with one node (chosen by walking down at random) replaced by any JSON."""
    if depth > 0 and data.draw(st.booleans(), label="replace here"):
        return data.draw(JSON, label="replacement")
    if isinstance(tree, dict) and tree:
        key = data.draw(st.sampled_from(sorted(tree)), label="key")
        return {**tree, key: _replace_somewhere(data, tree[key], depth + 1)}
    if isinstance(tree, list) and tree:
        at = data.draw(st.integers(0, len(tree) - 1), label="index")
        return tree[:at] + [_replace_somewhere(data, tree[at], depth + 1)] + tree[at + 1:]
    return data.draw(JSON, label="replacement")


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_forged_manifest_bodies_decode_consistent_or_raise_corruption(data):
    body = json.loads(ORIGINAL_MANIFEST[MANIFEST_HEADER_BYTES:])
    forged = _replace_somewhere(data, body)
    encoded = _seal_manifest(json.dumps(forged).encode("utf-8"))
    with MemoryBound(len(encoded)):
        try:
            manifest = decode_manifest(encoded, "fuzz")
        except CorruptionError:
            return
    assert isinstance(manifest, Manifest)
    assert decode_manifest(encode_manifest(manifest), "again") == manifest


# ---------------------------------------------------------------------------- WSBR sidecars

SIDE_ROWS, SIDE_DIM, SIDE_CHECKSUM = 300, 12, 0xC0FFEE


@pytest.fixture(scope="module")
def sidecar():
    vectors = np.random.default_rng(3).standard_normal((SIDE_ROWS, SIDE_DIM)).astype(np.float32)
    order, index = wsbr.build_index(vectors, "cosine", IndexParams(wsbr_block_size=16))
    return np.ascontiguousarray(vectors[order]), index.to_bytes(SIDE_CHECKSUM)


def _read_sidecar(data: bytes) -> wsbr.WsbrIndex:
    return wsbr.WsbrIndex.from_bytes(data, n_rows=SIDE_ROWS, dim=SIDE_DIM,
                                     segment_checksum=SIDE_CHECKSUM)


@settings(FUZZ, max_examples=1000)
@given(data=st.data())
def test_damaged_sidecar_is_corruption_unless_unchanged(sidecar, data):
    _, original = sidecar
    damaged = damage(data, original)
    with MemoryBound(len(damaged)):
        try:
            index = _read_sidecar(damaged)
        except CorruptionError:
            return
    assert index.to_bytes(SIDE_CHECKSUM) == original


def _reseal_sidecar(buf: bytearray) -> None:
    footer = struct.calcsize("<I4s")
    if len(buf) >= 64 + footer:
        struct.pack_into("<I", buf, 56, crc32c(bytes(buf[64:len(buf) - footer])))
    if len(buf) >= 64:
        struct.pack_into("<I", buf, 60, crc32c(bytes(buf[:60])))


@settings(FUZZ, max_examples=1000)
@given(data=st.data())
def test_forged_sidecar_with_valid_checksums_routes_without_crashing(sidecar, data):
    vectors, original = sidecar
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3), label="forgeries")):
        if data.draw(st.booleans(), label="in header"):
            overwrite(data, buf, 4, 56)
        else:
            overwrite(data, buf, 64, len(buf))
    _reseal_sidecar(buf)
    with MemoryBound(len(buf)):
        try:
            index = _read_sidecar(bytes(buf))
        except CorruptionError:
            return
        queries = vectors[:3] + 0.01
        # A forged metric code is caught where the engine binds a sidecar to its membrane
        # (builder.open_segment); here the index is searched with the metric it claims.
        with np.errstate(all="ignore"):  # a forged, finite but huge mu or alpha overflows
            _, rows = wsbr.search_segment(vectors, index, queries, 5, index.metric)
    assert rows.shape[0] == 3
    assert ((rows >= -1) & (rows < SIDE_ROWS)).all()


# ---------------------------------------------------------------------------- huge lengths


def _huge_wal_length() -> bytes:
    body = struct.pack("<IBQ", 2**31 - 1, records.PUT_BATCH, 1) + b"x" * 32
    return struct.pack("<I", crc32c(body)) + body


def _huge_record_counts() -> bytes:
    return struct.pack("<III", 1, 2**32 - 1, 2**32 - 1) + b"\0" * 64


def _huge_manifest_length() -> bytes:
    head = struct.pack("<8sIII", b"PMDBMAN\0", 1, 2**32 - 1, 0)
    return head + struct.pack("<I", crc32c(head)) + b"{}"


def test_a_huge_wal_length_field_is_a_torn_tail_read_without_allocating(wal_root):
    with MemoryBound(4096):
        result = _replay(wal_root, ORIGINAL_WAL + _huge_wal_length())
    assert len(result.records) == len(PAYLOADS) and result.torn_file is not None


@pytest.mark.parametrize("reader", ["record", "manifest", "segment", "sidecar"])
def test_a_huge_length_field_is_checked_against_the_file_before_allocating(
        reader, seg_dir, original_segment, sidecar):
    with MemoryBound(4096), pytest.raises(CorruptionError):
        if reader == "record":
            records.decode(records.PUT_BATCH, _huge_record_counts())
        elif reader == "manifest":
            decode_manifest(_huge_manifest_length(), "huge")
        elif reader == "segment":
            buf = bytearray(original_segment)
            struct.pack_into("<Q", buf, 24, 2**32 - 1)  # record count
            _reseal_segment(buf)
            _write_bytes(f"{seg_dir}/huge.seg", bytes(buf))
            segment.SegmentReader(f"{seg_dir}/huge.seg", membrane_id=SEG_MEMBRANE,
                                  dim=SEG_DIM, metric=SEG_METRIC)
        else:
            buf = bytearray(sidecar[1])
            struct.pack_into("<Q", buf, 16, 2**40)  # n_rows
            struct.pack_into("<I", buf, 24, 2**25)  # n_blocks
            _reseal_sidecar(buf)
            wsbr.WsbrIndex.from_bytes(bytes(buf), n_rows=2**40, dim=SIDE_DIM,
                                      segment_checksum=SIDE_CHECKSUM)


# ---------------------------------------------------------------------------- through the engine


def test_a_forged_wal_record_of_another_dim_fails_the_open_with_corruption(tmp_path):
    path = str(tmp_path / "db")
    with pdb.open(path, shards=1) as db:
        m = db.create_membrane("m", dim=4)
        m.put(1, np.ones(4))
    files = wal.list_wal_files(path, 0)
    seq = wal.read_wal(files, 0).last_seq + 1
    batch = validation.make_put_batch(m.meta.membrane_id, [9], np.ones((1, 3)), None, 3, 100)
    with open(files[-1].path, "ab") as handle:
        handle.write(wal.frame(seq, records.PUT_BATCH, records.encode_put(batch)))
    with pytest.raises(CorruptionError, match="3-d vectors"):
        pdb.open(path)


@pytest.fixture(scope="module")
def closed_database(tmp_path_factory):
    """Segments, sidecars, a manifest and WAL records: every kind of file a database holds."""
    path = tmp_path_factory.mktemp("flips") / "db"
    rng = np.random.default_rng(11)
    with pdb.open(path, shards=1, sync="always") as db:
        m = db.create_membrane("m", dim=6, metric="l2")
        m.put_batch(range(60), rng.standard_normal((60, 6)), [{"i": i} for i in range(60)])
        db.freeze()
        m.delete_batch(range(0, 60, 7))
        m.put_batch(range(60, 90), rng.standard_normal((30, 6)), [{"i": i} for i in range(60, 90)])
        db.freeze()
        for key in range(90, 95):
            m.put(key, rng.standard_normal(6), {"i": key})  # one WAL record each
    return path


def _snapshot(path) -> dict:
    with pdb.open(path, read_only=True) as db:
        db.verify()
        m = db.membrane("m")
        state = {r.id: (r.vector.tobytes(), r.metadata) for r in m.scan()}
        hits = [(h.id, h.score) for h in m.search(np.ones(6), k=15)]
        return {"state": state, "hits": hits}


def _files(path) -> list[str]:
    return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name != "LOCK")


def test_a_flipped_bit_in_any_file_fails_closed_or_changes_nothing(closed_database, tmp_path):
    """Open, verify, scan and search after one flipped bit: CorruptionError, or the same answers.

    The one documented exception: a flip inside the WAL's final record looks exactly like
    a write torn by a crash, and that record is dropped (LevelDB's and RocksDB's rule too).
    """
    original = _snapshot(closed_database)
    rng = random.Random(3)
    outcomes = {"corruption": 0, "unchanged": 0, "torn tail": 0}
    for trial in range(120):
        copy = tmp_path / f"t{trial}"
        shutil.copytree(closed_database, copy)
        victim = rng.choice(_files(copy))
        data = bytearray(open(victim, "rb").read())
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        with open(victim, "wb") as handle:
            handle.write(data)
        try:
            seen = _snapshot(copy)
        except CorruptionError:
            outcomes["corruption"] += 1
            continue
        if seen == original:
            outcomes["unchanged"] += 1
            continue
        written = [f.path for f in wal.list_wal_files(str(copy), 0) if os.path.getsize(f.path)]
        assert victim == written[-1] and set(original["state"]) - set(seen["state"]) == {94}, (
            f"a flipped bit at byte {at} of {victim} changed an answer")
        outcomes["torn tail"] += 1
    assert outcomes["corruption"] > 60, outcomes


@pytest.mark.parametrize("read_only", [False, True])
def test_a_damaged_manifest_fails_every_open_with_corruption(closed_database, tmp_path, read_only):
    copy = tmp_path / "db"
    shutil.copytree(closed_database, copy)
    manifest = sorted((copy / "manifest").glob("MANIFEST-*"))[-1]
    data = bytearray(manifest.read_bytes())
    data[-3] ^= 0x20
    manifest.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="checksum"):
        pdb.open(copy, read_only=read_only)


def test_a_wal_crafted_full_of_plausible_headers_is_refused_quickly(wal_root):
    """Each header claims a record to near the end of the file: checking them one by one
    would CRC the file once per header (quadratic: minutes for these 4 MiB, hours for a
    64 MiB WAL file)."""
    size = 4 << 20
    count = size // wal.HEADER_SIZE
    crafted = b"".join(struct.pack("<IIBQ", 0, size - (i + 1) * wal.HEADER_SIZE - 5, 1, 1)
                       for i in range(count)).ljust(size, b"\0")
    started = time.perf_counter()
    with pytest.raises(CorruptionError):
        _replay(wal_root, crafted)
    assert time.perf_counter() - started < 5
