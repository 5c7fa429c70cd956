"""Segment files: round trips against the written arrays, and fail-closed reading of damaged files."""

from __future__ import annotations

import json
import os
import struct
import threading

import numpy as np
import pytest
from segment_v1 import write_segment_v1

import pomaidb_core as pdb
from pomaidb_core import builder, fs
from pomaidb_core import segment as segment_module
from pomaidb_core.errors import ClosedError, CorruptionError, InvalidArgumentError, StorageError
from pomaidb_core.filters import compile_filter
from pomaidb_core.kernels import crc32c
from pomaidb_core.segment import (
    COLUMN_DATA,
    COLUMN_DIRECTORY,
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_CRC_OFFSET,
    META_BLOB,
    META_OFFSETS,
    SECTION_COUNT,
    SORTED_ROWS,
    TABLE_OFFSET,
    TOMBSTONES,
    SegmentReader,
    write_segment,
)

MEMBRANE, METRIC = 7, "cosine"


def make_rows(rng, n, dim, *, tombstone_every=0):
    ids = np.unique(rng.integers(0, 2**64 - 1, size=2 * n, dtype=np.uint64))[:n]
    rng.shuffle(ids)
    tombstones = np.zeros(n, dtype=bool)
    if tombstone_every:
        tombstones[::tombstone_every] = True
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    metadatas = [
        None
        if i % 3 == 0
        else {}
        if i % 5 == 0
        else {
            "tag": f"t{i % 4}",
            "year": 2000 + i,
            "naïve": "ünï©ødé ✓",
            "list": [i, "x", None, 1.5],
        }
        for i in range(n)
    ]
    return ids, tombstones, vectors, metadatas


def write(path, rows, dim, membrane=MEMBRANE, metric=METRIC):
    ids, tombstones, vectors, metadatas = rows
    return write_segment(
        str(path),
        membrane_id=membrane,
        dim=dim,
        metric=metric,
        ids=ids,
        tombstones=tombstones,
        vectors=vectors,
        metadatas=metadatas,
    )


def open_reader(path, dim, membrane=MEMBRANE, metric=METRIC):
    return SegmentReader(str(path), membrane_id=membrane, dim=dim, metric=metric)


@pytest.mark.parametrize("n,dim", [(1, 1), (2, 1), (17, 3), (64, 16), (301, 97)])
def test_round_trip_returns_exactly_what_was_written(tmp_path, n, dim):
    rng = np.random.default_rng(n * 1000 + dim)
    rows = make_rows(rng, n, dim, tombstone_every=4)
    path = tmp_path / "1-1.seg"
    checksum = write(path, rows, dim)
    reader = open_reader(path, dim)
    ids, tombstones, vectors, metadatas = rows
    assert (reader.n, reader.dim, reader.metric) == (n, dim, METRIC)
    assert reader.nbytes == os.path.getsize(path)
    assert reader.data_checksum == checksum
    assert reader.has_tombstones == bool(tombstones.any())
    np.testing.assert_array_equal(reader.ids, ids)
    np.testing.assert_array_equal(reader.tombstones, tombstones)
    np.testing.assert_array_equal(reader.vectors, vectors)
    assert reader.metadata(range(n)) == metadatas
    reader.verify()
    reader.close()
    assert sorted(os.listdir(tmp_path)) == ["1-1.seg"]


def test_lookup_agrees_with_a_dict_of_ids_to_rows(tmp_path):
    rng = np.random.default_rng(3)
    n, dim = 500, 4
    ids, tombstones, vectors, metadatas = make_rows(rng, n, dim)
    ids[0], ids[1] = 0, 2**64 - 1
    write(tmp_path / "s.seg", (ids, tombstones, vectors, metadatas), dim)
    reader = open_reader(tmp_path / "s.seg", dim)
    oracle = {int(key): row for row, key in enumerate(ids)}
    probes = np.concatenate(
        [
            ids,
            rng.integers(0, 2**63, 500, dtype=np.uint64),
            np.array([1, 2**64 - 2], dtype=np.uint64),
        ]
    )
    expected = [oracle.get(int(key), -1) for key in probes]
    assert reader.lookup(probes).tolist() == expected
    assert reader.lookup(np.array([], dtype=np.uint64)).tolist() == []


