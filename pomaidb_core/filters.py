"""The metadata filter language: compile_filter validates a dict once, and the Filter it returns
evaluates in bulk over MetadataColumns (mask) or on one record (matches).

Grammar (API.md "Filters"):

    filter := {} | None                       matches everything
            | {clause, clause, ...}           the clauses are ANDed
    clause := field: scalar                   equality: the same as field: {"$eq": scalar}
            | field: {op: operand, ...}       at least one op; the ops are ANDed
            | "$and": [filter, ...]           a non-empty list
            | "$or": [filter, ...]            a non-empty list
            | "$not": filter
            | "$not": [filter, ...]           a non-empty list: NOT of their AND

A scalar is str, int, float, bool or None (never NaN); numpy scalars and tuples are accepted as
their Python equivalents. Fields are str keys that do not start with "$" (a metadata key that
does is stored but cannot be filtered on). $and/$or/$not nest at most MAX_FILTER_DEPTH levels.
A dotted field ("author.name") names the record's top-level key of exactly that name when the
record has one, else the path through nested objects (columns.field_value is the definition).

Semantics, for the value v a record holds under the field (or "missing" when it has none):

    $eq x / $ne x       v equals x / does not. Types must agree: 1 == 1.0, but True != 1 (bool is
                        not a number), "1" != 1, None == None only. A list v equals no scalar:
                        {"tags": "a"} does NOT match tags=["a", "b"]; use $contains.
    $gt $gte $lt $lte x x is a number or a str; v must be of the same family (numbers compare
                        with numbers by value, ints exactly even beyond 2**53; strings by code
                        point). Any other v (missing, None, bool, list, the other family) fails.
    $in [x..] / $nin    v equals one of the xs (the $eq rule) / equals none of them.
    $contains x         v is a list with an element equal to x, or v is a str and x a substring.
    $any [x..] / $all   v is a list holding at least one / every one of the xs ($all [] holds for
                        every list v).
    $text_match s       v is a str containing s; $itext_match ignores case (str.casefold).
    $is_empty b         (v is missing, None, "" or []) == b.
    $exists b           (the record has the field, even holding None) == b.
    $between [lo, hi]   lo <= v <= hi, by the $gte/$lte rules; lo and hi are both numbers or
                        both strs, and lo <= hi (a range that holds nothing is refused).
    $like p / $ilike p  v is a str that the SQL LIKE pattern p matches as a whole: "%" is any
                        run of characters (empty too), "_" exactly one, and a backslash makes
                        the next character literal ("\\%", "\\_", "\\\\"; before any other
                        character it is simply dropped, as in PostgreSQL); a pattern ending in a
                        lone backslash is refused. $ilike compares v and p casefolded, like
                        $itext_match (so "_" matches one character of the casefolded value).
    $not f              the record does not match f.

So a missing field matches only $ne, $nin, $is_empty: true and $exists: false (and $not of
anything else). A malformed filter raises InvalidArgumentError naming where it is wrong and
how to fix it.

Every compiled Filter has a `key`, built once at compile time, for caches of masks: a hashable
value such that two filters with equal keys select the same rows of any data. Operands enter it
typed, as (KIND_*, value) after the numpy-to-Python normalization evaluation applies, so "2024",
2024 and True stay apart while 2024, 2024.0 and np.int64(2024) meet. Clause order, and the order
of the operand lists of the set-like $in/$nin/$any/$all, do not change it.
"""

from __future__ import annotations

import math
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from itertools import repeat
from typing import Any

import numpy as np

from .columns import (
    KIND_BOOL,
    KIND_LIST,
    KIND_MISSING,
    KIND_NONE,
    KIND_NUMBER,
    KIND_STR,
    MISSING,
    Column,
    MetadataColumns,
    element_key,
    field_value,
    float_of,
    is_empty_value,
    kind_of,
    normalize,
)
from .errors import InvalidArgumentError

__all__ = ["MAX_FILTER_DEPTH", "Filter", "MetadataColumns", "compile_filter"]

MAX_FILTER_DEPTH = 32  # levels of $and/$or/$not; deeper specs are rejected, never recursed into

_SCALAR_KINDS = (KIND_NONE, KIND_BOOL, KIND_NUMBER, KIND_STR)


