"""JSON as PomaiDB stores it (metadata in WAL records and segments, the manifest body):
the strict decoders every reader uses.

Writers emit standard JSON only (`allow_nan=False`), so a reader refuses NaN, Infinity and
-Infinity as corruption. Decoders are built once: `json.loads` with any keyword argument
builds a new JSONDecoder per call, which was a third of the cost of decoding a search hit's
metadata.
"""

from __future__ import annotations

import json
from typing import Any


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (the writer never stores it)")


def strict_decoder(**hooks: Any) -> json.JSONDecoder:
    """A decoder refusing NaN and the infinities, with json.JSONDecoder's `hooks`."""
    return json.JSONDecoder(parse_constant=reject_constant, **hooks)


STRICT = strict_decoder()
