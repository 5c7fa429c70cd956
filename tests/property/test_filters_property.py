"""mask() and matches() against an independent pure-Python reference of the filter semantics
(API.md "Filters" and the filters.py docstring), on random metadata and random filters."""

from __future__ import annotations

import itertools
import math
import operator
import os
import tempfile
from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pomaidb_core import segment, segment_columns
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.filters import MetadataColumns, compile_filter

# --- the reference: one record at a time, straight from the written semantics ---------------

ABSENT = object()
SCALAR_FAMILIES = ("none", "bool", "number", "str")
ORDERINGS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def family(value):
    if value is ABSENT:
        return "absent"
    if value is None:
        return "none"
    if type(value) is bool:
        return "bool"
    if type(value) in (int, float):
        return "number"
    if type(value) is str:
        return "str"
    if type(value) is dict:
        return "object"
    return "list"


def same(a, b):
    return family(a) == family(b) and family(a) in SCALAR_FAMILIES and a == b


def holds(element_of, value):
    return family(value) == "list" and any(same(item, element_of) for item in value)


def reference_op(op, operand, value):
    if op == "$eq":
        return same(value, operand)
    if op == "$ne":
        return not same(value, operand)
    if op in ORDERINGS:
        return family(value) == family(operand) and ORDERINGS[op](value, operand)
    if op == "$in":
        return any(same(value, x) for x in operand)
    if op == "$nin":
        return not any(same(value, x) for x in operand)
    if op == "$contains":
        if family(value) == "str" and family(operand) == "str":
            return operand in value
        return holds(operand, value)
    if op == "$any":
        return family(value) == "list" and any(holds(x, value) for x in operand)
    if op == "$all":
        return family(value) == "list" and all(holds(x, value) for x in operand)
    if op == "$text_match":
        return family(value) == "str" and operand in value
    if op == "$itext_match":
        return family(value) == "str" and operand.casefold() in value.casefold()
    if op == "$is_empty":
        empty = value is ABSENT or value is None or value == "" or value == []
        return empty == operand
    if op == "$exists":
        return (value is not ABSENT) == operand
    if op == "$between":
        low, high = operand
        return family(value) == family(low) and low <= value <= high
    if op == "$like":
        return family(value) == "str" and like(value, operand)
    assert op == "$ilike"
    return family(value) == "str" and like(value.casefold(), operand.casefold())


def like(text, pattern):
    """SQL LIKE by dynamic programming over (pattern token, text position): no regex involved."""
    tokens, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            tokens.append(("char", next(chars)))
        else:
            tokens.append({"%": ("run", None), "_": ("one", None)}.get(char, ("char", char)))
    reachable = {0}  # text positions the tokens so far can end at
    for kind, char in tokens:
        if kind == "run":
            reachable = set(range(min(reachable), len(text) + 1)) if reachable else set()
        elif kind == "one":
            reachable = {i + 1 for i in reachable if i < len(text)}
        else:
            reachable = {i + 1 for i in reachable if i < len(text) and text[i] == char}
    return len(text) in reachable


def lookup(metadata, key):
    """The top-level key itself, else the dotted path through nested dicts (API.md)."""
    if key in metadata:
        return metadata[key]
    value = metadata
    for part in key.split("."):
        if type(value) is not dict or part not in value:
            return ABSENT
        value = value[part]
    return value


def reference_match(spec, metadata):
    metadata = metadata or {}
    for key, value in spec.items():
        if key == "$and":
            ok = all(reference_match(child, metadata) for child in value)
        elif key == "$or":
            ok = any(reference_match(child, metadata) for child in value)
        elif key == "$not" and isinstance(value, list):
            ok = not all(reference_match(child, metadata) for child in value)
        elif key == "$not":
            ok = not reference_match(value, metadata)
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            field_value = lookup(metadata, key)
            ok = all(reference_op(op, operand, field_value) for op, operand in ops.items())
        if not ok:
            return False
    return True


# --- random metadata and filters over a small universe, so that they often meet -------------

# "n" often holds a nested object and "n.a" is also a literal top-level key, so dotted filter
# fields meet both the path and the literal-key-first rule.
FIELDS = ["a", "b", "c", "n", "n.a"]
NESTED_KEYS = ["a", "b"]
NUMBERS = [0, 1, 1.0, -0.0, 0.5, 2, 2**53, 2**53 + 1, float(2**53), 10**400]
STRINGS = ["", "a", "A", "ab", "Ab", "ba", "1", "ß", "SS", "a_b", "5%", "a\\b"]
PATTERNS = ["", "%", "%%", "_", "__", "a%", "%b", "%a%", "_b", "a_", "A%", "ß", "s_", "\\%",
            "%\\_%", "5\\%", "a\\\\b", "\\a%", "a%b%", "%_%_"]