def _mappings_of(path):
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                yield start, end


def test_vectors_are_a_zero_copy_aligned_view_of_the_mapped_file(tmp_path):
    rng = np.random.default_rng(5)
    n, dim = 1000, 17
    path = tmp_path / "s.seg"
    write(path, make_rows(rng, n, dim), dim)
    reader = open_reader(path, dim)
    vectors = reader.vectors
    address = vectors.ctypes.data
    assert vectors.dtype == np.float32 and vectors.shape == (n, dim)
    assert vectors.flags.c_contiguous and not vectors.flags.owndata
    assert not vectors.flags.writeable
    assert address % 64 == 0
    assert any(
        start <= address and address + vectors.nbytes <= end for start, end in _mappings_of(path)
    )
    assert reader.vectors is vectors  # verified once, then cached


def test_close_keeps_handed_out_arrays_valid_and_refuses_new_access(tmp_path):
    rng = np.random.default_rng(6)
    rows = make_rows(rng, 50, 8)
    write(tmp_path / "s.seg", rows, 8)
    reader = open_reader(tmp_path / "s.seg", 8)
    vectors = reader.vectors
    reader.close()
    reader.close()
    np.testing.assert_array_equal(vectors, rows[2])
    with pytest.raises(ClosedError):
        _ = reader.ids


def test_concurrent_first_access_returns_one_verified_view(tmp_path):
    rng = np.random.default_rng(8)
    write(tmp_path / "s.seg", make_rows(rng, 2000, 32), 32)
    reader = open_reader(tmp_path / "s.seg", 32)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(reader.vectors)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(view is seen[0] for view in seen)


def test_columns_give_the_same_filter_answers_as_the_metadata(tmp_path):
    rng = np.random.default_rng(9)
    rows = make_rows(rng, 120, 2)
    write(tmp_path / "s.seg", rows, 2)
    reader = open_reader(tmp_path / "s.seg", 2)
    flt = compile_filter({"tag": "t1", "year": {"$gte": 2050}})
    expected = [flt.matches(meta or {}) for meta in rows[3]]
    assert flt.mask(reader.columns).tolist() == expected
    assert reader.columns is reader.columns


@pytest.mark.parametrize(
    "change",
    [
        {"ids": np.array([1, 2, 1], dtype=np.uint64)},
        {
            "ids": np.array([], dtype=np.uint64),
            "tombstones": np.zeros(0, bool),
            "vectors": np.zeros((0, 2), np.float32),
            "metadatas": [],
        },
        {"ids": np.array([1, 2, 3], dtype=np.int64)},
        {"vectors": np.zeros((3, 2), np.float64)},
        {"vectors": np.zeros((3, 3), np.float32)},
        {"tombstones": np.zeros(3, np.uint8)},
        {"metadatas": [None, None]},
        {"metadatas": [None, "text", None]},
        {"metadatas": [None, {"x": float("nan")}, None]},
        {"metadatas": [None, {"x": object()}, None]},
        {"metric": "hamming"},
    ],
)
def test_malformed_input_is_rejected_and_writes_nothing(tmp_path, change):
    args = {
        "membrane_id": 1,
        "dim": 2,
        "metric": "l2",
        "ids": np.array([1, 2, 3], dtype=np.uint64),
        "tombstones": np.zeros(3, bool),
        "vectors": np.zeros((3, 2), np.float32),
        "metadatas": [None] * 3,
    }
    args.update(change)
    with pytest.raises(InvalidArgumentError):
        write_segment(str(tmp_path / "s.seg"), **args)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failing_op", ["create", "write", "fsync", "rename"])
