"""Named scenarios of dotted keys, $between, $like/$ilike and the list form of $not (API.md
"Filters"), on columns and on single records; then through a DB, memtable and segment alike."""

from __future__ import annotations

import time
from types import MappingProxyType

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core.errors import InvalidArgumentError
from pomaidb_core.filters import MetadataColumns, compile_filter


def rows_matching(spec, metadatas):
    """Rows the filter selects, checking that mask() and matches() agree on every row."""
    compiled = compile_filter(spec)
    mask = compiled.mask(MetadataColumns.from_list(metadatas)).tolist()
    assert mask == [compiled.matches(m) for m in metadatas]
    return [row for row, hit in enumerate(mask) if hit]


BOOKS = [
    {"author": {"name": "Ann", "born": 1950, "address": {"city": "Oslo"}}, "year": 2001},  # 0
    {"author": {"name": "Bob", "born": 1980}, "year": 2010},  # 1
    {"author": "Ann", "year": 1999},  # 2: not an object
    {"author.name": "Bob", "author": {"name": "Ann"}},  # 3: the literal key wins
    {"author": {"name": None}},  # 4
    {"author": [{"name": "Ann"}]},  # 5: lists are not entered
    {"author": {"first.last": "Ann Lee"}},  # 6: a nested key holding a dot
    None,  # 7
]


def test_dotted_key_reads_a_nested_field():
    assert rows_matching({"author.name": "Ann"}, BOOKS) == [0]
    assert rows_matching({"author.address.city": "Oslo"}, BOOKS) == [0]
    assert rows_matching({"author.born": {"$gte": 1960}}, BOOKS) == [1]


def test_a_top_level_key_holding_the_dots_is_matched_literally_first():
    assert rows_matching({"author.name": "Bob"}, BOOKS) == [1, 3]
    assert rows_matching({"author.name": {"$in": ["Ann"]}}, BOOKS) == [0]


def test_a_missing_path_is_a_missing_field():
    assert rows_matching({"author.name": {"$exists": False}}, BOOKS) == [2, 5, 6, 7]
    assert rows_matching({"author.name": {"$is_empty": True}}, BOOKS) == [2, 4, 5, 6, 7]
    assert rows_matching({"author.name": {"$ne": "Ann"}}, BOOKS) == [1, 2, 3, 4, 5, 6, 7]
    assert rows_matching({"author.first.last": {"$exists": True}}, BOOKS) == []


def test_an_intermediate_object_exists_but_equals_nothing():
    assert rows_matching({"author.address": {"$exists": True}}, BOOKS) == [0]
    assert rows_matching({"author.address": {"$is_empty": False}}, BOOKS) == [0]
    assert rows_matching({"author.address": {"$eq": "Oslo"}}, BOOKS) == []


def test_matches_reads_dotted_keys_from_any_mapping():
    record = MappingProxyType({"author": {"name": "Ann"}, "x.y": 1})
    assert compile_filter({"author.name": "Ann"}).matches(record)
    assert compile_filter({"x.y": 1}).matches(record)


def test_dotted_columns_follow_later_appends_and_overwrites():
    columns = MetadataColumns.from_list([{"a": {"b": 1}}, {"a": {"b": 2}}])
    flt = compile_filter({"a.b": {"$gte": 2}})
    assert flt.mask(columns).tolist() == [False, True]  # builds the column of a.b
    columns.append({"a": {"b": 5}})
    columns.set(0, {"a": {"b": 3}})
    columns.set(1, {"a": "flat"})
    columns.append({"a.b": 9})
    assert flt.mask(columns).tolist() == [True, False, True, True]


def test_between_is_inclusive_at_both_ends():
    rows = [{"y": 1999}, {"y": 2000}, {"y": 2000.5}, {"y": 2010}, {"y": 2011}, {"y": "2005"},
            {"y": True}, {}]
    assert rows_matching({"y": {"$between": [2000, 2010]}}, rows) == [1, 2, 3]
    assert rows_matching({"y": {"$between": (2000, 2000)}}, rows) == [1]
    words = [{"w": "apple"}, {"w": "b"}, {"w": "banana"}, {"w": "c"}, {"w": 3}]
    assert rows_matching({"w": {"$between": ["b", "c"]}}, words) == [1, 2, 3]


def test_between_compares_huge_ints_exactly():
    big = 2**60
    rows = [{"n": big - 1}, {"n": big}, {"n": big + 1}, {"n": float(big)}]
    assert rows_matching({"n": {"$between": [big + 1, big + 1]}}, rows) == [2]
    assert rows_matching({"n": {"$between": [big, big + 1]}}, rows) == [1, 2, 3]


LIKE_ROWS = [
    {"t": "report-2024.pdf"},  # 0
    {"t": "Report-2023.PDF"},  # 1
    {"t": "50% off"},  # 2
    {"t": "a_b"},  # 3
    {"t": "axb"},  # 4
    {"t": "C:\\temp"},  # 5
    {"t": ""},  # 6
    {"t": ["report.pdf"]},  # 7: lists never match
    {"t": 50},  # 8
]


@pytest.mark.parametrize(
    ("pattern", "like", "ilike"),
    [
        ("report%", [0], [0, 1]),
        ("%.pdf", [0], [0, 1]),
        ("report-202_.pdf", [0], [0, 1]),
        ("report", [], []),  # the whole string must match
        ("%", [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]),
        ("_", [], []),
        ("", [6], [6]),
        ("a_b", [3, 4], [3, 4]),
        ("a\\_b", [3], [3]),
        ("50\\%%", [2], [2]),
        ("%\\%%", [2], [2]),
        ("C:\\\\temp", [5], [5]),
        ("\\a_b", [3, 4], [3, 4]),  # an escaped ordinary character is itself
    ],
)
def test_like_and_ilike_patterns(pattern, like, ilike):
    assert rows_matching({"t": {"$like": pattern}}, LIKE_ROWS) == like
    assert rows_matching({"t": {"$ilike": pattern}}, LIKE_ROWS) == ilike


