"""Named scenarios of the filter language; the expected rows are worked out by hand from API.md."""

from __future__ import annotations

import numpy as np
import pytest

from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.filters import MAX_FILTER_DEPTH, Filter, MetadataColumns, compile_filter


def rows_matching(spec, metadatas):
    """Rows the filter selects, checking that mask() and matches() agree on every row."""
    columns = MetadataColumns.from_list(metadatas)
    compiled = compile_filter(spec)
    mask = compiled.mask(columns)
    assert mask.dtype == np.bool_ and mask.shape == (len(metadatas),)
    per_record = [compiled.matches(metadata) for metadata in metadatas]
    assert mask.tolist() == per_record
    return [row for row, hit in enumerate(per_record) if hit]


PEOPLE = [
    {"tag": "t3", "year": 2024, "tags": ["a", "b"], "title": "Hello World"},  # 0
    {"tag": "t3", "year": 2020, "tags": ["b"], "title": "hello there"},  # 1
    {"tag": "t1", "year": 2024.0, "tags": [], "title": ""},  # 2
    {"tag": "t1", "year": "2024", "tags": ["a", 1, True], "title": None},  # 3
    None,  # 4
    {"year": True, "tags": "a b"},  # 5
]


def test_empty_and_none_filters_match_everything_by_compiling_to_none():
    assert compile_filter(None) is None
    assert compile_filter({}) is None


def test_compiled_filter_is_returned_unchanged():
    compiled = compile_filter({"tag": "t3"})
    assert compile_filter(compiled) is compiled
    assert isinstance(compiled, Filter)


def test_equality_on_each_key_is_anded():
    assert rows_matching({"tag": "t3", "year": 2024}, PEOPLE) == [0]


def test_int_equals_float_of_same_value():
    assert rows_matching({"year": 2024}, PEOPLE) == [0, 2]
    assert rows_matching({"year": 2024.0}, PEOPLE) == [0, 2]


def test_bool_is_its_own_type_not_a_number():
    metadatas = [{"x": True}, {"x": 1}, {"x": 1.0}, {"x": False}, {"x": 0}]
    assert rows_matching({"x": True}, metadatas) == [0]
    assert rows_matching({"x": 1}, metadatas) == [1, 2]
    assert rows_matching({"x": False}, metadatas) == [3]
    assert rows_matching({"x": {"$gt": 0}}, metadatas) == [1, 2]
    assert rows_matching({"x": {"$lte": 0}}, metadatas) == [4]
    assert rows_matching({"x": {"$in": [1]}}, metadatas) == [1, 2]
    assert rows_matching({"x": {"$in": [True]}}, metadatas) == [0]
    assert rows_matching({"x": {"$ne": 1}}, metadatas) == [0, 3, 4]


def test_string_never_equals_number():
    assert rows_matching({"year": "2024"}, PEOPLE) == [3]
    assert rows_matching({"year": {"$gte": "2000"}}, PEOPLE) == [3]


def test_eq_none_matches_stored_none_but_not_missing():
    assert rows_matching({"title": None}, PEOPLE) == [3]


def test_ne_matches_missing_other_types_and_lists():
    assert rows_matching({"tag": {"$ne": "t3"}}, PEOPLE) == [2, 3, 4, 5]
    assert rows_matching({"tags": {"$ne": "a"}}, PEOPLE) == [0, 1, 2, 3, 4, 5]


def test_numeric_comparisons_skip_strings_bools_and_missing():
    assert rows_matching({"year": {"$gt": 2020}}, PEOPLE) == [0, 2]
    assert rows_matching({"year": {"$gte": 2020}}, PEOPLE) == [0, 1, 2]
    assert rows_matching({"year": {"$lt": 2024}}, PEOPLE) == [1]
    assert rows_matching({"year": {"$lte": 2024}}, PEOPLE) == [0, 1, 2]


def test_several_operators_on_one_field_are_anded():
    assert rows_matching({"year": {"$gte": 2020, "$lt": 2024}}, PEOPLE) == [1]