def test_failed_write_raises_storage_error_and_leaves_no_file(tmp_path, failing_op):
    rows = make_rows(np.random.default_rng(1), 10, 2)

    def hook(op, path):
        if op == failing_op:
            raise OSError(28, "No space left on device")

    fs.set_fault_hook(hook)
    try:
        with pytest.raises(StorageError):
            write(tmp_path / "s.seg", rows, 2)
    finally:
        fs.set_fault_hook(None)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "membrane,dim,metric", [(8, 3, METRIC), (MEMBRANE, 4, METRIC), (MEMBRANE, 3, "l2")]
)
def test_opening_with_other_membrane_dim_or_metric_is_corruption(tmp_path, membrane, dim, metric):
    write(tmp_path / "s.seg", make_rows(np.random.default_rng(2), 5, 3), 3)
    with pytest.raises(CorruptionError):
        SegmentReader(str(tmp_path / "s.seg"), membrane_id=membrane, dim=dim, metric=metric)


def test_missing_or_empty_file_is_corruption(tmp_path):
    with pytest.raises(CorruptionError):
        open_reader(tmp_path / "absent.seg", 3)
    (tmp_path / "empty.seg").write_bytes(b"")
    with pytest.raises(CorruptionError):
        open_reader(tmp_path / "empty.seg", 3)


# ---------------------------------------------------------------------------- damaged files


def small_segment(tmp_path):
    """A segment with every section non-trivial: tombstones, unicode and empty metadata."""
    rows = make_rows(np.random.default_rng(11), 6, 3, tombstone_every=4)
    path = tmp_path / "good.seg"
    write(path, rows, 3)
    return path.read_bytes(), rows


FILTERS = [compile_filter(spec) for spec in (
    {"tag": "t1"}, {"year": {"$gte": 2003}}, {"list": {"$contains": "x"}}, {"naïve": {"$like": "ü%"}},
    {"list": {"$is_empty": True}}, {"tag": {"$exists": False}})]


def each_access_is_right_or_corruption(path, rows, dim):
    """Every read returns the written value or raises CorruptionError; True if any raised."""
    ids, tombstones, vectors, metadatas = rows
    probes = np.concatenate([ids, np.array([12345, 2**64 - 1], dtype=np.uint64)])
    expected_rows = list(range(len(ids))) + [-1, -1]
    checks = [
        *(lambda r, f=f: f.mask(r.columns).tolist() == [f.matches(m) for m in metadatas]
          for f in FILTERS),
        lambda r: np.array_equal(r.ids, ids),
        lambda r: np.array_equal(r.tombstones, tombstones),
        lambda r: np.array_equal(r.vectors, vectors),
        lambda r: r.lookup(probes).tolist() == expected_rows,
        lambda r: r.metadata(range(len(ids))) == metadatas,
        lambda r: r.verify() is None,
    ]
    try:
        reader = open_reader(path, dim)
    except CorruptionError:
        return True
    detected = False
    for check in checks:
        try:
            assert check(reader), f"wrong answer from a damaged segment at {path}"
        except CorruptionError:
            detected = True
    reader.close()
    return detected


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_is_detected_and_never_answers_wrongly(tmp_path, mask):
    good, rows = small_segment(tmp_path)
    path = tmp_path / "bad.seg"
    for offset in range(len(good)):
        damaged = bytearray(good)
        damaged[offset] ^= mask
        path.write_bytes(damaged)
        assert each_access_is_right_or_corruption(path, rows, 3), f"flip at {offset} unnoticed"


def test_truncation_at_every_length_and_extension_are_corruption(tmp_path):
    good, _ = small_segment(tmp_path)
    path = tmp_path / "bad.seg"
    for length in range(len(good)):
        path.write_bytes(good[:length])
        with pytest.raises(CorruptionError):
            open_reader(path, 3)
    path.write_bytes(good + b"\0")
    with pytest.raises(CorruptionError):
        open_reader(path, 3)