def test_ilike_casefolds_like_itext_match():
    rows = [{"t": "Straße"}, {"t": "STRASSE"}, {"t": "strasse"}]
    assert rows_matching({"t": {"$ilike": "strasse"}}, rows) == [0, 1, 2]
    assert rows_matching({"t": {"$ilike": "STRAßE"}}, rows) == [0, 1, 2]
    assert rows_matching({"t": {"$like": "Stra_e"}}, rows) == [0]


def test_like_never_backtracks_exponentially():
    text = "a" * 200_000
    pattern = "%a%a%a%a%a%a%a%a%b"
    started = time.perf_counter()
    assert rows_matching({"t": {"$like": pattern}}, [{"t": text}]) == []
    assert time.perf_counter() - started < 2.0


def test_not_of_a_list_is_the_not_of_their_and():
    rows = [{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 2, "b": 1}, {}]
    assert rows_matching({"$not": [{"a": 1}, {"b": 1}]}, rows) == [1, 2, 3]
    assert rows_matching({"$not": [{"a": 1}]}, rows) == [2, 3]
    assert rows_matching({"$not": [{"a": 1}], "b": 1}, rows) == [2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"y": {"$between": 5}}, "needs a \\[low, high\\] list, got 5"),
        ({"y": {"$between": [1, 2, 3]}}, "needs 2 values, got 3"),
        ({"y": {"$between": [1]}}, "needs 2 values, got 1"),
        ({"y": {"$between": [1, "9"]}}, "both be numbers or both be strings"),
        ({"y": {"$between": [None, 9]}}, "\\[0\\]: comparisons need a number or a str"),
        ({"y": {"$between": [True, 9]}}, "comparisons need a number or a str"),
        ({"y": {"$between": [9, 1]}}, "low 9 is above high 1, so nothing could match; swap them"),
        ({"y": {"$between": [1, float("nan")]}}, "NaN"),
        ({"t": {"$like": 5}}, "\\['\\$like'\\]: expected a str"),
        ({"t": {"$ilike": None}}, "expected a str"),
        ({"t": {"$like": "50\\"}}, "ends with the escape character"),
        ({"t": {"$ilike": "a\\\\\\"}}, "ends with the escape character"),
    ],
)
def test_malformed_new_operators_raise_invalid_argument(spec, message):
    with pytest.raises(InvalidArgumentError, match=message):
        compile_filter(spec)


def test_an_escaped_trailing_backslash_is_fine():
    assert rows_matching({"t": {"$like": "C:\\\\"}}, [{"t": "C:\\"}, {"t": "C:"}]) == [0]


# --- the same answers through a DB, from the memtable and from segments ----------------------

ENGINE_FILTERS = [
    {"author.name": "Ann"},
    {"author.name": {"$ne": "Ann"}},
    {"author.born": {"$between": [1950, 1980]}},
    {"title": {"$like": "%data%"}},
    {"title": {"$ilike": "THE %"}},
    {"$not": [{"author.name": "Ann"}, {"year": {"$gte": 2000}}]},
    {"$or": [{"author.address.city": "Oslo"}, {"title": {"$like": "_n%"}}]},
]


def _library(n):
    rng = np.random.default_rng(7)
    names = ["Ann", "Bob", "Cy", None]
    titles = ["The data book", "the Data Book", "On data", "An essay", "Untitled"]
    metadatas = []
    for i in range(n):
        meta = {"year": int(rng.integers(1990, 2020)), "title": titles[i % len(titles)]}
        if i % 7:
            meta["author"] = {"name": names[i % 4], "born": int(rng.integers(1940, 1990))}
            if i % 3 == 0:
                meta["author"]["address"] = {"city": "Oslo" if i % 2 else "Rome"}
        if i % 11 == 0:
            meta["author.name"] = "Ann"
        metadatas.append(meta)
    return metadatas


def test_engine_filters_agree_on_memtable_and_segments(tmp_path):
    n = 300
    metadatas = _library(n)
    vectors = np.random.default_rng(8).standard_normal((n, 4)).astype(np.float32)
    expected = {}
    for i, spec in enumerate(ENGINE_FILTERS):
        flt = compile_filter(spec)
        expected[i] = sorted(k for k, m in enumerate(metadatas) if flt.matches(m))
        assert 0 < len(expected[i]) < n, spec  # each filter is a real test

    def check(m):
        for i, spec in enumerate(ENGINE_FILTERS):
            assert sorted(r.id for r in m.scan(spec)) == expected[i], spec
            hits = m.search(vectors[0], k=n, filter=spec, exact=True)
            assert sorted(h.id for h in hits) == expected[i], spec

    with pdb.open(tmp_path / "db", shards=2) as db:
        m = db.create_membrane("books", dim=4)
        m.put_batch(range(n // 2), vectors[: n // 2], metadatas[: n // 2])
        db.freeze()  # half in segments, half in the memtable
        m.put_batch(range(n // 2, n), vectors[n // 2 :], metadatas[n // 2 :])
        for spec in ENGINE_FILTERS:  # build the columns of the dotted paths ...
            list(m.scan(spec))
        m.put_batch([n - 1], vectors[n - 1 :], metadatas[n - 1 :])  # ... then overwrite a row
        check(m)
        db.freeze()
        check(m)
        assert m.delete_where({"author.name": "Ann"}) == len(expected[0])
        assert m.count() == n - len(expected[0])
