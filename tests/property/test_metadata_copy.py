"""A record's metadata as stored equals what a reopen decodes from its JSON, whatever the input.

Oracle: json.loads of the encoding validation.check_metadata returns (the WAL and segments hold that).
"""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pomaidb_core as pdb
from pomaidb_core import validation


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([Color.RED, Level.HIGH]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
    st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=20)


@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_the_stored_copy_is_what_its_json_decodes_to(metadata):
    copy, blob = validation.check_metadata(metadata, 1 << 20)
    decoded = json.loads(blob)
    assert copy == decoded
    assert json.dumps(copy, sort_keys=True) == json.dumps(decoded, sort_keys=True)  # types too
    assert copy is not metadata


def test_metadata_that_cannot_be_stored_is_refused_with_a_pomai_error():
    circular: dict = {}
    circular["self"] = circular
    for bad in ({"s": "\ud800"}, {"\ud800": 1}, circular, {"x": float("nan")}, {"x": {1, 2}},
                {1: "a"}):
        with pytest.raises(pdb.InvalidArgumentError):
            validation.check_metadata(bad, 1 << 20)