def test_string_comparisons_order_by_code_point():
    metadatas = [{"s": "apple"}, {"s": "Banana"}, {"s": "banana"}, {"s": "cherry"}, {"s": 5}]
    assert rows_matching({"s": {"$gt": "banana"}}, metadatas) == [3]
    assert rows_matching({"s": {"$gte": "banana"}}, metadatas) == [2, 3]
    assert rows_matching({"s": {"$lt": "apple"}}, metadatas) == [1]
    assert rows_matching({"s": {"$lte": "b"}}, metadatas) == [0, 1]


def test_in_and_nin_with_mixed_type_operands():
    assert rows_matching({"tag": {"$in": ["t1", "t9"]}}, PEOPLE) == [2, 3]
    assert rows_matching({"year": {"$in": [2020, "2024"]}}, PEOPLE) == [1, 3]
    assert rows_matching({"year": {"$in": [True, None]}}, PEOPLE) == [5]
    assert rows_matching({"tag": {"$nin": ["t1", "t9"]}}, PEOPLE) == [0, 1, 4, 5]
    assert rows_matching({"tag": {"$in": []}}, PEOPLE) == []
    assert rows_matching({"tag": {"$nin": []}}, PEOPLE) == [0, 1, 2, 3, 4, 5]


def test_in_does_not_look_inside_list_fields():
    assert rows_matching({"tags": {"$in": ["a", "b"]}}, PEOPLE) == []
    assert rows_matching({"tags": {"$nin": ["a", "b"]}}, PEOPLE) == [0, 1, 2, 3, 4, 5]


def test_equality_with_a_list_field_does_not_match_use_contains():
    assert rows_matching({"tags": "b"}, PEOPLE) == []
    assert rows_matching({"tags": {"$contains": "b"}}, PEOPLE) == [0, 1, 5]  # 5: "a b" is a str


def test_contains_on_list_elements_and_on_substrings():
    assert rows_matching({"tags": {"$contains": "a"}}, PEOPLE) == [0, 3, 5]
    assert rows_matching({"tags": {"$contains": 1}}, PEOPLE) == [3]
    assert rows_matching({"tags": {"$contains": True}}, PEOPLE) == [3]
    assert rows_matching({"title": {"$contains": "llo"}}, PEOPLE) == [0, 1]
    assert rows_matching({"title": {"$contains": ""}}, PEOPLE) == [0, 1, 2]


def test_contains_keeps_bool_and_number_elements_apart():
    metadatas = [{"v": [1]}, {"v": [True]}, {"v": [1.0, None]}, {"v": [0]}]
    assert rows_matching({"v": {"$contains": 1}}, metadatas) == [0, 2]
    assert rows_matching({"v": {"$contains": True}}, metadatas) == [1]
    assert rows_matching({"v": {"$contains": False}}, metadatas) == []
    assert rows_matching({"v": {"$contains": None}}, metadatas) == [2]


def test_any_and_all_need_a_list_field():
    assert rows_matching({"tags": {"$any": ["a", "z"]}}, PEOPLE) == [0, 3]
    assert rows_matching({"tags": {"$all": ["a", "b"]}}, PEOPLE) == [0]
    assert rows_matching({"tags": {"$all": ["a", 1.0, True]}}, PEOPLE) == [3]
    assert rows_matching({"tags": {"$any": []}}, PEOPLE) == []
    assert rows_matching({"tags": {"$all": []}}, PEOPLE) == [0, 1, 2, 3]


def test_text_match_is_case_sensitive_and_itext_match_is_not():
    assert rows_matching({"title": {"$text_match": "hello"}}, PEOPLE) == [1]
    assert rows_matching({"title": {"$itext_match": "HELLO"}}, PEOPLE) == [0, 1]
    assert rows_matching({"tags": {"$text_match": "a"}}, PEOPLE) == [5]