number = st.sampled_from(NUMBERS)
string = st.sampled_from(STRINGS)
scalar = st.none() | st.booleans() | number | string
# Metadata also holds values no filter operand can be (NaN, infinities).
metadata_scalar = (
    st.none() | st.booleans() | st.sampled_from([*NUMBERS, math.inf, -math.inf, math.nan]) | string
)
metadata_value = metadata_scalar | st.lists(metadata_scalar, max_size=3)


def objects_of(values):
    """Nested objects two levels deep over NESTED_KEYS, their leaves drawn from `values`."""
    inner = st.dictionaries(st.sampled_from(NESTED_KEYS), values, max_size=2)
    return st.dictionaries(st.sampled_from(NESTED_KEYS), values | inner, max_size=2)


record = st.dictionaries(
    st.sampled_from(FIELDS), metadata_value | objects_of(metadata_value), min_size=1, max_size=3
)
# One record in ten has no metadata at all (an even one_of would make it one in two).
metadata = st.integers(0, 9).flatmap(lambda draw: st.none() if draw == 0 else record)
scalars = st.lists(scalar, max_size=3)


OPERAND_BY_OP = {
    "$eq": scalar,
    "$ne": scalar,
    "$gt": number | string,
    "$gte": number | string,
    "$lt": number | string,
    "$lte": number | string,
    "$in": scalars,
    "$nin": scalars,
    "$contains": scalar,
    "$any": scalars,
    "$all": scalars,
    "$text_match": string,
    "$itext_match": string,
    "$is_empty": st.booleans(),
    "$exists": st.booleans(),
    "$between": (st.tuples(number, number) | st.tuples(string, string)).map(sorted),
    "$like": st.sampled_from(PATTERNS),
    "$ilike": st.sampled_from(PATTERNS),
}
field_ops = st.lists(st.sampled_from(sorted(OPERAND_BY_OP)), min_size=1, max_size=2, unique=True)
field_ops = field_ops.flatmap(
    lambda names: st.fixed_dictionaries({name: OPERAND_BY_OP[name] for name in names})
)
# "d" is in no record, so it exercises the field-without-a-column path; the dotted ones address
# nested objects (and "n.a" the literal key first).
field = st.sampled_from([*FIELDS, "d", "n.b", "n.b.a", "n.x", "a.b"])
leaf = st.builds(lambda name, ops: {name: ops}, field, field_ops) | st.builds(
    lambda name, value: {name: value}, field, scalar
)


def combine(children):
    return (
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$and": fs})
        | st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$or": fs})
        | children.map(lambda f: {"$not": f})
        | st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$not": fs})
        | st.lists(children, min_size=1, max_size=3).map(merge_keys)
    )


def merge_keys(filters):
    """Several clauses at one level (fields and logic mixed); later duplicates win, as in a dict."""
    merged = {}
    for spec in filters:
        merged.update(spec)
    return merged


filters = st.recursive(leaf, combine, max_leaves=8)


def expected_rows(spec, metadatas):
    return [reference_match(spec, m) for m in metadatas]


def operands_of(spec):
    for key, value in spec.items():
        if key in ("$and", "$or"):
            for child in value:
                yield from operands_of(child)
        elif key == "$not":
            for child in value if isinstance(value, list) else [value]:
                yield from operands_of(child)
        elif isinstance(value, dict):
            for operand in value.values():
                yield from operand if isinstance(operand, list) else [operand]
        else:
            yield value


def near(operand):
    """Values that meet the operand: itself, its other spellings and types, inside a list."""
    values = [operand, [operand], [operand, "q"]]
    if type(operand) is str:
        values += [operand.upper(), operand.lower(), "z" + operand + "z"]
    elif type(operand) in (int, float):
        values += [-operand, operand + 1]
        if abs(operand) < 2**1000:
            values += [float(operand)]
    return values


def records_near(spec):
    """Records whose values are often the filter's operands, so that few examples are vacuous."""
    nearby = [value for operand in operands_of(spec) for value in near(operand)]
    value = metadata_value | st.sampled_from(nearby) if nearby else metadata_value
    fields = st.sampled_from(FIELDS)
    return st.lists(
        st.none() | st.dictionaries(fields, value | objects_of(value), min_size=1, max_size=3) | record,
        min_size=10,
        max_size=30,
    )


def assert_agrees_with_reference(spec, columns, metadatas):
    compiled = compile_filter(spec)
    expected = expected_rows(spec, metadatas)
    assert compiled.mask(columns).tolist() == expected
    assert [compiled.matches(m) for m in metadatas] == expected