def _section(data, index):
    return struct.unpack_from("<QQ", data, TABLE_OFFSET + 24 * index)


def reseal(data):
    """Recompute every CRC, as a hostile writer would, so only structural checks can object."""
    data = bytearray(data)
    for index in range(SECTION_COUNT):
        offset, length = _section(data, index)
        struct.pack_into(
            "<I",
            data,
            TABLE_OFFSET + 24 * index + 16,
            crc32c(bytes(data[offset : offset + length])),
        )
    struct.pack_into("<I", data, HEADER_CRC_OFFSET, crc32c(bytes(data[:HEADER_CRC_OFFSET])))
    return bytes(data)


def test_forged_header_fields_with_valid_checksums_are_rejected_at_open(tmp_path):
    good, _ = small_segment(tmp_path)
    path = tmp_path / "bad.seg"
    for offset, fmt, value in [
        (24, "<Q", 2**40),
        (24, "<Q", 0),
        (32, "<Q", 2**62),
        (12, "<I", 2),
        (45, "<B", 8),
        (TABLE_OFFSET + 20, "<I", 9),
        (TABLE_OFFSET + 8, "<Q", 2**63),
        (TABLE_OFFSET + 48, "<Q", 1024),
    ]:
        damaged = bytearray(good)
        struct.pack_into(fmt, damaged, offset, value)
        path.write_bytes(reseal(damaged))
        with pytest.raises(CorruptionError):
            open_reader(path, 3)


def _forge(good, index, element_format, position, value):
    data = bytearray(good)
    offset, _ = _section(data, index)
    struct.pack_into(
        element_format, data, offset + position * struct.calcsize(element_format), value
    )
    return reseal(data)


def test_forged_no_tombstones_flag_is_caught_when_tombstones_are_read(tmp_path):
    good, rows = small_segment(tmp_path)
    damaged = bytearray(good)
    struct.pack_into("<I", damaged, 12, 0)
    (tmp_path / "bad.seg").write_bytes(reseal(damaged))
    assert each_access_is_right_or_corruption(tmp_path / "bad.seg", rows, 3)


@pytest.mark.parametrize(
    "index,fmt,position,value",
    [
        (TOMBSTONES, "<B", 1, 2),  # neither 0 nor 1
        (SORTED_ROWS, "<I", 0, 10**6),  # row out of range
        (SORTED_ROWS, "<I", 0, 1),  # points at another id's row
        (META_OFFSETS, "<Q", 1, 10**9),  # past the metadata section
        (META_OFFSETS, "<Q", 0, 1),  # does not start at 0
    ],
)
def test_forged_sections_with_valid_checksums_never_answer_wrongly(
    tmp_path, index, fmt, position, value
):
    good, rows = small_segment(tmp_path)
    path = tmp_path / "bad.seg"
    path.write_bytes(_forge(good, index, fmt, position, value))
    assert each_access_is_right_or_corruption(path, rows, 3)


def test_forged_metadata_that_is_not_an_object_is_corruption(tmp_path):
    rows = (np.array([5], np.uint64), np.zeros(1, bool), np.ones((1, 1), np.float32), [{"a": 1234}])
    write(tmp_path / "good.seg", rows, 1)
    good = (tmp_path / "good.seg").read_bytes()
    for forged_json in (b"[1,2,3,45]", b'{"a":12\xff}', b'{"a":NaN }', b'{"a":1230', b"0"):
        offset, length = _section(good, META_BLOB)
        data = bytearray(good)
        data[offset : offset + length] = forged_json.ljust(length, b" ")[:length]
        (tmp_path / "bad.seg").write_bytes(reseal(data))
        reader = open_reader(tmp_path / "bad.seg", 1)
        with pytest.raises(CorruptionError):
            reader.metadata([0])
        with pytest.raises(CorruptionError):
            reader.verify()