def test_itext_match_uses_full_case_folding():
    metadatas = [{"s": "Straße"}, {"s": "STRASSE"}, {"s": "strase"}]
    assert rows_matching({"s": {"$itext_match": "strasse"}}, metadatas) == [0, 1]


def test_is_empty_covers_missing_none_empty_string_and_empty_list():
    assert rows_matching({"title": {"$is_empty": True}}, PEOPLE) == [2, 3, 4, 5]
    assert rows_matching({"title": {"$is_empty": False}}, PEOPLE) == [0, 1]
    assert rows_matching({"tags": {"$is_empty": True}}, PEOPLE) == [2, 4]
    metadatas = [{"x": 0}, {"x": False}, {"x": 0.0}, {"x": [None]}, {"x": " "}]
    assert rows_matching({"x": {"$is_empty": True}}, metadatas) == []


def test_exists_counts_a_stored_none_as_present():
    assert rows_matching({"title": {"$exists": True}}, PEOPLE) == [0, 1, 2, 3]
    assert rows_matching({"title": {"$exists": False}}, PEOPLE) == [4, 5]


MISSING_FIELD_CASES = [
    ({"$eq": None}, False),
    ({"$eq": 0}, False),
    ({"$ne": 0}, True),
    ({"$ne": None}, True),
    ({"$gt": 0}, False),
    ({"$gte": ""}, False),
    ({"$lt": 0}, False),
    ({"$lte": "z"}, False),
    ({"$in": [None, 0, ""]}, False),
    ({"$nin": [None, 0, ""]}, True),
    ({"$contains": ""}, False),
    ({"$any": [None]}, False),
    ({"$all": []}, False),
    ({"$text_match": ""}, False),
    ({"$itext_match": ""}, False),
    ({"$is_empty": True}, True),
    ({"$is_empty": False}, False),
    ({"$exists": True}, False),
    ({"$exists": False}, True),
]


@pytest.mark.parametrize(("ops", "expected"), MISSING_FIELD_CASES, ids=lambda c: str(c))
def test_missing_field_matches_only_ne_nin_is_empty_and_not_exists(ops, expected):
    # Row 0 lacks "x" while another row has it; row 1 has no metadata at all; the field "y"
    # exists in no row, so it has no column.
    metadatas = [{"other": 1}, None, {"x": 5}]
    matching_rows_without_x = [row for row in rows_matching({"x": ops}, metadatas) if row < 2]
    assert matching_rows_without_x == ([0, 1] if expected else [])
    assert rows_matching({"y": ops}, metadatas) == ([0, 1, 2] if expected else [])


def test_nested_not_or_and():
    spec = {"$or": [{"$and": [{"tag": "t3"}, {"$not": {"year": 2024}}]}, {"year": True}]}
    assert rows_matching(spec, PEOPLE) == [1, 5]
    assert rows_matching({"$not": spec}, PEOPLE) == [0, 2, 3, 4]
    assert rows_matching({"$not": {"$not": {"tag": "t1"}}}, PEOPLE) == [2, 3]


def test_logic_operators_mix_with_fields_at_one_level():
    spec = {"tag": "t3", "$or": [{"year": 2020}, {"tags": {"$contains": "a"}}]}
    assert rows_matching(spec, PEOPLE) == [0, 1]
    spec = {"tag": {"$exists": True}, "$not": {"tag": "t3"}, "$and": [{"year": {"$gt": 2000}}]}
    assert rows_matching(spec, PEOPLE) == [2]


def test_empty_subfilter_inside_logic_matches_everything():
    assert rows_matching({"$and": [{}, {"tag": "t1"}]}, PEOPLE) == [2, 3]
    assert rows_matching({"$not": {}}, PEOPLE) == []


