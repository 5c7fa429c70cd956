"""Typed metadata columns inside a v2 segment: the column directory and column data sections.

The segment writer (segment.py) hands `encode` the rows' MetadataColumns and writes the two
byte strings it returns as the sections of kinds 8 and 9; the reader hands `StoredColumnsReader`
those sections, which serves StoredColumns (columns.py) without decoding any row's JSON.

Column directory (section kind 8): UTF-8 JSON, one object:

    {"fields": [entry, ...]}     one entry per top-level field some row holds, first seen first
    entry := {"name": str, "payload": true}
                                 a payload field (its distinct strings average more than
                                 PAYLOAD_STRING_BYTES bytes: page text, a serialized node):
                                 no arrays; a filter that names it builds its column from the
                                 rows' JSON, once
           | {"name": str, "payload": false, "vocab": V, "elements": m,
              "big": [[row, int], ...], "element_big": [[element, int], ...],
              "arrays": {array name: [offset, length, crc32c], ...}}

"big" lists the rows holding an int that float64 cannot hold exactly (num keeps its nearest
float; filters re-check those rows), "element_big" the same for list elements. Offsets are
relative to the start of the column data section (kind 9) and multiples of 64 (gaps are zero);
lengths are exactly as below; each CRC32C covers its array's bytes and is checked the first time
the field is used (the section table's CRC of the whole section is checked by verify()).
The arrays, all little-endian, n = the segment's rows:

    array          type       count   present when                content (columns.py)
    kind           i8         n       always                      KIND_* of each row
    num            f64        n       a row is a bool or number   bools 0/1, numbers (nearest)
    scode          i32        n       a row is a str              code into vocab; -1 elsewhere
    vocab_offsets  u64        V + 1   V > 0                       string c is vocab[off[c]:off[c+1]]
    vocab          UTF-8      any     V > 0                       the distinct strings of the
                                                                  field (rows and list elements),
                                                                  sorted by code point, no repeats
    list_offsets   u64        n + 1   a row is a list             row r's elements are
                                                                  [off[r], off[r+1]); empty
                                                                  for rows that hold no list
    element_kind   i8         m       a row is a list             KIND_* of each element key
    element_num    f64        m       a row is a list             as num, for elements
    element_scode  i32        m       a row is a list             as scode, for elements

A list row stores its distinct element keys (columns.element_key), ordered by (kind, number,
string code, exact value). Absent num and scode read as 0.0 and -1. Rows whose value is a nested
object are kind OTHER; their objects come from the rows' JSON, only when a dotted filter asks.
Every structural invariant is checked when a field is loaded (fail closed); verify() also
checks the columns against the rows' JSON, the source of truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .columns import (
    KIND_BOOL,
    KIND_LIST,
    KIND_MISSING,
    KIND_NUMBER,
    KIND_OTHER,
    KIND_STR,
    Column,
    FieldColumn,
    ListElements,
    MetadataColumns,
    SortedVocab,
    StoredColumn,
    StoredColumns,
    element_parts,
)
from .errors import CorruptionError
from .kernels import crc32c

PAYLOAD_STRING_BYTES = 256  # mean bytes per distinct string above which a field is payload
ALIGN = 64

# array name -> (dtype, count: "n", "n+1", "V+1", "m" or None for any length)
ARRAYS: dict[str, tuple[np.dtype, str | None]] = {
    "kind": (np.dtype("i1"), "n"),
    "num": (np.dtype("<f8"), "n"),
    "scode": (np.dtype("<i4"), "n"),
    "vocab_offsets": (np.dtype("<u8"), "V+1"),
    "vocab": (np.dtype("u1"), None),
    "list_offsets": (np.dtype("<u8"), "n+1"),
    "element_kind": (np.dtype("i1"), "m"),
    "element_num": (np.dtype("<f8"), "m"),
    "element_scode": (np.dtype("<i4"), "m"),
}
_LIST_ARRAYS = ("list_offsets", "element_kind", "element_num", "element_scode")
_ENTRY_KEYS = {"name", "payload", "vocab", "elements", "big", "element_big", "arrays"}


# ---------------------------------------------------------------------------- writing


def encode(columns: MetadataColumns, n: int) -> tuple[bytes, bytes]:
    """(column directory, column data) for rows 0..n-1 of freshly built columns."""
    data = bytearray()
    entries = []
    for name in columns.fields():
        column = columns.column(name)
        assert isinstance(column, FieldColumn)  # built by from_list, so no stale vocab
        entries.append(_encode_field(name, column, n, data))
    directory = json.dumps({"fields": entries}, ensure_ascii=False, separators=(",", ":"))
    return directory.encode("utf-8"), bytes(data)


def _is_payload(vocab: list[str]) -> bool:
    if not vocab:
        return False
    return sum(len(text.encode("utf-8")) for text in vocab) > PAYLOAD_STRING_BYTES * len(vocab)


def _encode_field(name: str, column: FieldColumn, n: int, data: bytearray) -> dict:
    if _is_payload(column.vocab):
        return {"name": name, "payload": True}
    kind = column.kind[:n]
    list_rows = np.flatnonzero(kind == KIND_LIST).tolist()
    elements = [sorted((element_parts(key) for key in column.lists[row]), key=_element_order)
                for row in list_rows] if list_rows else []
    vocab = sorted({*column.vocab, *(e[2] for row in elements for e in row if e[0] == KIND_STR)})
    code_of = {text: code for code, text in enumerate(vocab)}
    arrays = {"kind": kind}
    if ((kind == KIND_BOOL) | (kind == KIND_NUMBER)).any():
        arrays["num"] = column.num[:n]
    if column.vocab:
        remap = np.array([code_of[text] for text in column.vocab], dtype=np.int32)
        scode = column.scode[:n]
        arrays["scode"] = np.where(scode >= 0, remap[np.maximum(scode, 0)], -1).astype(np.int32)
    if vocab:
        blobs = [text.encode("utf-8") for text in vocab]
        offsets = np.zeros(len(vocab) + 1, dtype=np.uint64)
        np.cumsum([len(blob) for blob in blobs], out=offsets[1:])
        arrays["vocab_offsets"] = offsets
        arrays["vocab"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    element_big: list[list[int]] = []
    if list_rows:
        arrays.update(_encode_lists(n, list_rows, elements, code_of, element_big))
    return {
        "name": name, "payload": False, "vocab": len(vocab),
        "elements": sum(len(row) for row in elements),
        "big": sorted([row, value] for row, value in column.big.items()),
        "element_big": element_big,
        "arrays": {key: _append(data, array) for key, array in arrays.items()},
    }


def _element_order(parts: tuple[int, float, Any]) -> tuple:
    kind, number, exact = parts
    return kind, number, exact if kind == KIND_STR else "", exact if kind == KIND_NUMBER else 0


def _encode_lists(n: int, list_rows: list[int], elements: list[list[tuple]],
                  code_of: dict[str, int], element_big: list[list[int]]) -> dict[str, np.ndarray]:
    counts = np.zeros(n + 1, dtype=np.uint64)
    counts[np.array(list_rows) + 1] = [len(row) for row in elements]
    flat = [e for row in elements for e in row]
    for i, (kind, number, exact) in enumerate(flat):
        if kind == KIND_NUMBER and isinstance(exact, int) and number != exact:
            element_big.append([i, exact])
    return {
        "list_offsets": np.cumsum(counts, dtype=np.uint64),
        "element_kind": np.array([e[0] for e in flat], dtype=np.int8),
        "element_num": np.array([e[1] for e in flat], dtype=np.float64),
        "element_scode": np.array([code_of[e[2]] if e[0] == KIND_STR else -1 for e in flat],
                                  dtype=np.int32),
    }


def _append(data: bytearray, array: np.ndarray) -> list[int]:
    """Append at the next 64-byte boundary; [offset, length, crc32c] for the directory."""
    data += bytes(-len(data) % ALIGN)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    offset = len(data)
    data += raw
    return [offset, len(raw), crc32c(raw)]


# ---------------------------------------------------------------------------- reading


class StoredColumnsReader:
    """Validates a column directory and builds each field's column on demand.

    `data` is the mapped section 8; `decode_rows(rows)` decodes rows' JSON metadata (for
    payload fields and nested objects); `corrupt(what)` makes the CorruptionError to raise."""

    def __init__(self, directory: memoryview, data: memoryview, n: int,
                 decode_rows: Callable[[list[int]], list[dict | None]],
                 corrupt: Callable[[str], CorruptionError]) -> None:
        self._data = data
        self._n = n
        self._decode_rows = decode_rows
        self._corrupt = corrupt
        self.entries = self._parse(directory)

    def columns(self) -> StoredColumns:
        loaders = {name: (lambda name=name: self.load(name)) for name in self.entries}
        return StoredColumns(self._n, loaders)

    # ------------------------------------------------------------ the directory

    def _parse(self, directory: memoryview) -> dict[str, dict]:
        try:
            parsed = json.loads(bytes(directory).decode("utf-8"))
        except (ValueError, RecursionError):
            raise self._corrupt("column directory is not valid JSON") from None
        fields = parsed.get("fields") if isinstance(parsed, dict) else None
        if not isinstance(fields, list) or set(parsed) != {"fields"}:
            raise self._corrupt("column directory lacks its field list")
        entries: dict[str, dict] = {}
        for entry in fields:
            name = self._check_entry(entry)
            if name in entries:
                raise self._corrupt(f"column directory lists field {name!r} twice")
            entries[name] = entry
        return entries

    def _check_entry(self, entry: Any) -> str:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise self._corrupt("column directory entry without a name")
        name = entry["name"]
        if entry.get("payload") is True and set(entry) == {"name", "payload"}:
            return name
        if entry.get("payload") is not False or set(entry) != _ENTRY_KEYS:
            raise self._corrupt(f"column directory entry of {name!r} is malformed")
        vocab, elements = entry["vocab"], entry["elements"]
        if not (_is_count(vocab) and _is_count(elements)) or elements > len(self._data):
            raise self._corrupt(f"column {name!r} has bad vocab or element counts")
        counts = {"n": self._n, "n+1": self._n + 1, "V+1": vocab + 1, "m": elements}
        arrays = entry["arrays"]
        if not isinstance(arrays, dict) or "kind" not in arrays or not set(arrays) <= set(ARRAYS):
            raise self._corrupt(f"column {name!r} lists unknown arrays")
        for array, place in arrays.items():
            dtype, count = ARRAYS[array]
            self._check_place(name, array, place, None if count is None else
                              counts[count] * dtype.itemsize)
        if ("vocab" in arrays) != (vocab > 0) or ("vocab_offsets" in arrays) != (vocab > 0):
            raise self._corrupt(f"column {name!r}: vocab arrays disagree with its vocab count")
        if len({array in arrays for array in _LIST_ARRAYS}) != 1:
            raise self._corrupt(f"column {name!r} has some of its list arrays only")
        self._check_bigs(name, entry["big"], self._n)
        self._check_bigs(name, entry["element_big"], elements)
        return name

    def _check_bigs(self, name: str, bigs: Any, limit: int) -> None:
        if not isinstance(bigs, list) or not all(
                isinstance(b, list) and len(b) == 2 and _is_count(b[0]) and b[0] < limit
                and type(b[1]) is int for b in bigs) or len({b[0] for b in bigs}) != len(bigs):
            raise self._corrupt(f"column {name!r}: malformed exact ints")

    def _check_place(self, name: str, array: str, place: Any, length: int | None) -> None:
        if not (isinstance(place, list) and len(place) == 3 and all(map(_is_count, place))):
            raise self._corrupt(f"column {name!r}: bad place of array {array}")
        offset, size, crc = place
        if (offset % ALIGN or offset + size > len(self._data) or crc >= 2**32
                or (length is not None and size != length)):
            raise self._corrupt(f"column {name!r}: array {array} is outside its section or of "
                                "the wrong length")

    # ------------------------------------------------------------ one field

    def load(self, name: str) -> Column | None:
        entry = self.entries[name]
        if entry["payload"]:
            return self._from_json(name)
        arrays = {key: self._array(name, key, place) for key, place in entry["arrays"].items()}
        n = self._n
        kind = arrays["kind"]
        num = arrays.get("num", np.broadcast_to(np.float64(0.0), (n,)))
        scode = arrays.get("scode", np.broadcast_to(np.int32(-1), (n,)))
        vocab_offsets = arrays.get("vocab_offsets", np.zeros(1, np.uint64))
        vocab_blob = arrays.get("vocab", np.zeros(0, np.uint8))
        if not _is_partition(vocab_offsets, len(vocab_blob)):
            raise self._corrupt(f"column {name!r}: vocab offsets are not a partition of the vocab")
        vocab = SortedVocab(vocab_offsets, memoryview(vocab_blob))
        elements = None
        if "list_offsets" in arrays:
            elements = ListElements(arrays["list_offsets"], arrays["element_kind"],
                                    arrays["element_num"], arrays["element_scode"],
                                    dict(map(tuple, entry["element_big"])))
        big = dict(map(tuple, entry["big"]))
        self._check_field(name, kind, num, scode, vocab, big, elements)
        return StoredColumn(kind, num, scode, vocab, big, elements,
                            lambda: self._objects(name, kind))

    def _array(self, name: str, key: str, place: list[int]) -> np.ndarray:
        offset, length, crc = place
        view = self._data[offset : offset + length]
        if crc32c(view) != crc:
            raise self._corrupt(f"column {name!r}: array {key} checksum mismatch")
        return np.frombuffer(view, dtype=ARRAYS[key][0])

    def _check_field(self, name: str, kind: np.ndarray, num: np.ndarray, scode: np.ndarray,
                     vocab: SortedVocab, big: dict[int, int], elements: ListElements | None) -> None:
        problem = _kind_problem(kind, num, scode, len(vocab), "row")
        if problem is None and any(kind[row] != KIND_NUMBER for row in big):
            problem = "an exact int is recorded for a row that holds no number"
        if problem is None and ((kind == KIND_LIST).any() != (elements is not None)):
            problem = "list rows and list arrays disagree"
        if problem is None and elements is not None:
            problem = _list_problem(kind, elements, len(vocab))
        if problem is not None:
            raise self._corrupt(f"column {name!r}: {problem}")

    def _from_json(self, name: str) -> Column | None:
        metadatas = self._decode_rows(list(range(self._n)))
        only = [None if m is None or name not in m else {name: m[name]} for m in metadatas]
        return MetadataColumns.from_list(only).column(name)

    def _objects(self, name: str, kind: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(kind == KIND_OTHER).tolist()
        out = np.full(self._n, None, dtype=object)
        for row, metadata in zip(rows, self._decode_rows(rows)):
            value = None if metadata is None else metadata.get(name)
            if not isinstance(value, dict):
                raise self._corrupt(f"column {name!r} says row {row} holds an object; its JSON "
                                    "does not")
            out[row] = value
        return out


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**63


def _is_partition(offsets: np.ndarray, total: int) -> bool:
    return bool(offsets[0] == 0 and offsets[-1] == total and (offsets[1:] >= offsets[:-1]).all())


def _kind_problem(kind: np.ndarray, num: np.ndarray, scode: np.ndarray, vocab: int,
                  what: str) -> str | None:
    if ((kind < 0) | (kind > KIND_OTHER)).any():
        return f"a {what} kind out of range"
    if ((scode >= 0) != (kind == KIND_STR)).any() or (scode >= vocab).any():
        return f"string codes disagree with the {what} kinds or the vocab"
    bools = num[kind == KIND_BOOL]
    if ((bools != 0.0) & (bools != 1.0)).any() or np.isnan(num[kind == KIND_NUMBER]).any():
        return f"a {what} bool other than 0/1 or a NaN number"
    return None


def _list_problem(kind: np.ndarray, elements: ListElements, vocab: int) -> str | None:
    offsets = elements.offsets
    if not _is_partition(offsets, len(elements.kinds)):
        return "list offsets are not a partition of the elements"
    if (offsets[1:][kind != KIND_LIST] != offsets[:-1][kind != KIND_LIST]).any():
        return "a row that holds no list has elements"
    if ((elements.kinds == KIND_LIST) | (elements.kinds == KIND_MISSING)).any() or any(
            elements.kinds[i] != KIND_NUMBER for i in elements.big):
        return "a list element of a kind no element key has"
    return _kind_problem(elements.kinds, elements.nums, elements.codes, vocab, "list element")


# ---------------------------------------------------------------------------- verify


def check_against_json(stored: StoredColumns, from_json: MetadataColumns, n: int) -> str | None:
    """What differs between stored columns and the ones the rows' JSON gives (None: nothing)."""
    if stored.fields() != from_json.fields():
        return "the column directory lists other fields than the rows hold"
    for name in stored.fields():
        mine, truth = stored.column(name), from_json.column(name)
        assert isinstance(truth, FieldColumn)
        if isinstance(mine, StoredColumn) and not _same_column(mine, truth, n):
            return f"column {name!r} disagrees with the rows' JSON"
    return None


def _same_column(mine: StoredColumn, truth: FieldColumn, n: int) -> bool:
    kind = truth.kind[:n]
    numeric = (kind == KIND_BOOL) | (kind == KIND_NUMBER)
    strings = [truth.vocab[c] for c in truth.scode[:n][kind == KIND_STR].tolist()]
    stored = [mine.vocab[c] for c in mine.scode[kind == KIND_STR].tolist()]
    lists = truth.lists[:n][kind == KIND_LIST].tolist() if truth.lists is not None else []
    return (np.array_equal(mine.kind, kind) and np.array_equal(mine.num[numeric], truth.num[:n][numeric])
            and stored == strings and mine.big == truth.big
            and mine.vocab == sorted(set(mine.vocab)) and np.array_equal(mine.empty, truth.empty[:n])
            and (mine.lists[kind == KIND_LIST].tolist() if mine.lists is not None else []) == lists)