class Filter:
    """A validated filter. Immutable; safe to share between threads and shards."""

    __slots__ = ("_root", "_spec")

    def __init__(self, root: _Node, spec: Mapping[str, Any]) -> None:
        self._root = root
        self._spec = spec

    @property
    def key(self) -> Hashable:
        """Hashable; two filters with equal keys select the same rows (see the module docstring)."""
        return self._root.key

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        """Bool array of shape (len(columns),): True where the row matches."""
        return self._root.mask(columns)

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, Mapping):
            raise InvalidArgumentError(
                f"metadata must be a dict or None, got {type(metadata).__name__}"
            )
        return self._root.matches(metadata)

    def __repr__(self) -> str:
        return f"Filter({self._spec!r})"


def compile_filter(spec: Mapping[str, Any] | Filter | None) -> Filter | None:
    """Validates spec fully; None when it matches everything (None or {}), so callers skip masking.

    An already compiled Filter is returned as is.
    """
    if spec is None or isinstance(spec, Filter):
        return spec
    root = _compile_filter(spec, "filter", 1)
    return None if isinstance(root, _MatchAll) else Filter(root, spec)


# --- evaluation tree ------------------------------------------------------------------------


class _Node(ABC):
    key: Hashable  # a tuple tagged by node type: ("field", name, op, operand), ("$and", ...)

    @abstractmethod
    def mask(self, columns: MetadataColumns) -> np.ndarray: ...

    @abstractmethod
    def matches(self, metadata: Mapping[str, Any]) -> bool: ...


class _MatchAll(_Node):
    key = ("{}",)

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        return np.ones(len(columns), np.bool_)

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return True


class _And(_Node):
    tag = "$and"

    def __init__(self, children: list[_Node]) -> None:
        self.children = children
        # A set: AND and OR are commutative and idempotent, so order and repeats do not matter.
        self.key = (self.tag, frozenset(child.key for child in children))

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        out = self.children[0].mask(columns)
        for child in self.children[1:]:
            if not out.any():  # the rest cannot add a row; skip their (maybe per-row) work
                break
            out &= child.mask(columns)
        return out

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(child.matches(metadata) for child in self.children)


class _Or(_And):
    tag = "$or"

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        out = self.children[0].mask(columns)
        for child in self.children[1:]:
            if out.all():
                break
            out |= child.mask(columns)
        return out

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return any(child.matches(metadata) for child in self.children)


class _Not(_Node):
    def __init__(self, child: _Node) -> None:
        self.child = child
        self.key = ("$not", child.key)

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        return ~self.child.mask(columns)

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return not self.child.matches(metadata)


class _Field(_Node):
    """One operator applied to one field: the leaf every operator shares."""

    def __init__(self, field: str, op: _Op, key: Hashable) -> None:
        self.field = field
        self.op = op
        self.key = key

    def mask(self, columns: MetadataColumns) -> np.ndarray:
        rows = len(columns)
        literal = columns.column(self.field)
        out = self._column_mask(literal, rows)
        nested = columns.nested_column(self.field) if "." in self.field else None
        if nested is None:
            return out
        # A row holding the dotted key itself is judged on it; every other row on the path.
        inside = self._column_mask(nested, rows)
        return inside if literal is None else np.where(literal.kind[:rows] == KIND_MISSING, inside, out)

    def _column_mask(self, column: Column | None, rows: int) -> np.ndarray:
        if column is None:
            return np.full(rows, self.op.test(MISSING), np.bool_)
        out = self.op.mask(column, rows)
        # The vectorised ops saw only the float approximations of huge ints: re-check exactly.
        for row, exact in column.big.items():
            out[row] = self.op.test(exact)
        return out

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return self.op.test(field_value(metadata, self.field))


# --- operators: test() is the definition on one value, mask() the same over a column -------
# mask() returns a fresh array of `rows` bools that the caller may modify.


class _Op(ABC):
    @abstractmethod
    def test(self, value: Any) -> bool: ...

    @abstractmethod
    def mask(self, column: Column, rows: int) -> np.ndarray: ...


class _Eq(_Op):
    def __init__(self, operand: Any) -> None:
        self.operand = operand

    def test(self, value: Any) -> bool:
        kind = kind_of(value)
        return kind == kind_of(self.operand) and kind in _SCALAR_KINDS and value == self.operand

    def mask(self, column: Column, rows: int) -> np.ndarray:
        kind = kind_of(self.operand)
        if kind == KIND_NONE:
            return column.kind[:rows] == KIND_NONE
        if kind == KIND_STR:
            code = column.vocab_index.get(self.operand)
            if code is None:
                return np.zeros(rows, np.bool_)
            return column.scode[:rows] == code
        target, rounding = _float_target(self.operand)
        if rounding:  # no float equals an int that float64 cannot hold; big rows are re-checked
            return np.zeros(rows, np.bool_)
        return (column.kind[:rows] == kind) & (column.num[:rows] == target)