def test_mixed_types_in_one_column():
    metadatas = [{"v": 2020}, {"v": "2020"}, {"v": [2020]}, {"v": None}, {"v": 2020.5}, {}]
    assert rows_matching({"v": 2020}, metadatas) == [0]
    assert rows_matching({"v": "2020"}, metadatas) == [1]
    assert rows_matching({"v": {"$gt": 2000}}, metadatas) == [0, 4]
    assert rows_matching({"v": {"$gt": "2000"}}, metadatas) == [1]
    assert rows_matching({"v": {"$contains": 2020}}, metadatas) == [2]
    assert rows_matching({"v": {"$contains": "20"}}, metadatas) == [1]


def test_ints_beyond_float64_precision_compare_exactly():
    big = 2**53
    metadatas = [{"n": big}, {"n": big + 1}, {"n": float(big)}, {"n": 2**64}, {"n": 10**400}]
    assert rows_matching({"n": big + 1}, metadatas) == [1]
    assert rows_matching({"n": big}, metadatas) == [0, 2]
    assert rows_matching({"n": {"$gt": big}}, metadatas) == [1, 3, 4]
    assert rows_matching({"n": {"$lt": big + 1}}, metadatas) == [0, 2]
    assert rows_matching({"n": {"$lte": big + 1}}, metadatas) == [0, 1, 2]
    assert rows_matching({"n": {"$gte": 10**400}}, metadatas) == [4]
    assert rows_matching({"n": {"$lt": 10**400}}, metadatas) == [0, 1, 2, 3]
    assert rows_matching({"n": {"$in": [big + 1, 2**64]}}, metadatas) == [1, 3]
    assert rows_matching({"n": {"$ne": big + 1}}, metadatas) == [0, 2, 3, 4]


def test_big_int_operand_against_ordinary_floats():
    odd = 2**53 + 1  # float(odd) rounds down to 2**53
    metadatas = [{"n": 2.0**53}, {"n": 2.0**53 + 2}, {"n": float("inf")}]
    assert rows_matching({"n": {"$lt": odd}}, metadatas) == [0]
    assert rows_matching({"n": {"$gt": odd}}, metadatas) == [1, 2]
    assert rows_matching({"n": {"$gte": odd}}, metadatas) == [1, 2]
    assert rows_matching({"n": {"$lte": odd}}, metadatas) == [0]
    assert rows_matching({"n": odd}, metadatas) == []
    assert rows_matching({"n": {"$gt": 10**400}}, metadatas) == [2]


def test_nan_in_metadata_equals_and_orders_against_nothing():
    metadatas = [{"x": float("nan")}, {"x": 1.0}]
    assert rows_matching({"x": {"$gte": 0}}, metadatas) == [1]
    assert rows_matching({"x": {"$lt": 0}}, metadatas) == []
    assert rows_matching({"x": {"$ne": 1}}, metadatas) == [0]
    assert rows_matching({"x": {"$is_empty": False}}, metadatas) == [0, 1]


def test_numpy_scalars_and_tuples_are_their_python_equivalents():
    metadatas = [{"n": np.int64(3), "b": np.bool_(True), "t": ("a", np.str_("b"))}, {"n": 3.5}]
    assert rows_matching({"n": np.float32(3.0)}, metadatas) == [0]
    assert rows_matching({"b": True}, metadatas) == [0]
    assert rows_matching({"b": 1}, metadatas) == []
    assert rows_matching({"t": {"$all": ("a", "b")}}, metadatas) == [0]
    assert rows_matching({"n": {"$in": np.array([3, 4])}}, metadatas) == [0]


# Rows on which each pair of filters below that should differ does differ.
KEY_PROBES = [{"n": 1}, {"n": "1"}, {"n": True}, {"n": 2**53 + 1}, {"n": repr(np.int64(1))},
              {"n": None}, {"n": "None"}, {"s": "x"}, {"s": "X"}]


def key_of(spec):
    return compile_filter(spec).key


