"""mask() and matches() against an independent pure-Python reference of the filter semantics
(API.md "Filters" and the filters.py docstring), on random metadata and random filters."""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

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
    assert op == "$exists"
    return (value is not ABSENT) == operand


def reference_match(spec, metadata):
    metadata = metadata or {}
    for key, value in spec.items():
        if key == "$and":
            ok = all(reference_match(child, metadata) for child in value)
        elif key == "$or":
            ok = any(reference_match(child, metadata) for child in value)
        elif key == "$not":
            ok = not reference_match(value, metadata)
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            field_value = metadata.get(key, ABSENT)
            ok = all(reference_op(op, operand, field_value) for op, operand in ops.items())
        if not ok:
            return False
    return True


# --- random metadata and filters over a small universe, so that they often meet -------------

FIELDS = ["a", "b", "c"]
NUMBERS = [0, 1, 1.0, -0.0, 0.5, 2, 2**53, 2**53 + 1, float(2**53), 10**400]
STRINGS = ["", "a", "A", "ab", "Ab", "ba", "1", "ß", "SS"]
number = st.sampled_from(NUMBERS)
string = st.sampled_from(STRINGS)
scalar = st.none() | st.booleans() | number | string
# Metadata also holds values no filter operand can be (NaN, infinities).
metadata_scalar = (
    st.none() | st.booleans() | st.sampled_from([*NUMBERS, math.inf, -math.inf, math.nan]) | string
)
metadata_value = metadata_scalar | st.lists(metadata_scalar, max_size=3)
record = st.dictionaries(st.sampled_from(FIELDS), metadata_value, min_size=1, max_size=3)
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
}
field_ops = st.lists(st.sampled_from(sorted(OPERAND_BY_OP)), min_size=1, max_size=2, unique=True)
field_ops = field_ops.flatmap(
    lambda names: st.fixed_dictionaries({name: OPERAND_BY_OP[name] for name in names})
)
# "d" is in no record, so it exercises the field-without-a-column path.
field = st.sampled_from(FIELDS + ["d"])
leaf = st.builds(lambda name, ops: {name: ops}, field, field_ops) | st.builds(
    lambda name, value: {name: value}, field, scalar
)


def combine(children):
    return (
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$and": fs})
        | st.lists(children, min_size=1, max_size=3).map(lambda fs: {"$or": fs})
        | children.map(lambda f: {"$not": f})
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
            yield from operands_of(value)
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
        st.none() | st.dictionaries(fields, value, min_size=1, max_size=3) | record,
        min_size=10,
        max_size=30,
    )


def assert_agrees_with_reference(spec, columns, metadatas):
    compiled = compile_filter(spec)
    expected = expected_rows(spec, metadatas)
    assert compiled.mask(columns).tolist() == expected
    assert [compiled.matches(m) for m in metadatas] == expected


@pytest.mark.parametrize("op", sorted(OPERAND_BY_OP))
@settings(max_examples=30, deadline=None)
@given(field, st.data())
def test_each_operator_agrees_with_reference(op, name, data):
    spec = {name: {op: data.draw(OPERAND_BY_OP[op], label="operand")}}
    metadatas = data.draw(records_near(spec), label="metadatas")
    assert_agrees_with_reference(spec, MetadataColumns.from_list(metadatas), metadatas)


@settings(max_examples=150, deadline=None)
@given(filters, st.data())
def test_mask_and_matches_agree_with_reference(spec, data):
    metadatas = data.draw(records_near(spec))
    assert_agrees_with_reference(spec, MetadataColumns.from_list(metadatas), metadatas)


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
        return {key: respelled(value) for key, value in reversed(spec.items())}
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
            out[key] = redrawn(value, draw)
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