class _Ne(_Eq):
    def test(self, value: Any) -> bool:
        return not super().test(value)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return ~super().mask(column, rows)


class _In(_Op):
    def __init__(self, operands: list[Any]) -> None:
        self.keys = frozenset(element_key(x) for x in operands)
        self.strings = [x for x in operands if kind_of(x) == KIND_STR]
        self.bools = [float(x) for x in operands if kind_of(x) == KIND_BOOL]
        self.numbers = [
            float(x) for x in operands if kind_of(x) == KIND_NUMBER and not _float_target(x)[1]
        ]
        self.none = any(x is None for x in operands)

    def test(self, value: Any) -> bool:
        return kind_of(value) in _SCALAR_KINDS and element_key(value) in self.keys

    def mask(self, column: Column, rows: int) -> np.ndarray:
        kinds = column.kind[:rows]
        out = kinds == KIND_NONE if self.none else np.zeros(rows, np.bool_)
        codes = [column.vocab_index[s] for s in self.strings if s in column.vocab_index]
        if codes:
            out |= np.isin(column.scode[:rows], codes)
        for kind, targets in ((KIND_BOOL, self.bools), (KIND_NUMBER, self.numbers)):
            if targets:
                out |= (kinds == kind) & np.isin(column.num[:rows], targets)
        return out


class _Nin(_In):
    def test(self, value: Any) -> bool:
        return not super().test(value)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return ~super().mask(column, rows)


# name -> (Python operator, numpy operator, the numpy operator to use instead when the int
# operand was rounded in `direction` on its way to float64 (see _float_target)).
_COMPARISONS: dict[str, tuple[Callable[[Any, Any], bool], np.ufunc, np.ufunc, int]] = {
    "$lt": (operator.lt, np.less, np.less_equal, -1),
    "$lte": (operator.le, np.less_equal, np.less, +1),
    "$gt": (operator.gt, np.greater, np.greater_equal, +1),
    "$gte": (operator.ge, np.greater_equal, np.greater, -1),
}


class _Compare(_Op):
    def __init__(self, name: str, operand: float | str) -> None:
        self.compare, self.np_compare, self.np_compare_rounded, self.direction = _COMPARISONS[name]
        self.operand = operand
        self.kind = kind_of(operand)

    def test(self, value: Any) -> bool:
        return kind_of(value) == self.kind and self.compare(value, self.operand)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        if self.kind == KIND_STR:
            return _string_mask(column, rows, self.compare, self.operand)
        target, rounding = _float_target(self.operand)
        compare = self.np_compare_rounded if rounding == self.direction else self.np_compare
        return (column.kind[:rows] == KIND_NUMBER) & compare(column.num[:rows], target)


class _Contains(_Op):
    def __init__(self, operand: Any) -> None:
        self.operand = operand
        self.key = element_key(operand)

    def test(self, value: Any) -> bool:
        kind = kind_of(value)
        if kind == KIND_LIST:
            return any(element_key(item) == self.key for item in value)
        return kind == KIND_STR and isinstance(self.operand, str) and self.operand in value

    def mask(self, column: Column, rows: int) -> np.ndarray:
        out = _list_mask(column, rows, operator.contains, self.key)
        if isinstance(self.operand, str):
            out |= _string_mask(column, rows, operator.contains, self.operand)
        return out


class _Any(_Op):
    def __init__(self, operands: list[Any]) -> None:
        self.keys = frozenset(element_key(x) for x in operands)

    def test(self, value: Any) -> bool:
        if kind_of(value) != KIND_LIST:
            return False
        return not self.keys.isdisjoint(element_key(item) for item in value)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        # isdisjoint is a C call per row where a Python "not isdisjoint" would be a frame.
        disjoint = _list_mask(column, rows, frozenset.isdisjoint, self.keys)
        return (column.kind[:rows] == KIND_LIST) & ~disjoint


class _All(_Any):
    def test(self, value: Any) -> bool:
        if kind_of(value) != KIND_LIST:
            return False
        return self.keys.issubset(element_key(item) for item in value)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return _list_mask(column, rows, frozenset.issuperset, self.keys)


class _TextMatch(_Op):
    def __init__(self, operand: str, ignore_case: bool) -> None:
        self.found = _contains_folded if ignore_case else operator.contains
        self.needle = operand.casefold() if ignore_case else operand

    def test(self, value: Any) -> bool:
        return kind_of(value) == KIND_STR and self.found(value, self.needle)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return _string_mask(column, rows, self.found, self.needle)