@pytest.mark.parametrize(
    ("spec", "respelled"),
    [
        ({"year": 2024}, {"year": np.int64(2024)}),
        ({"year": 2024}, {"year": {"$eq": 2024.0}}),
        ({"b": True}, {"b": np.bool_(True)}),
        ({"s": "x"}, {"s": np.str_("x")}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"n": {"$in": [1, "a", None]}}, {"n": {"$in": (None, "a", np.int64(1), 1.0)}}),
        ({"n": {"$in": [3, 4]}}, {"n": {"$in": np.array([4, 3])}}),
        ({"$or": [{"a": 1}, {"b": 2}]}, {"$or": [{"b": 2}, {"a": np.int32(1)}]}),
        ({"n": {"$gt": 1, "$lt": 5}}, {"n": {"$lt": 5, "$gt": 1}}),
    ],
)
def test_filters_that_select_the_same_rows_share_a_key(spec, respelled):
    assert key_of(spec) == key_of(respelled)
    assert hash(key_of(spec)) == hash(key_of(respelled))
    assert rows_matching(spec, PEOPLE + KEY_PROBES) == rows_matching(respelled, PEOPLE + KEY_PROBES)


@pytest.mark.parametrize(
    ("spec", "other"),
    [
        ({"n": 1}, {"n": "1"}),
        ({"n": 1}, {"n": True}),
        ({"n": np.int64(1)}, {"n": repr(np.int64(1))}),  # once one key: json.dumps(default=repr)
        ({"n": 2**53 + 1}, {"n": float(2**53 + 1)}),
        ({"n": None}, {"n": "None"}),
        ({"n": {"$in": [1]}}, {"n": {"$in": ["1"]}}),
        ({"n": {"$in": [1]}}, {"n": {"$nin": [1]}}),
        ({"n": {"$gt": 1}}, {"n": {"$gte": 1}}),
        ({"n": 1}, {"m": 1}),
        ({"n": 1}, {"$not": {"n": 1}}),
        ({"$and": [{"n": 1}, {"s": "x"}]}, {"$or": [{"n": 1}, {"s": "x"}]}),
        ({"s": {"$text_match": "x"}}, {"s": {"$itext_match": "x"}}),
        ({"n": {"$exists": True}}, {"n": {"$is_empty": False}}),
    ],
)
def test_filters_that_select_different_rows_have_different_keys(spec, other):
    assert rows_matching(spec, PEOPLE + KEY_PROBES) != rows_matching(other, PEOPLE + KEY_PROBES)
    assert key_of(spec) != key_of(other)


def test_value_of_unsupported_type_equals_nothing_but_exists():
    metadatas = [{"d": {"nested": 1}}, {"d": [[1], {"k": 1}]}]
    assert rows_matching({"d": {"$exists": True}}, metadatas) == [0, 1]
    assert rows_matching({"d": {"$is_empty": False}}, metadatas) == [0, 1]
    assert rows_matching({"d": {"$ne": 1}}, metadatas) == [0, 1]
    assert rows_matching({"d": {"$contains": 1}}, metadatas) == []
    assert rows_matching({"d": {"$gt": 0}}, metadatas) == []


def test_field_first_seen_late_reads_missing_in_earlier_rows():
    columns = MetadataColumns()
    for i in range(100):
        columns.append({"i": i})
    columns.append({"i": 100, "late": "x"})
    late_missing = compile_filter({"late": {"$exists": False}}).mask(columns)
    assert late_missing.tolist() == [True] * 100 + [False]
    assert compile_filter({"late": "x"}).mask(columns).tolist() == [False] * 100 + [True]


def test_append_returns_row_indices_and_grows_past_capacity():
    columns = MetadataColumns()
    rows = [columns.append({"n": i % 7, "s": str(i)}) for i in range(1000)]
    assert rows == list(range(1000)) and len(columns) == 1000
    mask = compile_filter({"n": {"$lt": 2}}).mask(columns)
    assert np.flatnonzero(mask).tolist() == [i for i in range(1000) if i % 7 < 2]
    assert np.flatnonzero(compile_filter({"s": "999"}).mask(columns)).tolist() == [999]


