"""stored_json.decode_objects against decoding each part alone (the oracle)."""

from __future__ import annotations

import json

import pytest

from pomaidb_core import stored_json


def one_by_one(parts):
    """None unless every part decodes alone to a JSON object (or is empty); unlike the
    decoder's per-part fallback it refuses whitespace around the object, as writers store none."""
    out = []
    for part in parts:
        if not part:
            out.append(None)
            continue
        try:
            text = bytes(part).decode("utf-8")
            value = stored_json.STRICT.decode(text)
        except ValueError:
            return None
        if not isinstance(value, dict) or text != text.strip():
            return None
        out.append(value)
    return out


@pytest.mark.parametrize("parts", [
    [],
    [b""],
    [b'{"a":1}', b"", b'{"b":[1,{"c":null}],"t":"\xc3\xbc"}', memoryview(b'{"x":2.5}')],
    [b'{"a":1},{"b":2}', b""],  # two objects in one part (and the count still matches)
    [b'{"a":1},{"b":2}'],
    [b"null", b'{"a":1}'],  # a stored null is not an object
    [b'{"a":1}', b"[1,2]"],
    [b'{"a":NaN}'],
    [b'{"a":1', b'}'],  # two halves that join into one object
    [b'{"a":"}', b'{","b":1}', b'{"c":1},{"d":2}'],  # would join into three objects
    [b'{"a":1} ', b'{"a":1}'],
    [b'{"a":"\xff"}'],
    [b" ", b'{"a":1}'],
])
def test_decode_objects_agrees_with_decoding_each_part_alone(parts):
    assert stored_json.decode_objects(parts) == one_by_one(parts)


def test_decode_objects_round_trips_what_writers_store():
    values = [{"i": i, "s": "x" * i, "l": [i, None]} if i % 3 else None for i in range(300)]
    parts = [b"" if v is None else json.dumps(v, separators=(",", ":")).encode() for v in values]
    assert stored_json.decode_objects(parts) == values