def test_metadata_reads_rows_in_any_order_and_names_a_damaged_row(tmp_path):
    """Rows are decoded a chunk per JSON call; a damaged row fails the read that asks for it
    (naming it), while reads that skip it still answer."""
    rows = make_rows(np.random.default_rng(3), 600, 2)
    metadatas = rows[3]
    write(tmp_path / "good.seg", rows, 2)
    reader = open_reader(tmp_path / "good.seg", 2)
    wanted = [599, 0, 7, 7, 300, 256, 255, *range(500, 300, -1)]
    assert reader.metadata(wanted) == [metadatas[row] for row in wanted]
    with pytest.raises(InvalidArgumentError):
        reader.metadata([1, 600])
    reader.close()

    good = (tmp_path / "good.seg").read_bytes()
    damaged = next(row for row in range(300, 600) if metadatas[row])
    offsets = np.frombuffer(good, np.uint64, len(metadatas) + 1, _section(good, META_OFFSETS)[0])
    start = _section(good, META_BLOB)[0] + int(offsets[damaged])
    data = bytearray(good)
    data[start] = ord("[")  # '[' where the row's '{' was: no longer JSON
    (tmp_path / "bad.seg").write_bytes(reseal(data))
    reader = open_reader(tmp_path / "bad.seg", 2)
    with pytest.raises(CorruptionError, match=f"row {damaged} "):
        reader.metadata(range(600))
    others = [row for row in range(600) if row != damaged]
    assert reader.metadata(others) == [metadatas[row] for row in others]


# ---------------------------------------------------------------------------- format v2 columns


def rag_rows(n, dim=2):
    """LangChain-shaped rows: a long page text (a payload field) beside short filterable fields."""
    ids = np.arange(10, 10 + n, dtype=np.uint64)
    metadatas = [{"_lc_text": f"{i} " + "page text " * 40, "category": f"c{i % 4}", "page": i,
                  "tags": ["a", i % 3], "author": {"name": f"n{i % 2}"}} for i in range(n)]
    return ids, np.zeros(n, bool), np.ones((n, dim), np.float32), metadatas


def count_json_decodes(monkeypatch):
    """The rows whose JSON metadata is decoded from now on, in order."""
    rows = []
    real = SegmentReader._metadata_json

    def counting(reader, chunk):
        rows.extend(chunk)
        return real(reader, chunk)

    monkeypatch.setattr(SegmentReader, "_metadata_json", counting)
    return rows


def test_v2_filters_a_reopened_segment_without_decoding_any_rows_json(tmp_path, monkeypatch):
    rows = rag_rows(50)
    write(tmp_path / "s.seg", rows, 2)
    reader = open_reader(tmp_path / "s.seg", 2)
    decodes = count_json_decodes(monkeypatch)
    for spec in ({"category": "c1"}, {"page": {"$between": [3, 9]}}, {"tags": {"$contains": 2}},
                 {"category": {"$like": "c%"}, "tags": {"$all": ["a"]}}):
        flt = compile_filter(spec)
        assert flt.mask(reader.columns).tolist() == [flt.matches(m) for m in rows[3]]
    assert decodes == []
    assert reader.format_version == FORMAT_VERSION


def test_v2_columns_are_zero_copy_views_of_the_mapped_file(tmp_path):
    write(tmp_path / "s.seg", rag_rows(1000), 2)
    reader = open_reader(tmp_path / "s.seg", 2)
    column = reader.columns.column("page")
    for array in (column.kind, column.num):
        address = array.ctypes.data
        assert not array.flags.owndata and not array.flags.writeable
        assert any(start <= address and address + array.nbytes <= end
                   for start, end in _mappings_of(tmp_path / "s.seg"))
    assert column.scode.strides == (0,)  # no string in the field: a constant, not an array


