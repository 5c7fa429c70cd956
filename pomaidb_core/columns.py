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

Nothing here reaches disk. Not thread-safe: the owner of the memtable or segment (its shard
thread) appends and sets; masks must not run concurrently with those writes. Masks may run
concurrently with each other: nested_column() publishes a new column only once it is complete,
so two readers building the same one at once just build it twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

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
        self._columns: dict[str, FieldColumn] = {}
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
            column.clear(row)
        for _, column in self._nested.values():
            column.clear(row)
        self._write(row, items)

    def column(self, field: str) -> FieldColumn | None:
        """The field's column, or None when no row has ever held the field."""
        return self._columns.get(field)

    def nested_column(self, field: str) -> FieldColumn | None:
        """The column of the path a dotted key names (module docstring); None while no row has
        a nested object under the key's first part."""
        known = self._nested.get(field)
        if known is not None:
            return known[1]
        path = field.split(".")
        root = self._columns.get(path[0])
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
            column.grow(capacity)
        self._capacity = capacity


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