def _contains_folded(text: str, folded_needle: str) -> bool:
    return folded_needle in text.casefold()


class _IsEmpty(_Op):
    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted

    def test(self, value: Any) -> bool:
        return is_empty_value(value) == self.wanted

    def mask(self, column: Column, rows: int) -> np.ndarray:
        empty = column.empty[:rows]
        return empty.copy() if self.wanted else ~empty


class _Exists(_IsEmpty):
    def test(self, value: Any) -> bool:
        return (value is not MISSING) == self.wanted

    def mask(self, column: Column, rows: int) -> np.ndarray:
        missing = column.kind[:rows] == KIND_MISSING
        return ~missing if self.wanted else missing


# --- $between, $like, $ilike ------------------------------------------------------------


class _Between(_Op):
    """low <= v <= high: the two comparisons, each with its exact handling of huge ints."""

    def __init__(self, bounds: tuple[int | float | str, int | float | str]) -> None:
        self.low = _Compare("$gte", bounds[0])
        self.high = _Compare("$lte", bounds[1])

    def test(self, value: Any) -> bool:
        return self.low.test(value) and self.high.test(value)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return self.low.mask(column, rows) & self.high.mask(column, rows)


# A LIKE pattern split at its unescaped "%"s: fixed-length pieces, each a regex of escaped
# characters and "." (for "_") with its length in characters.
_LikePieces = list[tuple[re.Pattern[str], int]]


class _Like(_Op):
    """SQL LIKE over str values (module docstring); $ilike casefolds value and pattern."""

    def __init__(self, pattern: str, ignore_case: bool) -> None:
        self.pieces = _like_pieces(pattern.casefold() if ignore_case else pattern)
        self.found = _like_folded if ignore_case else _like

    def test(self, value: Any) -> bool:
        return kind_of(value) == KIND_STR and self.found(value, self.pieces)

    def mask(self, column: Column, rows: int) -> np.ndarray:
        return _string_mask(column, rows, self.found, self.pieces)


def _like_pieces(pattern: str) -> _LikePieces:
    pieces: list[list[str]] = [[]]
    chars = iter(pattern)
    for char in chars:
        if char == "%":
            pieces.append([])
        elif char == "_":
            pieces[-1].append(".")
        else:
            if char == "\\":
                char = next(chars)  # _like_pattern refused a trailing escape
            pieces[-1].append(re.escape(char))
    return [(re.compile("".join(piece), re.DOTALL), len(piece)) for piece in pieces]


def _like(text: str, pieces: _LikePieces) -> bool:
    """Whether the pieces, with any run of characters between them, make up the whole text.

    The first piece must start the text and the last end it; each middle piece is placed at
    its leftmost fit after the previous one, which is optimal for fixed-length pieces. So a
    match costs O(len(text) x len(pattern)), never a regex's exponential backtracking."""
    (first, first_len), *rest = pieces
    if not rest:
        return first.fullmatch(text) is not None
    *middle, (last, last_len) = rest
    end = len(text) - last_len  # where the last piece must start
    if end < first_len or first.match(text) is None:
        return False
    position = first_len
    for piece, _ in middle:
        found = piece.search(text, position, end)
        if found is None:
            return False
        position = found.end()
    return last.match(text, end) is not None


def _like_folded(text: str, folded_pieces: _LikePieces) -> bool:
    return _like(text.casefold(), folded_pieces)


def _float_target(number: float) -> tuple[float, int]:
    """The float64 nearest `number` and which way it was rounded: 0 exact, +1 up, -1 down."""
    target = float_of(number)
    return target, (target > number) - (target < number)


def _string_mask(
    column: Column, rows: int, predicate: Callable[[str, Any], bool], operand: Any
) -> np.ndarray:
    """predicate(text, operand) once per distinct string of the column, spread to the rows."""
    vocab = column.vocab
    passed = np.fromiter(map(predicate, vocab, repeat(operand)), np.bool_, count=len(vocab))
    # One trailing False, so that code -1 (a row that holds no string) selects False.
    passed = np.append(passed, False)
    return passed[column.scode[:rows]]


def _list_mask(
    column: Column, rows: int, predicate: Callable[[frozenset, Any], bool], operand: Any
) -> np.ndarray:
    """predicate(element keys, operand) for every list row; False for the other rows."""
    out = np.zeros(rows, np.bool_)
    if column.lists is None:
        return out
    list_rows = np.flatnonzero(column.kind[:rows] == KIND_LIST)
    keys = column.lists[list_rows]
    out[list_rows] = np.fromiter(
        map(predicate, keys, repeat(operand)), np.bool_, count=len(list_rows)
    )
    return out