def finite(value):
    """The value with NaN and infinities (which JSON, so a segment, cannot hold) made finite."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    if type(value) is float and not math.isfinite(value):
        return 1.5
    return value


def segment_columns_of(metadatas, payload_bytes):
    """The columns a reopened v2 segment of these rows serves; with payload_bytes 0 every field
    holding a string is a payload field, whose column is built from the rows' JSON."""
    n = len(metadatas)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
            segment_columns, "PAYLOAD_STRING_BYTES", payload_bytes):
        path = os.path.join(tmp, "1.seg")
        segment.write_segment(path, membrane_id=1, dim=1, metric="l2",
                              ids=np.arange(n, dtype=np.uint64), tombstones=np.zeros(n, bool),
                              vectors=np.zeros((n, 1), np.float32), metadatas=metadatas)
        reader = segment.SegmentReader(path, membrane_id=1, dim=1, metric="l2")
        reader.verify()  # the stored columns agree with the rows' JSON
        assert reader.format_version == segment.FORMAT_VERSION
        return reader.columns  # the mapping outlives the file's name


def assert_segments_agree_with_reference(spec, metadatas):
    """Both kinds of v2 column (typed arrays, and payload fields built from JSON) on a segment."""
    metadatas = [finite(m) for m in metadatas]
    for payload_bytes in (segment_columns.PAYLOAD_STRING_BYTES, 0):
        assert_agrees_with_reference(spec, segment_columns_of(metadatas, payload_bytes), metadatas)


@pytest.mark.parametrize("op", sorted(OPERAND_BY_OP))
@settings(max_examples=30, deadline=None)
@given(field, st.data())
def test_each_operator_agrees_with_reference(op, name, data):
    spec = {name: {op: data.draw(OPERAND_BY_OP[op], label="operand")}}
    metadatas = data.draw(records_near(spec), label="metadatas")
    assert_agrees_with_reference(spec, MetadataColumns.from_list(metadatas), metadatas)
    assert_segments_agree_with_reference(spec, metadatas)


@settings(max_examples=150, deadline=None)
@given(filters, st.data())
def test_mask_and_matches_agree_with_reference(spec, data):
    metadatas = data.draw(records_near(spec))
    assert_agrees_with_reference(spec, MetadataColumns.from_list(metadatas), metadatas)
    assert_segments_agree_with_reference(spec, metadatas)


@settings(max_examples=80, deadline=None)
@given(filters, st.data())
def test_columns_kept_in_sync_by_set_and_append_agree_with_reference(spec, data):
    initial = data.draw(records_near(spec))
    overwrites = data.draw(st.lists(st.tuples(st.integers(0, 10**6), metadata), max_size=10))
    appended = data.draw(st.lists(metadata, max_size=5))
    columns = MetadataColumns()
    current = []
    for m in initial:
        columns.append(m)
        current.append(m)
    # Masking now builds the columns of the dotted paths, which the writes below must keep in sync.
    compile_filter(spec).mask(columns)
    for slot, m in overwrites:
        row = slot % len(current)
        columns.set(row, m)
        current[row] = m
    for m in appended:
        assert columns.append(m) == len(current)
        current.append(m)
    assert len(columns) == len(current)
    assert_agrees_with_reference(spec, columns, current)


# --- Filter.key: what caches of masks are keyed by --------------------------------------------


def respelled(spec):
    """The same filter written another way: numpy scalars, tuples, clauses in reverse order."""
    if isinstance(spec, dict):
        return {key: respelled(value) if key != "$between" else [respelled(v) for v in value]
                for key, value in reversed(spec.items())}
    if isinstance(spec, list):
        return tuple(respelled(item) for item in reversed(spec))
    if type(spec) is bool:
        return np.bool_(spec)
    if type(spec) is int and -(2**63) <= spec < 2**63:
        return np.int64(spec)
    if type(spec) is float:
        return np.float64(spec)
    if type(spec) is str:
        return np.str_(spec)
    return spec


def lookalikes(operand):
    """Values equal to operand in Python or in text, of other types: what a bad key would mix up."""
    if isinstance(operand, list):
        return [[], list(reversed(operand)), [*operand, *operand[:1]]]
    if operand is None:
        return ["None", "", False, 0, []]
    if isinstance(operand, str):
        return [operand.upper(), operand.casefold(), *([int(operand)] if operand.isdigit() else [])]
    values = [str(operand), repr(operand), not operand, -operand]
    if isinstance(operand, bool) or operand in (0, 1):
        values += [bool(operand), int(operand), float(operand)]
    elif isinstance(operand, int) and abs(operand) < 2**1000:
        values += [float(operand)]
    elif isinstance(operand, float) and operand.is_integer():
        values += [int(operand)]
    return values


