"""Per-field typed columns over the metadata of one memtable or segment, for bulk filtering.

Every field seen in any row gets a `FieldColumn`: parallel arrays over rows 0..n-1, so that
filters.py evaluates the common operators with a few numpy operations instead of one
Python call per row.

    kind   int8     the KIND_* code of the row's value; KIND_MISSING where the row lacks the field
    num    float64  BOOL rows: 0.0 / 1.0; NUMBER rows: the value. An int that float64 cannot hold
                    exactly keeps its nearest float here and its exact value in `big`, and
                    evaluators re-check those (rare) rows in Python
    scode  int32    STR rows: index of the string in `vocab` (each distinct string kept once, so
                    equality is an integer compare and string predicates run once per distinct
                    string); -1 on every other row
    empty  bool     missing, None, "" or []: the answer to $is_empty, precomputed
    lists  object   LIST rows: frozenset of `element_key`s; allocated when the field first holds a list
    objects object  rows holding a nested object (a dict, kind OTHER): the dict itself, from which
                    columns of dotted paths are derived; allocated when the field first holds one

Rows may hold different types for the same field ("year": 2020 here, "year": "2020" there);
`kind` keeps them apart. All columns share one capacity that doubles when full, so append()
is O(fields in the row) amortised; a field first seen at row r gets a column whose rows
before r read as missing. set() is O(fields in the whole table): it clears the row in
every column, because the old metadata is not kept here. A column's vocab keeps every
distinct string ever written to it, overwritten ones included, until the table is rebuilt
(a memtable is frozen, a segment compacted).

Nested fields: a filter's dotted key ("author.name") reads, per row, the top-level key of that
exact name when the row has one, else the path split at every dot through nested dicts
(`field_value` is the definition; lists are not entered, and a nested key that itself holds a
dot is not addressable). `nested_column(key)` is the column of the path, built on first use from
the `objects` of the first part's column and then kept in sync by append() and set() like the
others, so only the paths that filters ask for cost memory (maps with ever-new keys would
otherwise make a column per key). Filters combine it with `column(key)`: literal rows first.

A segment of format v2 stores its columns (segment_columns.py writes and reads the bytes):
`StoredColumns` serves them as `StoredColumn`s, whose kind, num and scode are read-only views of
the mapped file and whose other parts are derived on first use; `vocab` is sorted by code
point there, so `vocab_index` is a binary search instead of a dict. Filters see one interface.

Nothing here reaches disk. Not thread-safe: the owner of the memtable or segment (its shard
thread) appends and sets; masks must not run concurrently with those writes. Masks may run
concurrently with each other: nested_column() publishes a new column only once it is complete,
so two readers building the same one at once just build it twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from .errors import CorruptionError, InvalidArgumentError

KIND_MISSING = 0
KIND_NONE = 1
KIND_BOOL = 2
KIND_NUMBER = 3  # int or float, never bool
KIND_STR = 4
KIND_LIST = 5
KIND_OTHER = 6  # anything metadata should not hold (a dict, an object): equals nothing


class _Missing:
    """The value of a field a record does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def normalize(value: Any) -> Any:
    """Maps numpy scalars to Python ones and tuples to lists, so both evaluators see one type."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def kind_of(value: Any) -> int:
    """The KIND_* code of a normalized value; bool is tested before int because bool is an int."""
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:  # the exact built-in types: one dict lookup on the append path
        return kind
    if isinstance(value, bool):
        return KIND_BOOL
    if isinstance(value, (int, float)):
        return KIND_NUMBER
    if isinstance(value, str):
        return KIND_STR
    if isinstance(value, list):
        return KIND_LIST
    return KIND_OTHER


_KIND_OF_TYPE = {
    _Missing: KIND_MISSING,
    type(None): KIND_NONE,
    bool: KIND_BOOL,
    int: KIND_NUMBER,
    float: KIND_NUMBER,
    str: KIND_STR,
    list: KIND_LIST,
}


class _Token:
    """A stand-in element key: equal only to itself, so it never meets a number or a string."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_TRUE = _Token("TRUE")
_FALSE = _Token("FALSE")
_UNMATCHABLE = _Token("UNMATCHABLE")


def element_key(value: Any) -> Any:
    """A hashable key under which two list elements are equal exactly when the filter says so.

    None, numbers and strings are their own keys: 1 == 1.0 and "1" != 1 as the filter wants,
    and a str caches its hash (a (kind, value) tuple would be hashed again on every lookup).
    Only bools need tokens, since True == 1 in Python. Nested lists and other objects share
    one token that no filter operand produces, so they never match.
    """
    value = normalize(value)
    kind = kind_of(value)
    if kind == KIND_BOOL:
        return _TRUE if value else _FALSE
    if kind in (KIND_NONE, KIND_NUMBER, KIND_STR):
        return value
    return _UNMATCHABLE