def test_payload_fields_get_no_arrays_and_are_built_from_json_when_a_filter_names_them(
        tmp_path, monkeypatch):
    rows = rag_rows(30)
    write(tmp_path / "s.seg", rows, 2)
    reader = open_reader(tmp_path / "s.seg", 2)
    _, length = _section((tmp_path / "s.seg").read_bytes(), COLUMN_DATA)
    assert length < 30 * 100  # the 400-byte page texts are not copied into the columns
    decodes = count_json_decodes(monkeypatch)
    flt = compile_filter({"_lc_text": {"$text_match": "7 page"}})
    assert flt.mask(reader.columns).tolist() == [flt.matches(m) for m in rows[3]]
    assert len(decodes) == 30  # every row once, for this field only
    flt.mask(reader.columns)
    assert len(decodes) == 30  # then kept


def test_dotted_filters_on_v2_decode_only_the_rows_holding_objects(tmp_path, monkeypatch):
    rows = rag_rows(20)
    rows[3][5] = {"author": "plain"}  # this row holds no object under "author"
    write(tmp_path / "s.seg", rows, 2)
    reader = open_reader(tmp_path / "s.seg", 2)
    decodes = count_json_decodes(monkeypatch)
    flt = compile_filter({"author.name": "n1"})
    assert flt.mask(reader.columns).tolist() == [flt.matches(m) for m in rows[3]]
    assert len(decodes) == 19


def test_a_v1_segment_opens_and_answers_as_the_same_rows_in_v2(tmp_path):
    rows = make_rows(np.random.default_rng(12), 200, 3, tombstone_every=5)
    ids, tombstones, vectors, metadatas = rows
    checksum = write_segment_v1(str(tmp_path / "v1.seg"), membrane_id=MEMBRANE, dim=3,
                                metric=METRIC, ids=ids, tombstones=tombstones, vectors=vectors,
                                metadatas=metadatas)
    write(tmp_path / "v2.seg", rows, 3)
    old, new = open_reader(tmp_path / "v1.seg", 3), open_reader(tmp_path / "v2.seg", 3)
    assert (old.format_version, new.format_version) == (1, FORMAT_VERSION)
    assert old.data_checksum == checksum
    old.verify()
    for name in ("ids", "tombstones", "vectors"):
        np.testing.assert_array_equal(getattr(old, name), getattr(new, name))
    assert old.metadata(range(200)) == new.metadata(range(200)) == metadatas
    assert old.lookup(ids[::7]).tolist() == new.lookup(ids[::7]).tolist()
    for flt in FILTERS:
        assert flt.mask(old.columns).tolist() == flt.mask(new.columns).tolist()


def _forge_columns(good, edit):
    """Rewrite the column sections through `edit(directory dict, column data bytearray)` and
    reseal every CRC (the directory's per-array ones too): only structural checks can object."""
    sections = [bytes(good[offset:offset + length])
                for offset, length in (_section(good, i) for i in range(SECTION_COUNT))]
    directory = json.loads(sections[COLUMN_DIRECTORY])
    column_data = bytearray(sections[COLUMN_DATA])
    edit(directory, column_data)
    for entry in directory["fields"]:
        for place in entry.get("arrays", {}).values():
            place[2] = crc32c(bytes(column_data[place[0]:place[0] + place[1]]))
    sections[COLUMN_DIRECTORY] = json.dumps(directory).encode()
    sections[COLUMN_DATA] = bytes(column_data)
    offsets, size = segment_module._layout([len(s) for s in sections], HEADER_BYTES)
    fields = list(segment_module._FIXED.unpack_from(good, 0))
    fields[5] = size
    header = segment_module._pack_header(
        tuple(fields), [(o, len(s), crc32c(s)) for o, s in zip(offsets, sections)])
    data = bytearray(header)
    for offset, section in zip(offsets, sections):
        data += bytes(offset - len(data)) + section
    return bytes(data)