# --- validation -----------------------------------------------------------------------------


def _compile_filter(spec: Any, where: str, depth: int) -> _Node:
    if depth > MAX_FILTER_DEPTH:
        raise _invalid(
            where,
            f"nested more than {MAX_FILTER_DEPTH} levels of $and/$or/$not deep",
            "flatten it: $and and $or take any number of filters in one list",
        )
    if not isinstance(spec, Mapping):
        raise _invalid(
            where,
            f"a filter must be a dict, got {type(spec).__name__}",
            'write it like {"tag": "t3", "year": {"$gte": 2020}}',
        )
    clauses = [_compile_clause(key, value, where, depth) for key, value in spec.items()]
    if not clauses:
        return _MatchAll()
    return clauses[0] if len(clauses) == 1 else _And(clauses)


def _compile_clause(key: Any, value: Any, where: str, depth: int) -> _Node:
    if not isinstance(key, str):
        raise _invalid(
            where,
            f"keys must be str (field names or $and/$or/$not), got {_describe(key)}",
            "convert the key to a string",
        )
    here = f"{where}[{key!r}]"
    if key in ("$and", "$or"):
        children = _filter_list(key, value, here, depth)
        return _And(children) if key == "$and" else _Or(children)
    if key == "$not":
        if isinstance(value, (list, tuple)):  # NOT of their AND (langchain-postgres' form)
            children = _filter_list(key, value, here, depth)
            return _Not(children[0] if len(children) == 1 else _And(children))
        return _Not(_compile_filter(value, here, depth + 1))
    if key.startswith("$"):
        raise _invalid(
            where,
            f"unknown logical operator {key!r}",
            "use $and, $or or $not here; field operators go inside a field, "
            'like {"year": {"$gte": 2020}}',
        )
    if isinstance(value, Mapping):
        return _compile_field_ops(key, value, here)
    return _leaf(key, "$eq", _scalar(value, here))


def _filter_list(key: str, value: Any, where: str, depth: int) -> list[_Node]:
    if not isinstance(value, (list, tuple)):
        raise _invalid(
            where,
            f"{key} needs a list of filters, got {type(value).__name__}",
            f'write {{"{key}": [{{...}}, {{...}}]}}',
        )
    if not value:
        raise _invalid(
            where, f"{key} needs at least one filter", "remove the clause or add a filter"
        )
    return [_compile_filter(child, f"{where}[{i}]", depth + 1) for i, child in enumerate(value)]


def _compile_field_ops(field: str, ops: Mapping[Any, Any], where: str) -> _Node:
    if not ops:
        raise _invalid(
            where,
            "empty operator dict",
            'give at least one operator, like {"$eq": value}',
        )
    leaves: list[_Node] = []
    for name, operand in ops.items():
        if name not in _OPERATORS:
            raise _invalid(where, f"unknown operator {_describe(name)}", _operator_fix(field, name))
        check = _OPERATORS[name][0]
        leaves.append(_leaf(field, name, check(operand, f"{where}[{name!r}]")))
    return leaves[0] if len(leaves) == 1 else _And(leaves)


def _operator_fix(field: str, name: Any) -> str:
    fix = f"use one of {', '.join(_OPERATORS)}"
    if isinstance(name, str) and not name.startswith("$"):  # {"author": {"name": ...}}
        fix += f"; for a field inside a nested object use a dotted key, like {{'{field}.{name}': ...}}"
    return fix


def _leaf(field: str, name: str, operand: Any) -> _Field:
    """The leaf applying operator `name` to a validated (so already normalized) operand."""
    return _Field(field, _OPERATORS[name][1](operand),
                  ("field", field, name, _typed(operand, ordered=name in _ORDERED_OPERANDS)))


_ORDERED_OPERANDS = frozenset({"$between"})  # list operands whose order is meaning


def _typed(operand: Any, ordered: bool = False) -> Hashable:
    """The operand's part of a filter key: (kind, value), or a set of those for a list operand.

    Python equality inside the tuple matches the filter's own: 1 == 1.0 and 2**53 + 1 !=
    float(2**53 + 1); the kind keeps True from 1 and "1" from 1. Operand lists are sets because
    the operators that take one as a set ($in, $nin, $any, $all) ignore their order and
    repeats; $between's [low, high] keeps its order.
    """
    if isinstance(operand, list):
        items = [_typed(item) for item in operand]
        return tuple(items) if ordered else frozenset(items)
    return (kind_of(operand), operand)


