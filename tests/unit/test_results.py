"""results.make_hit against the dataclass constructor it stands in for."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from pomaidb_core.results import Hit, make_hit


@pytest.mark.parametrize("fields", [(1, 0.5, None, None), (2**64 - 1, -3.0, {"a": [1]}, "text")])
def test_make_hit_is_the_hit_the_constructor_makes(fields):
    made, built = make_hit(*fields), Hit(*fields)
    assert type(made) is Hit and made == built and repr(made) == repr(built)
    assert dataclasses.asdict(made) == dataclasses.asdict(built)
    assert dataclasses.replace(made, score=1.0) == dataclasses.replace(built, score=1.0)
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.score = 2.0  # type: ignore[misc]