def float_of(value: float) -> float:
    """The nearest float64, with +-inf for ints beyond its range (float() would raise)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def field_value(metadata: Mapping[str, Any], field: str) -> Any:
    """The normalized value `field` names in one record's metadata, or MISSING.

    The top-level key of that exact name first; else, for a dotted key, the path through nested
    dicts (the module docstring's rule, which nested_column() follows in bulk)."""
    value = metadata.get(field, MISSING)
    if value is MISSING and "." in field:
        first, *rest = field.split(".")
        value = _walk(metadata.get(first, MISSING), rest)
    return normalize(value)


def _walk(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return MISSING
        value = value.get(part, MISSING)
    return value


def is_empty_value(value: Any) -> bool:
    """$is_empty's definition: missing, None, "" or []."""
    kind = kind_of(value)
    if kind in (KIND_MISSING, KIND_NONE):
        return True
    return kind in (KIND_STR, KIND_LIST) and len(value) == 0


class FieldColumn:
    """One field's arrays (see the module docstring); rows are written only after a clear."""

    __slots__ = ("big", "empty", "kind", "lists", "num", "objects", "scode", "vocab", "vocab_index")

    def __init__(self, capacity: int) -> None:
        self.kind = np.zeros(capacity, np.int8)
        self.num = np.zeros(capacity, np.float64)
        self.scode = np.full(capacity, -1, np.int32)
        self.empty = np.ones(capacity, np.bool_)
        self.lists: np.ndarray | None = None
        self.objects: np.ndarray | None = None
        self.big: dict[int, int] = {}
        self.vocab: list[str] = []
        self.vocab_index: dict[str, int] = {}

    def grow(self, capacity: int) -> None:
        self.kind = _grown(self.kind, capacity, 0)
        self.num = _grown(self.num, capacity, 0.0)
        self.scode = _grown(self.scode, capacity, -1)
        self.empty = _grown(self.empty, capacity, True)
        if self.lists is not None:
            self.lists = _grown(self.lists, capacity, None)
        if self.objects is not None:
            self.objects = _grown(self.objects, capacity, None)

    def clear(self, row: int) -> None:
        self.kind[row] = KIND_MISSING
        self.scode[row] = -1
        self.empty[row] = True
        if self.lists is not None:
            self.lists[row] = None
        if self.objects is not None:
            self.objects[row] = None
        self.big.pop(row, None)

    def write(self, row: int, value: Any) -> None:
        kind = kind_of(value)
        self.kind[row] = kind
        if kind == KIND_STR:
            self.scode[row] = self._code(value)
        elif kind in (KIND_BOOL, KIND_NUMBER):
            approx = float_of(value)
            self.num[row] = approx
            if isinstance(value, int) and approx != value:  # Python compares int/float exactly
                self.big[row] = value
        elif kind == KIND_LIST:
            if self.lists is None:
                self.lists = np.full(len(self.kind), None, dtype=object)
            self.lists[row] = frozenset(element_key(item) for item in value)
        elif isinstance(value, dict):
            if self.objects is None:
                self.objects = np.full(len(self.kind), None, dtype=object)
            self.objects[row] = value
        if kind != KIND_NONE and not is_empty_value(value):  # a cleared row reads as empty
            self.empty[row] = False

    def _code(self, text: str) -> int:
        code = self.vocab_index.get(text)
        if code is None:
            code = len(self.vocab)
            self.vocab.append(text)
            self.vocab_index[text] = code
        return code


def _grown(array: np.ndarray, capacity: int, fill: Any) -> np.ndarray:
    grown = np.full(capacity, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class MetadataColumns:
    """Per-field columns over rows 0..n-1 of one memtable or segment, kept in sync incrementally."""

    def __init__(self) -> None:
        self._rows = 0
        self._capacity = 0
        self._columns: dict[str, Column] = {}
        self._nested: dict[str, tuple[list[str], FieldColumn]] = {}  # dotted key -> (path, column)

    @classmethod
    def from_list(cls, metadatas: Sequence[dict | None]) -> MetadataColumns:
        columns = cls()
        columns._reserve(len(metadatas))
        for metadata in metadatas:
            columns.append(metadata)
        return columns

    def __len__(self) -> int:
        return self._rows

    def append(self, metadata: dict | None) -> int:
        """Adds a row and returns its index; a rejected metadata adds nothing."""
        items = _checked_items(metadata)
        row = self._rows
        self._reserve(row + 1)
        self._rows += 1
        self._write(row, items)
        return row

    def set(self, row: int, metadata: dict | None) -> None:
        """Overwrites an existing row (an upsert in a memtable)."""
        if not 0 <= row < self._rows:
            raise IndexError(f"row {row} out of range for {self._rows} rows")
        items = _checked_items(metadata)
        for column in self._columns.values():
            assert isinstance(column, FieldColumn)
            column.clear(row)
        for _, column in self._nested.values():
            column.clear(row)
        self._write(row, items)

    def column(self, field: str) -> Column | None:
        """The field's column, or None when no row has ever held the field."""
        return self._columns.get(field)

    def fields(self) -> list[str]:
        """Every field some row has held, in the order first seen."""
        return list(self._columns)

    def nested_column(self, field: str) -> FieldColumn | None:
        """The column of the path a dotted key names (module docstring); None while no row has
        a nested object under the key's first part."""
        known = self._nested.get(field)
        if known is not None:
            return known[1]
        path = field.split(".")
        root = self.column(path[0])
        if len(path) < 2 or root is None or root.objects is None:
            return None
        column = FieldColumn(self._capacity)
        for row in np.flatnonzero(root.kind[: self._rows] == KIND_OTHER).tolist():
            if root.objects[row] is not None:
                _write_path(column, row, root.objects[row], path[1:])
        self._nested[field] = (path, column)
        return column

    def _write(self, row: int, items: list[tuple[str, Any]]) -> None:
        for field, value in items:
            column = self._columns.get(field)
            if column is None:
                column = self._columns[field] = FieldColumn(self._capacity)
            assert isinstance(column, FieldColumn)
            column.write(row, value)
        if self._nested:
            values = dict(items)
            for path, column in self._nested.values():
                if path[0] in values:
                    _write_path(column, row, values[path[0]], path[1:])

    def _reserve(self, rows: int) -> None:
        if rows <= self._capacity:
            return
        capacity = max(rows, 2 * self._capacity, 16)
        nested = [column for _, column in self._nested.values()]
        for column in (*self._columns.values(), *nested):
            assert isinstance(column, FieldColumn)
            column.grow(capacity)
        self._capacity = capacity


class SortedVocab:
    """Distinct strings sorted by code point, as UTF-8 between offsets into one blob.

    Serves both `vocab` (code -> str, decoded once when a predicate needs every string) and
    `vocab_index` (str -> code, by binary search over the bytes: UTF-8 byte order is code point
    order, so equality filters decode nothing)."""

    def __init__(self, offsets: np.ndarray, blob: memoryview) -> None:
        self._offsets = offsets
        self._blob = blob

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _bytes(self, code: int) -> bytes:
        return bytes(self._blob[int(self._offsets[code]) : int(self._offsets[code + 1])])

    @cached_property
    def strings(self) -> list[str]:
        """Every string, decoded once."""
        try:
            return [self._bytes(code).decode("utf-8") for code in range(len(self))]
        except UnicodeDecodeError:
            raise CorruptionError("a stored string column holds bytes that are not UTF-8") from None

    def get(self, text: str, default: int | None = None) -> int | None:
        try:
            wanted = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no stored string holds one
            return default
        low, high = 0, len(self)
        while low < high:
            middle = (low + high) // 2
            if self._bytes(middle) < wanted:
                low = middle + 1
            else:
                high = middle
        return low if low < len(self) and self._bytes(low) == wanted else default

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.get(text) is not None

    def __getitem__(self, text: str) -> int:
        code = self.get(text)
        if code is None:
            raise KeyError(text)
        return code

    def __iter__(self) -> Iterator[str]:
        return iter(self.strings)


class StoredColumn:
    """One field's column as a v2 segment stores it: the same attributes as FieldColumn, read-only.

    kind, num and scode are given (views of the mapped file; num and scode may be constant
    broadcasts when no row needs them); list element keys are given as flat typed arrays
    (`elements`: offsets per row, kinds, numbers, string codes, exact big ints) and turned into
    frozensets on first use; `objects` (nested dicts, for dotted paths) comes from `load_objects`,
    which decodes those rows' JSON, on first use."""

    def __init__(self, kind: np.ndarray, num: np.ndarray, scode: np.ndarray, vocab: SortedVocab,
                 big: dict[int, int], elements: ListElements | None,
                 load_objects: Callable[[], np.ndarray]) -> None:
        self.kind = kind
        self.num = num
        self.scode = scode
        self.vocab_index = vocab
        self.big = big
        self._elements = elements
        self._load_objects = load_objects

    @property
    def vocab(self) -> list[str]:
        return self.vocab_index.strings

    @cached_property
    def empty(self) -> np.ndarray:
        empty = self.kind <= KIND_NONE
        if len(self.vocab_index) and self.vocab_index.get("") == 0:  # "" sorts first
            empty |= self.scode == 0
        if self._elements is not None:
            offsets = self._elements.offsets
            empty |= (self.kind == KIND_LIST) & (offsets[1:] == offsets[:-1])
        return empty

    @cached_property
    def lists(self) -> np.ndarray | None:
        if self._elements is None:
            return None
        keys = self._elements.keys(self.vocab)
        offsets = self._elements.offsets.tolist()
        out = np.full(len(self.kind), None, dtype=object)
        for row in np.flatnonzero(self.kind == KIND_LIST).tolist():
            out[row] = frozenset(keys[offsets[row] : offsets[row + 1]])
        return out

    @cached_property
    def objects(self) -> np.ndarray | None:
        if not (self.kind == KIND_OTHER).any():
            return None
        return self._load_objects()


class ListElements:
    """The elements of a field's list rows, flattened: row r's are [offsets[r], offsets[r + 1]).

    Each element is stored as its `element_key`: kind (KIND_NONE, KIND_BOOL, KIND_NUMBER,
    KIND_STR, or KIND_OTHER for the unmatchable nested ones), number (bools as 0/1), string code
    into the field's vocab, and `big`: element -> exact int where the number is a rounded one."""

    def __init__(self, offsets: np.ndarray, kinds: np.ndarray, nums: np.ndarray,
                 codes: np.ndarray, big: dict[int, int]) -> None:
        self.offsets = offsets
        self.kinds = kinds
        self.nums = nums
        self.codes = codes
        self.big = big

    def keys(self, vocab: Sequence[str]) -> list[Any]:
        keys: list[Any] = []
        for i, (kind, num, code) in enumerate(
                zip(self.kinds.tolist(), self.nums.tolist(), self.codes.tolist())):
            if kind == KIND_NUMBER:
                keys.append(self.big.get(i, num))
            elif kind == KIND_STR:
                keys.append(vocab[code])
            elif kind == KIND_BOOL:
                keys.append(_TRUE if num else _FALSE)
            else:
                keys.append(None if kind == KIND_NONE else _UNMATCHABLE)
        return keys


def element_parts(key: Any) -> tuple[int, float, Any]:
    """(kind, number, exact value) of an element key, the inverse of ListElements.keys; the
    exact value is the string of a KIND_STR element and the int of a KIND_NUMBER one."""
    if key is None:
        return KIND_NONE, 0.0, None
    if key is _TRUE or key is _FALSE:
        return KIND_BOOL, float(key is _TRUE), None
    if key is _UNMATCHABLE:
        return KIND_OTHER, 0.0, None
    if isinstance(key, str):
        return KIND_STR, 0.0, key
    return KIND_NUMBER, float_of(key), key


Column = FieldColumn | StoredColumn


class StoredColumns(MetadataColumns):
    """The columns of an immutable segment: each field's column is loaded on first use by its
    loader (segment_columns.py), so a filter touches only the fields it names. Rows never change:
    append() and set() are refused. Loading twice from two threads at once is harmless."""

    def __init__(self, rows: int, loaders: Mapping[str, Callable[[], Column | None]]) -> None:
        super().__init__()
        self._rows = self._capacity = rows
        self._loaders = loaders

    def column(self, field: str) -> Column | None:
        column = self._columns.get(field)
        if column is None and field in self._loaders:
            column = self._loaders[field]()
            if column is not None:
                self._columns[field] = column
        return column

    def fields(self) -> list[str]:
        return list(self._loaders)

    def append(self, metadata: dict | None) -> int:
        raise TypeError("the columns of a segment are immutable")

    def set(self, row: int, metadata: dict | None) -> None:
        raise TypeError("the columns of a segment are immutable")


def _write_path(column: FieldColumn, row: int, value: Any, path: Sequence[str]) -> None:
    """Writes into a cleared row the value at `path` inside `value`, if there is one."""
    value = _walk(value, path)
    if value is not MISSING:
        column.write(row, normalize(value))


def _checked_items(metadata: Any) -> list[tuple[str, Any]]:
    """Validates before any array is touched, so a rejected row leaves the columns unchanged."""
    if metadata is None:
        return []
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"metadata must be a dict with str keys or None, got {type(metadata).__name__}"
        )
    items = list(metadata.items())
    for i, (field, value) in enumerate(items):
        if not isinstance(field, str):
            raise InvalidArgumentError(
                f"metadata keys must be str, got {type(field).__name__} key {field!r}"
            )
        if type(value) not in _KIND_OF_TYPE:  # the plain JSON types need no normalizing
            items[i] = (field, normalize(value))
    return items