def _set(entry_name, array, index, value, dtype):
    def edit(directory, column_data):
        entry = next(e for e in directory["fields"] if e["name"] == entry_name)
        offset = entry["arrays"][array][0]
        column_data[offset + index * dtype.itemsize:offset + (index + 1) * dtype.itemsize] = \
            np.array([value], dtype=dtype).tobytes()
    return edit


def _directory(edit_entry):
    def edit(directory, _):
        edit_entry(directory["fields"][0])  # "tag"
    return edit


@pytest.mark.parametrize("edit,caught_at_use", [
    (_set("tag", "kind", 1, 9, np.dtype("i1")), True),  # no such kind
    (_set("tag", "scode", 1, 99, np.dtype("<i4")), True),  # past the vocab
    (_set("tag", "kind", 1, 3, np.dtype("i1")), True),  # a number with a string code
    (_set("year", "kind", 1, 1, np.dtype("i1")), False),  # consistent, but not what the JSON says
    (_set("year", "num", 1, 1999.0, np.dtype("<f8")), False),
    (_set("list", "element_kind", 0, 0, np.dtype("i1")), True),  # an element that is missing
    (_set("list", "list_offsets", 1, 99, np.dtype("<u8")), True),
    (_set("tag", "vocab_offsets", 1, 0, np.dtype("<u8")), False),  # unsorted, repeated strings
    (_directory(lambda e: e["arrays"]["kind"].__setitem__(0, 4)), True),  # misaligned
    (_directory(lambda e: e["arrays"]["kind"].__setitem__(1, 7)), True),  # wrong length
    (_directory(lambda e: e.__setitem__("vocab", 50)), True),
    (_directory(lambda e: e["big"].append([10**6, 1])), True),
    (_directory(lambda e: e["arrays"].pop("scode")), True),
    (_directory(lambda e: e.__setitem__("payload", 1)), True),
], ids=["kind-9", "scode-past-vocab", "number-with-code", "kind-none", "num", "element-missing",
        "list-offsets", "vocab-order", "misaligned", "wrong-length", "vocab-count", "big-row",
        "scode-dropped", "payload-not-bool"])
def test_forged_columns_with_valid_checksums_fail_closed(tmp_path, edit, caught_at_use):
    rows = make_rows(np.random.default_rng(13), 40, 2)
    write(tmp_path / "good.seg", rows, 2)
    (tmp_path / "bad.seg").write_bytes(_forge_columns((tmp_path / "good.seg").read_bytes(), edit))
    reader = open_reader(tmp_path / "bad.seg", 2)
    with pytest.raises(CorruptionError):
        reader.verify()
    if caught_at_use:
        with pytest.raises(CorruptionError):
            for flt in FILTERS:
                flt.mask(reader.columns)


def test_a_flipped_byte_in_a_column_array_fails_the_filter_that_reads_it(tmp_path):
    rows = make_rows(np.random.default_rng(14), 40, 2)
    write(tmp_path / "good.seg", rows, 2)
    good = (tmp_path / "good.seg").read_bytes()
    offset, _ = _section(good, COLUMN_DATA)
    data = bytearray(good)
    data[offset] ^= 1  # the first array: the kind of the first field ("tag")
    (tmp_path / "bad.seg").write_bytes(bytes(data))
    reader = open_reader(tmp_path / "bad.seg", 2)
    year = compile_filter({"year": {"$gte": 2010}})
    assert year.mask(reader.columns).tolist() == [year.matches(m or {}) for m in rows[3]]
    with pytest.raises(CorruptionError, match="tag"):
        compile_filter({"tag": "t1"}).mask(reader.columns)


# ---------------------------------------------------------------------------- through the engine


def _v1_writer(path, *, texts, keywords, **fields):
    """The v1 writer in the builder's place: v1 files hold no texts (these rows have none)."""
    assert all(t is None for t in texts)
    return write_segment_v1(path, **fields)