def test_set_overwrites_a_row_and_forgets_its_old_fields():
    columns = MetadataColumns.from_list([{"a": 1, "tags": ["x"]}, {"a": 2}, {"a": "three"}])
    columns.set(0, {"b": "new"})
    columns.set(2, {"a": 3})
    columns.set(1, None)
    assert len(columns) == 3
    assert compile_filter({"a": {"$exists": True}}).mask(columns).tolist() == [False, False, True]
    assert compile_filter({"tags": {"$contains": "x"}}).mask(columns).tolist() == [False] * 3
    assert compile_filter({"a": {"$gte": 3}}).mask(columns).tolist() == [False, False, True]
    assert compile_filter({"a": "three"}).mask(columns).tolist() == [False] * 3
    assert compile_filter({"b": "new"}).mask(columns).tolist() == [True, False, False]
    assert compile_filter({"tags": {"$is_empty": True}}).mask(columns).tolist() == [True] * 3


def test_set_of_a_huge_int_row_to_a_small_one_drops_the_exact_copy():
    columns = MetadataColumns.from_list([{"n": 2**70}])
    columns.set(0, {"n": 5})
    assert compile_filter({"n": 5}).mask(columns).tolist() == [True]
    assert compile_filter({"n": {"$gt": 100}}).mask(columns).tolist() == [False]


def test_set_outside_the_rows_raises_index_error():
    columns = MetadataColumns.from_list([{"a": 1}])
    with pytest.raises(IndexError):
        columns.set(1, {"a": 2})
    with pytest.raises(IndexError):
        columns.set(-1, {"a": 2})


@pytest.mark.parametrize("metadata", [["a"], "text", {1: "int key"}, {"ok": 1, (2,): "tuple key"}])
def test_malformed_metadata_is_rejected_without_adding_a_row(metadata):
    columns = MetadataColumns.from_list([{"ok": 0}])
    with pytest.raises(InvalidArgumentError):
        columns.append(metadata)
    with pytest.raises(InvalidArgumentError):
        columns.set(0, metadata)
    assert len(columns) == 1
    assert compile_filter({"ok": 0}).mask(columns).tolist() == [True]


def test_mask_over_no_rows_is_empty():
    columns = MetadataColumns()
    assert compile_filter({"a": 1}).mask(columns).shape == (0,)
    assert compile_filter({"a": {"$exists": False}}).mask(columns).shape == (0,)


def test_matches_treats_none_metadata_as_no_fields_and_rejects_non_dicts():
    compiled = compile_filter({"a": {"$exists": False}})
    assert compiled.matches(None)
    with pytest.raises(InvalidArgumentError):
        compiled.matches(["a"])


def nested(depth):
    spec = {"x": 1}
    for _ in range(depth - 1):
        spec = {"$not": spec}
    return spec


def test_nesting_up_to_the_documented_limit_is_accepted():
    compiled = compile_filter(nested(MAX_FILTER_DEPTH))
    # An odd number of $not levels around {"x": 1}: 31 for a depth of 32.
    assert compiled.matches({"x": 2}) and not compiled.matches({"x": 1})


def test_nesting_beyond_the_limit_is_rejected():
    with pytest.raises(InvalidArgumentError, match="nested more than 32"):
        compile_filter(nested(MAX_FILTER_DEPTH + 1))
    with pytest.raises(InvalidArgumentError, match="nested more than 32"):
        compile_filter({"$and": [{"$or": [nested(MAX_FILTER_DEPTH - 1)]}]})


def test_absurdly_deep_nesting_is_rejected_cleanly_not_by_recursion_error():
    spec = nested(100_000)
    with pytest.raises(InvalidArgumentError, match="nested"):
        compile_filter(spec)
    cyclic = {}
    cyclic["$not"] = cyclic
    with pytest.raises(InvalidArgumentError, match="nested"):
        compile_filter(cyclic)
    deep_list = []
    for _ in range(100_000):
        deep_list = [deep_list]
    with pytest.raises(InvalidArgumentError, match="expected true or false, got list"):
        compile_filter({"x": {"$exists": deep_list}})