def redrawn(spec, draw):
    """spec with some operands replaced: by lookalikes, which a key must tell apart unless they
    are equal for the filter (1 and 1.0, 0 and -0.0), or by any other valid operand."""

    def operand(value, strategy):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            return value
        return draw(st.sampled_from(lookalikes(value)) if choice == 1 else strategy)

    out = {}
    for key, value in spec.items():
        if key in ("$and", "$or"):
            out[key] = [redrawn(child, draw) for child in value]
        elif key == "$not":
            out[key] = ([redrawn(child, draw) for child in value] if isinstance(value, list)
                        else redrawn(value, draw))
        elif isinstance(value, dict):
            out[key] = {op: operand(x, OPERAND_BY_OP[op]) for op, x in value.items()}
        else:
            out[key] = operand(value, scalar)
    return out


@settings(max_examples=100, deadline=None)
@given(filters, st.data())
def test_a_respelled_filter_has_the_same_key_and_rows(spec, data):
    compiled, other = compile_filter(spec), compile_filter(respelled(spec))
    if compiled is None:  # {} or a filter whose clauses were all empty
        assert other is None
        return
    assert other.key == compiled.key
    metadatas = data.draw(records_near(spec))
    columns = MetadataColumns.from_list(metadatas)
    assert other.mask(columns).tolist() == compiled.mask(columns).tolist()


@pytest.mark.parametrize("op", sorted(OPERAND_BY_OP))
@settings(max_examples=40, deadline=None)
@given(field, st.data())
def test_each_operator_keys_lookalike_operands_apart_unless_they_select_the_same_rows(op, name, data):
    operand = data.draw(OPERAND_BY_OP[op], label="operand")
    lookalike = data.draw(st.sampled_from(lookalikes(operand)), label="lookalike")
    assert_equal_keys_select_the_same_rows({name: {op: operand}}, {name: {op: lookalike}}, data)


@settings(max_examples=200, deadline=None)
@given(filters, st.data())
def test_filters_with_equal_keys_select_the_same_rows(spec, data):
    assert_equal_keys_select_the_same_rows(spec, redrawn(spec, data.draw), data)


def assert_equal_keys_select_the_same_rows(spec, other, data):
    compiled = compile_filter(spec)
    try:
        other_compiled = compile_filter(other)
    except InvalidArgumentError:  # a lookalike the operator does not take ("" for $is_empty)
        return
    if compiled is None or other_compiled is None or compiled.key != other_compiled.key:
        return
    event("keys equal")
    metadatas = data.draw(records_near(spec)) + data.draw(records_near(other))
    assert other_compiled.mask(MetadataColumns.from_list(metadatas)).tolist() == expected_rows(
        spec, metadatas
    )


# --- $like/$ilike and dotted fields, each on its own -------------------------------------------

like_text = st.text(alphabet="ab_%\\ß", max_size=8)
like_pattern = st.text(alphabet="ab_%\\S", max_size=6).filter(
    lambda p: (len(p) - len(p.rstrip("\\"))) % 2 == 0  # no lone escape at the end
)


@settings(max_examples=400, deadline=None)
@given(st.lists(like_text, min_size=1, max_size=8), like_pattern)
def test_like_and_ilike_agree_with_reference(texts, pattern):
    metadatas = [{"t": text} for text in texts]
    columns = MetadataColumns.from_list(metadatas)
    for op in ("$like", "$ilike"):
        assert_agrees_with_reference({"t": {op: pattern}}, columns, metadatas)


def test_like_agrees_with_reference_on_every_small_pattern_and_text():
    """Exhaustive where random draws are thin: every pattern of up to 4 of "a%_" (anchoring and
    piece placement) against every text of up to 3 of "ab"."""
    texts = ["".join(chars) for n in range(4) for chars in itertools.product("ab", repeat=n)]
    metadatas = [{"t": text} for text in texts]
    columns = MetadataColumns.from_list(metadatas)
    for n in range(5):
        for chars in itertools.product("a%_", repeat=n):
            assert_agrees_with_reference({"t": {"$like": "".join(chars)}}, columns, metadatas)


DOTTED = ["n.a", "n.b", "n.b.a", "n.x"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DOTTED), field_ops, st.data())
def test_dotted_field_columns_follow_set_and_append(name, ops, data):
    """The column of a dotted path is built at the first mask, then kept in sync by writes."""
    spec = {name: ops}
    nested = objects_of(metadata_value | st.sampled_from([*near(0), *near("a")]))
    row = st.none() | st.fixed_dictionaries({"n": nested}) | record
    initial = [{"n": {"a": 0, "b": {"a": "a"}}}, *data.draw(st.lists(row, min_size=1, max_size=10))]
    columns = MetadataColumns.from_list(initial)
    current = list(initial)
    assert_agrees_with_reference(spec, columns, current)
    for _ in range(data.draw(st.integers(1, 4))):
        for slot, m in data.draw(st.lists(st.tuples(st.integers(0, 10**6), row), max_size=6)):
            columns.set(slot % len(current), m)
            current[slot % len(current)] = m
        for m in data.draw(st.lists(row, max_size=4)):
            columns.append(m)
            current.append(m)
        assert_agrees_with_reference(spec, columns, current)