def _fill(path, rows, monkeypatch=None):
    """A database of `rows` over 2 shards in 4 segments each (the last of deletes, all left
    uncompacted); v1 segments when monkeypatched."""
    if monkeypatch is not None:
        monkeypatch.setattr(builder, "write_segment", _v1_writer)
    ids, _, vectors, metadatas = rows
    with pdb.open(path, shards=2, auto_freeze=False, auto_compact=False) as db:
        m = db.create_membrane("m", dim=vectors.shape[1], metric="l2")
        for part in np.array_split(np.arange(len(ids)), 3):
            m.put_batch(ids[part], vectors[part], [metadatas[i] for i in part])
            db.freeze()
        m.delete_batch(ids[::9])
        db.freeze()
    if monkeypatch is not None:
        monkeypatch.undo()


def _versions(path):
    return sorted({struct.unpack_from("<I", p.read_bytes(), 8)[0] for p in path.rglob("*.seg")})


def _answers(path):
    with pdb.open(path, read_only=True) as db:
        m = db.membrane("m")
        query = np.linspace(-1, 1, 4, dtype=np.float32)
        hits = [[(h.id, h.score, h.metadata) for h in m.search(query, k=7, filter=f, exact=exact)]
                for f in (None, {"tag": "t1"}, {"year": {"$lt": 2100}}, {"list": {"$contains": "x"}})
                for exact in (True, False)]
        return hits, sorted((r.id, r.metadata) for r in m.scan({"tag": {"$ne": "t2"}}))


def test_a_database_of_v1_segments_answers_as_v2_and_compaction_rewrites_it_as_v2(
        tmp_path, monkeypatch):
    rows = make_rows(np.random.default_rng(15), 300, 4)
    _fill(tmp_path / "old", rows, monkeypatch)
    _fill(tmp_path / "new", rows)
    assert (_versions(tmp_path / "old"), _versions(tmp_path / "new")) == ([1], [FORMAT_VERSION])
    expected = _answers(tmp_path / "new")
    assert _answers(tmp_path / "old") == expected
    with pdb.open(tmp_path / "old") as db:
        db.verify()
        db.compact()
    assert _versions(tmp_path / "old") == [FORMAT_VERSION]
    assert _answers(tmp_path / "old") == expected


def test_a_filtered_search_after_reopen_decodes_only_the_hits_json(tmp_path, monkeypatch):
    rows = rag_rows(400, dim=4)
    rows[2][:] = np.random.default_rng(16).standard_normal((400, 4))
    _fill(tmp_path / "db", rows)
    decodes = count_json_decodes(monkeypatch)
    with pdb.open(tmp_path / "db", read_only=True) as db:
        hits = db.membrane("m").search(np.ones(4), k=5, filter={"category": "c2"})
    assert len(hits) == 5 and all(h.metadata["category"] == "c2" for h in hits)
    assert len(decodes) <= 2 * 5  # each shard decodes its own best k, nothing else


def test_compact_rewrites_a_lone_v1_segment_that_has_no_dead_rows(tmp_path, monkeypatch):
    rows = make_rows(np.random.default_rng(17), 60, 4)
    ids, _, vectors, metadatas = rows
    monkeypatch.setattr(builder, "write_segment", _v1_writer)
    with pdb.open(tmp_path / "db", shards=1, auto_freeze=False, auto_compact=False) as db:
        db.create_membrane("m", dim=4, metric="l2").put_batch(ids, vectors, metadatas)
        db.freeze()
    monkeypatch.undo()
    assert _versions(tmp_path / "db") == [1]
    with pdb.open(tmp_path / "db") as db:
        before = sorted((r.id, r.metadata) for r in db.membrane("m").scan())
        db.compact()
        assert sorted((r.id, r.metadata) for r in db.membrane("m").scan()) == before
    assert _versions(tmp_path / "db") == [FORMAT_VERSION]