MALFORMED = [
    ("not a dict", ["tag", "t3"], "must be a dict"),
    ("string filter", "tag == t3", "must be a dict"),
    ("non-str top key", {1: "a"}, "keys must be str"),
    ("unknown logical", {"$xor": []}, "unknown logical operator '\\$xor'"),
    ("field op at top", {"$eq": 1}, "field operators go inside a field"),
    ("unknown field op", {"a": {"$regex": "x"}}, "unknown operator '\\$regex'"),
    ("nested field", {"a": {"b": 1}}, "use a dotted key, like \\{'a.b': ...\\}"),
    ("non-str op key", {"a": {1: 1}}, "unknown operator 1"),
    ("empty op dict", {"a": {}}, "empty operator dict"),
    ("list equality", {"a": [1, 2]}, "use \\$in"),
    ("eq list", {"a": {"$eq": [1]}}, "got a list"),
    ("eq dict-like object", {"a": {"$eq": object()}}, "got object"),
    ("nan eq", {"a": float("nan")}, "NaN"),
    ("nan in", {"a": {"$in": [1, float("nan")]}}, "\\['\\$in'\\]\\[1\\]: NaN"),
    ("nan gt", {"a": {"$gt": np.float64("nan")}}, "NaN"),
    ("in scalar", {"a": {"$in": 1}}, "expected a list of values"),
    ("in string", {"a": {"$in": "abc"}}, "expected a list of values"),
    ("nin dict", {"a": {"$nin": {"x": 1}}}, "expected a list of values"),
    ("in nested list", {"a": {"$in": [[1]]}}, "got a list"),
    ("any scalar", {"a": {"$any": "x"}}, "expected a list of values"),
    ("all scalar", {"a": {"$all": 3}}, "expected a list of values"),
    ("gt list", {"a": {"$gt": [1]}}, "got a list"),
    ("gt none", {"a": {"$lt": None}}, "comparisons need a number or a str"),
    ("gt bool", {"a": {"$gte": True}}, "comparisons need a number or a str"),
    ("contains list", {"a": {"$contains": ["x", "y"]}}, "\\$any/\\$all"),
    ("text_match int", {"a": {"$text_match": 1}}, "expected a str"),
    ("itext_match none", {"a": {"$itext_match": None}}, "expected a str"),
    ("exists int", {"a": {"$exists": 1}}, "expected true or false"),
    ("exists str", {"a": {"$exists": "yes"}}, "expected true or false"),
    ("is_empty none", {"a": {"$is_empty": None}}, "expected true or false"),
    ("and dict", {"$and": {"a": 1}}, "\\$and needs a list of filters"),
    ("or string", {"$or": "a"}, "\\$or needs a list of filters"),
    ("and empty", {"$and": []}, "\\$and needs at least one filter"),
    ("or empty", {"$or": []}, "\\$or needs at least one filter"),
    (
        "and with non-dict",
        {"$and": [{"a": 1}, 2]},
        "\\['\\$and'\\]\\[1\\]: a filter must be a dict",
    ),
    ("not empty list", {"$not": []}, "\\$not needs at least one filter"),
    ("not list of non-dict", {"$not": [{"a": 1}, 2]}, "\\['\\$not'\\]\\[1\\]: a filter must be a dict"),
    ("not none", {"$not": None}, "a filter must be a dict"),
    ("deep bad", {"$or": [{"$not": {"a": {"$in": 5}}}]}, "\\['\\$or'\\]\\[0\\]\\['\\$not'\\]"),
]


@pytest.mark.parametrize(
    ("spec", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_filter_raises_invalid_argument_saying_what_and_where(spec, message):
    with pytest.raises(InvalidArgumentError, match=message):
        compile_filter(spec)


def test_invalid_argument_error_is_a_value_error():
    with pytest.raises(ValueError):
        compile_filter({"a": {"$bogus": 1}})