def _scalar(value: Any, where: str) -> Any:
    value = normalize(value)
    kind = kind_of(value)
    if kind == KIND_LIST:
        raise _invalid(
            where,
            "expected a single value, got a list",
            "use $in to match one of several values, or $contains/$any/$all on a list field",
        )
    if kind not in _SCALAR_KINDS:
        raise _invalid(
            where,
            f"expected a str, int, float, bool or None, got {type(value).__name__}",
            "filter on JSON scalar values only",
        )
    if isinstance(value, float) and math.isnan(value):
        raise _invalid(where, "NaN never equals or orders against anything", "remove it")
    return value


def _orderable(value: Any, where: str) -> int | float | str:
    value = _scalar(value, where)
    if kind_of(value) not in (KIND_NUMBER, KIND_STR):
        raise _invalid(
            where,
            f"comparisons need a number or a str, got {_describe(value)}",
            "use $eq/$ne for bool and None",
        )
    return value


def _scalar_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        raise _invalid(
            where,
            f"expected a list of values, got {type(value).__name__}",
            "wrap a single value in a list, like [value]",
        )
    return [_scalar(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _flag(value: Any, where: str) -> bool:
    value = normalize(value)
    if not isinstance(value, bool):
        raise _invalid(where, f"expected true or false, got {_describe(value)}", "pass a bool")
    return value


def _text(value: Any, where: str) -> str:
    value = normalize(value)
    if not isinstance(value, str):
        raise _invalid(where, f"expected a str, got {type(value).__name__}", "pass a substring")
    return value


def _bounds(value: Any, where: str) -> tuple[int | float | str, int | float | str]:
    fix = 'write {"$between": [low, high]} (both ends included)'
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise _invalid(where, f"$between needs a [low, high] list, got {_describe(value)}", fix)
    if len(value) != 2:
        raise _invalid(where, f"$between needs 2 values, got {len(value)}", fix)
    low, high = (_orderable(bound, f"{where}[{i}]") for i, bound in enumerate(value))
    if kind_of(low) != kind_of(high):
        raise _invalid(where, "low and high must both be numbers or both be strings", fix)
    if low > high:
        raise _invalid(
            where,
            f"low {_describe(low)} is above high {_describe(high)}, so nothing could match",
            "swap them",
        )
    return low, high


def _like_pattern(value: Any, where: str) -> str:
    pattern = _text(value, where)
    escaped = False
    for char in pattern:
        escaped = not escaped and char == "\\"
    if escaped:
        raise _invalid(
            where,
            "the pattern ends with the escape character \\",
            "write \\\\ for a literal backslash (\\% and \\_ for literal % and _)",
        )
    return pattern


def _comparison(name: str) -> Callable[[int | float | str], _Op]:
    return lambda operand: _Compare(name, operand)


# name -> (operand validator, leaf constructor)
_OPERATORS: dict[str, tuple[Callable[[Any, str], Any], Callable[[Any], _Op]]] = {
    "$eq": (_scalar, _Eq),
    "$ne": (_scalar, _Ne),
    "$gt": (_orderable, _comparison("$gt")),
    "$gte": (_orderable, _comparison("$gte")),
    "$lt": (_orderable, _comparison("$lt")),
    "$lte": (_orderable, _comparison("$lte")),
    "$in": (_scalar_list, _In),
    "$nin": (_scalar_list, _Nin),
    "$contains": (_scalar, _Contains),
    "$any": (_scalar_list, _Any),
    "$all": (_scalar_list, _All),
    "$text_match": (_text, lambda text: _TextMatch(text, ignore_case=False)),
    "$itext_match": (_text, lambda text: _TextMatch(text, ignore_case=True)),
    "$is_empty": (_flag, _IsEmpty),
    "$exists": (_flag, _Exists),
    "$between": (_bounds, _Between),
    "$like": (_like_pattern, lambda pattern: _Like(pattern, ignore_case=False)),
    "$ilike": (_like_pattern, lambda pattern: _Like(pattern, ignore_case=True)),
}


def _describe(value: Any) -> str:
    """A short repr for error messages; never recurses into containers (they may be cyclic)."""
    if kind_of(value) in _SCALAR_KINDS:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__


def _invalid(where: str, problem: str, fix: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid filter at {where}: {problem}; {fix}")
