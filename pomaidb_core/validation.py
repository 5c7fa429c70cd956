"""User input checked into records: ids, vectors, metadata and texts, all or nothing.

Every bad value raises InvalidArgumentError before anything is written, and what
passes is a private copy in the form a reopen decodes (records.py encodes it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .records import MAX_ID, PutBatch


def check_id(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"ids must be integers in [0, 2**64), got {type(value).__name__} {value!r}"
        )
    as_int = int(value)
    if as_int < 0 or as_int > MAX_ID:
        raise InvalidArgumentError(f"id {as_int} is outside [0, 2**64)")
    return as_int


def check_ids(values: Any) -> np.ndarray:
    """A uint64 array of the given ids (validated one by one unless already integer-typed)."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise InvalidArgumentError(f"ids must be a 1-d sequence, got shape {values.shape}")
        if values.dtype == np.uint64:
            return np.ascontiguousarray(values)
        if np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
            if values.size and int(values.min()) < 0:
                raise InvalidArgumentError(f"id {int(values.min())} is outside [0, 2**64)")
            return values.astype(np.uint64)
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range)):
        try:
            values = list(values)
        except TypeError:
            raise InvalidArgumentError("ids must be a sequence of integers") from None
    return np.fromiter((check_id(v) for v in values), dtype=np.uint64, count=len(values))


def check_vectors(values: Any, dim: int, *, single: bool = False) -> np.ndarray:
    """A C-contiguous float32 (n, dim) array; rejects wrong shapes, dtypes and non-finite values."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"vector is not a numeric array: {exc}") from None
    if array.dtype.kind not in "fiu":  # floats and integers; not bool, complex or objects
        raise InvalidArgumentError(
            f"vectors must be real numbers (float32 preferred), got dtype {array.dtype}"
        )
    if single and array.shape != (dim,):
        raise InvalidArgumentError(f"vector must have shape ({dim},), got {array.shape}")
    if not single and (array.ndim != 2 or array.shape[1] != dim):
        raise InvalidArgumentError(f"vectors must have shape (n, {dim}), got {array.shape}")
    if array.dtype == np.float32:  # nothing to convert (errstate alone cost 8 us a search)
        out = np.ascontiguousarray(array)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidArgumentError("vectors must be finite: found NaN or inf (or a float32 overflow)")
    return out


def check_metadata(metadata: Any, max_bytes: int) -> tuple[dict | None, bytes | None]:
    """(a private copy of the metadata, its JSON encoding); None stays None.

    The copy is what a reopen decodes from that JSON (tuples become lists, subclasses of
    str/int/float their base values), made in the same pass that validates.
    """
    if metadata is None:
        return None, None
    if not isinstance(metadata, dict):
        raise InvalidArgumentError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    copy = _json_copy(metadata, depth=0)
    try:
        encoded = _JSON.encode(copy).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError("metadata holds a string that is not valid Unicode "
                                   "(a lone surrogate?)") from None
    if len(encoded) > max_bytes:
        raise InvalidArgumentError(
            f"metadata is {len(encoded)} bytes of JSON; the limit is {max_bytes} "
            "(Options.max_metadata_bytes)"
        )
    return copy, encoded


_MAX_METADATA_DEPTH = 32
# One encoder for every record (json.dumps with options builds one per call); _json_copy
# leaves it only plain JSON values, so it cannot fail
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_copy(value: Any, depth: int) -> Any:
    if depth > _MAX_METADATA_DEPTH:
        raise InvalidArgumentError(f"metadata nests deeper than {_MAX_METADATA_DEPTH} levels")
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float or isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError("metadata floats must be finite (no NaN or inf)")
        return float.__float__(value)
    if isinstance(value, dict):
        return {_json_key(key): _json_copy(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, depth + 1) for item in value]
    if isinstance(value, str):  # subclasses (str enums ...): the value JSON holds
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    raise InvalidArgumentError(
        f"metadata values must be JSON (str, int, float, bool, None, list, dict), "
        f"got {type(value).__name__}"
    )


def _json_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(f"metadata keys must be strings, got {key!r}")
    return str.__str__(key)


def check_text(text: Any) -> str | None:
    """A record's text: a str (any language; lone surrogates cannot be stored) or None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgumentError(f"text must be a str or None, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError("text is not valid Unicode (a lone surrogate?)") from None
    return text


def check_texts(texts: Any, n: int) -> list[str | None] | None:
    """The batch's texts (None when there are none at all), one per id."""
    if texts is None:
        return None
    if isinstance(texts, (str, bytes)):
        raise InvalidArgumentError("texts must be a sequence of str (one per id), not a str")
    try:
        values = [check_text(t) for t in texts]
    except TypeError:
        raise InvalidArgumentError("texts must be a sequence of str or None") from None
    if len(values) != n:
        raise InvalidArgumentError(f"got {n} ids but {len(values)} texts; they must match")
    return values if any(v is not None for v in values) else None


def make_put_batch(
    membrane_id: int, ids: Any, vectors: Any, metadatas: Any, dim: int, max_meta_bytes: int,
    texts: Any = None,
) -> PutBatch:
    """Validate a whole batch before anything is written: all or nothing."""
    id_array = check_ids(ids)
    vec_array = check_vectors(vectors, dim)
    if len(id_array) != len(vec_array):
        raise InvalidArgumentError(
            f"got {len(id_array)} ids but {len(vec_array)} vectors; they must match"
        )
    if metadatas is None:
        metas: list[Any] = [None] * len(id_array)
    else:
        metas = list(metadatas)
        if len(metas) != len(id_array):
            raise InvalidArgumentError(
                f"got {len(id_array)} ids but {len(metas)} metadatas; they must match"
            )
    checked = [check_metadata(m, max_meta_bytes) for m in metas]
    batch = PutBatch(membrane_id, id_array, vec_array, [c[0] for c in checked],
                     [c[1] for c in checked], check_texts(texts, len(id_array)))
    return _last_write_wins(batch)


def _last_write_wins(batch: PutBatch) -> PutBatch:
    """Collapse repeated ids in one batch to their last occurrence, as sequential puts would."""
    ids = batch.ids
    if len(ids) < 2:
        return batch
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return batch
    return batch.subset(np.sort(len(ids) - 1 - first_in_reversed))


def unique_ids(ids: Any) -> np.ndarray:
    array = check_ids(ids)
    _, first = np.unique(array, return_index=True)
    return array[np.sort(first)]
