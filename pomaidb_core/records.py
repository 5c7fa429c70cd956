"""Logical records: the payloads the WAL frames, and validation of user input into them.

Payload layouts (little-endian). Record types are frozen on-disk values: never
renumber, retire by commenting out.

    PUT_BATCH (1):
        u32 membrane_id | u32 n | u32 dim
        u64 ids[n]
        f32 vectors[n * dim]             row-major
        u32 meta_len[n]                  0xFFFFFFFF = no metadata
        u8  meta_json[sum(meta_len)]     UTF-8 JSON objects, concatenated
    DELETE_BATCH (2):
        u32 membrane_id | u32 n
        u64 ids[n]
    (3 is never a record type: it is the WAL's GROUP frame type)
    PUT_PREPARED (4): a PUT_BATCH payload, one shard's part of a cross-shard batch; written
        before parts carried their batch's key (replayed as presumed committed)
    ABORT (5):
        u64 seq of this shard's PUT_PREPARED or PUT_PART record whose batch was aborted
    PUT_PART (6): one shard's part of a cross-shard batch (txn.py)
        u8  batch_key[16]                random, names the batch on every shard
        u16 n | u16 shards[n]            every shard holding a part, ascending
        then a PUT_BATCH payload
    COMMIT (7):
        u8  batch_key[16]                this shard applied its part of that batch

Every length is checked against the payload size before it is used, so a
damaged payload raises CorruptionError instead of allocating or reading wildly.
A payload the writer could not have produced (a repeated id in a put, a NaN or
infinite value, metadata nested past the JSON parser's depth) is CorruptionError
too: replaying it would only fail later, in the freeze that writes it out.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CorruptionError, InvalidArgumentError

PUT_BATCH = 1
DELETE_BATCH = 2
PUT_PREPARED = 4
ABORT = 5
PUT_PART = 6
COMMIT = 7
BATCH_KEY_BYTES = 16

NO_METADATA = 0xFFFFFFFF
MAX_ID = (1 << 64) - 1
_PUT_HEAD = struct.Struct("<III")
_DELETE_HEAD = struct.Struct("<II")
_ABORT = struct.Struct("<Q")
_U16 = struct.Struct("<H")


@dataclass(frozen=True)
class PutBatch:
    membrane_id: int
    ids: np.ndarray  # uint64 (n,), unique
    vectors: np.ndarray  # float32 (n, dim), C-contiguous
    metadatas: list[dict | None]
    meta_blobs: list[bytes | None]  # the JSON already encoded, reused for the WAL


@dataclass(frozen=True)
class DeleteBatch:
    membrane_id: int
    ids: np.ndarray  # uint64 (n,), unique


@dataclass(frozen=True)
class PreparedPut:
    """One shard's part of a cross-shard batch, applied only once the batch commits."""

    batch: PutBatch
    key: bytes | None = None  # None: a PUT_PREPARED record (no key, no shard list)
    shards: tuple[int, ...] = ()

    @property
    def membrane_id(self) -> int:
        return self.batch.membrane_id


@dataclass(frozen=True)
class Abort:
    prepared_seq: int


@dataclass(frozen=True)
class Commit:
    key: bytes


LogRecord = PutBatch | DeleteBatch | PreparedPut | Abort | Commit


# ---------------------------------------------------------------- validation


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
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ) or array.dtype == np.bool_:
        raise InvalidArgumentError(
            f"vectors must be real numbers (float32 preferred), got dtype {array.dtype}"
        )
    if single and array.shape != (dim,):
        raise InvalidArgumentError(f"vector must have shape ({dim},), got {array.shape}")
    if not single and (array.ndim != 2 or array.shape[1] != dim):
        raise InvalidArgumentError(f"vectors must have shape (n, {dim}), got {array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidArgumentError("vectors must be finite: found NaN or inf (or a float32 overflow)")
    return out


def check_metadata(metadata: Any, max_bytes: int) -> tuple[dict | None, bytes | None]:
    """(a private copy of the metadata, its JSON encoding); None stays None."""
    if metadata is None:
        return None, None
    if not isinstance(metadata, dict):
        raise InvalidArgumentError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    _check_json_value(metadata, depth=0)
    try:
        blob = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"metadata is not JSON-compatible: {exc}") from None
    encoded = blob.encode("utf-8")
    if len(encoded) > max_bytes:
        raise InvalidArgumentError(
            f"metadata is {len(encoded)} bytes of JSON; the limit is {max_bytes} "
            "(Options.max_metadata_bytes)"
        )
    return json.loads(encoded), encoded


_MAX_METADATA_DEPTH = 32


def _check_json_value(value: Any, depth: int) -> None:
    if depth > _MAX_METADATA_DEPTH:
        raise InvalidArgumentError(f"metadata nests deeper than {_MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError("metadata floats must be finite (no NaN or inf)")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"metadata keys must be strings, got {key!r}")
            _check_json_value(item, depth + 1)
        return
    raise InvalidArgumentError(
        f"metadata values must be JSON (str, int, float, bool, None, list, dict), "
        f"got {type(value).__name__}"
    )


def make_put_batch(
    membrane_id: int, ids: Any, vectors: Any, metadatas: Any, dim: int, max_meta_bytes: int
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
    id_array, vec_array, checked = _last_write_wins(id_array, vec_array, checked)
    return PutBatch(
        membrane_id, id_array, vec_array, [c[0] for c in checked], [c[1] for c in checked]
    )


def _last_write_wins(ids: np.ndarray, vectors: np.ndarray, checked: list) -> tuple:
    """Collapse repeated ids in one batch to their last occurrence, as sequential puts would."""
    if len(ids) < 2:
        return ids, vectors, checked
    reversed_ids = ids[::-1]
    _, first_in_reversed = np.unique(reversed_ids, return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors, checked
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], np.ascontiguousarray(vectors[keep]), [checked[i] for i in keep]


def unique_ids(ids: Any) -> np.ndarray:
    array = check_ids(ids)
    _, first = np.unique(array, return_index=True)
    return array[np.sort(first)]


# ---------------------------------------------------------------- codec


def encode_put(batch: PutBatch) -> bytes:
    n, dim = batch.vectors.shape
    lengths = np.fromiter(
        (NO_METADATA if b is None else len(b) for b in batch.meta_blobs), dtype="<u4", count=n
    )
    parts = [
        _PUT_HEAD.pack(batch.membrane_id, n, dim),
        batch.ids.astype("<u8", copy=False).tobytes(),
        batch.vectors.astype("<f4", copy=False).tobytes(),
        lengths.tobytes(),
        b"".join(b for b in batch.meta_blobs if b is not None),
    ]
    return b"".join(parts)


def encode_delete(batch: DeleteBatch) -> bytes:
    return _DELETE_HEAD.pack(batch.membrane_id, len(batch.ids)) + batch.ids.astype(
        "<u8", copy=False
    ).tobytes()


def encode_abort(prepared_seq: int) -> bytes:
    return _ABORT.pack(prepared_seq)


def encode_part(key: bytes, shards: Sequence[int], put_payload: bytes) -> bytes:
    """A PUT_PART payload: the batch's key and shards before the part's PUT_BATCH payload."""
    assert len(key) == BATCH_KEY_BYTES
    return b"".join([key, _U16.pack(len(shards)), np.asarray(shards, dtype="<u2").tobytes(),
                     put_payload])


def encode_commit(key: bytes) -> bytes:
    return key


def decode(kind: int, payload: bytes) -> LogRecord:
    if kind == PUT_BATCH:
        return _decode_put(payload)
    if kind == DELETE_BATCH:
        return _decode_delete(payload)
    if kind == PUT_PREPARED:
        return PreparedPut(_decode_put(payload))
    if kind == ABORT and len(payload) == _ABORT.size:
        return Abort(_ABORT.unpack(payload)[0])
    if kind == PUT_PART:
        return _decode_part(payload)
    if kind == COMMIT and len(payload) == BATCH_KEY_BYTES:
        return Commit(bytes(payload))
    raise CorruptionError(f"unknown WAL record type {kind} (or a malformed one)")


def _decode_part(payload: bytes) -> PreparedPut:
    head = BATCH_KEY_BYTES + _U16.size
    if len(payload) < head:
        raise CorruptionError("PUT_PART record shorter than its header")
    (n,) = _U16.unpack_from(payload, BATCH_KEY_BYTES)
    if head + 2 * n > len(payload) or n < 2:
        raise CorruptionError("PUT_PART record names fewer than two shards or overruns")
    shards = tuple(np.frombuffer(payload, dtype="<u2", count=n, offset=head).tolist())
    if list(shards) != sorted(set(shards)):
        raise CorruptionError("PUT_PART record's shards are not ascending and distinct")
    batch = _decode_put(payload[head + 2 * n :])
    return PreparedPut(batch, bytes(payload[:BATCH_KEY_BYTES]), shards)


def _decode_put(payload: bytes) -> PutBatch:
    if len(payload) < _PUT_HEAD.size:
        raise CorruptionError("PUT_BATCH record shorter than its header")
    membrane_id, n, dim = _PUT_HEAD.unpack_from(payload, 0)
    fixed = _PUT_HEAD.size + n * 8 + n * dim * 4 + n * 4
    if dim == 0 or fixed > len(payload):
        raise CorruptionError("PUT_BATCH record sizes exceed the record")
    offset = _PUT_HEAD.size
    ids = np.frombuffer(payload, dtype="<u8", count=n, offset=offset).astype(np.uint64)
    if n > 1 and len(np.unique(ids)) != n:
        raise CorruptionError("PUT_BATCH repeats an id (the writer never does)")
    offset += n * 8
    vectors = np.frombuffer(payload, dtype="<f4", count=n * dim, offset=offset)
    vectors = vectors.astype(np.float32).reshape(n, dim)
    if not np.isfinite(vectors).all():
        raise CorruptionError("PUT_BATCH holds a NaN or infinite vector (the writer never does)")
    offset += n * dim * 4
    lengths = np.frombuffer(payload, dtype="<u4", count=n, offset=offset)
    offset += n * 4
    present = lengths != NO_METADATA
    if int(lengths[present].sum(dtype=np.uint64)) != len(payload) - offset:
        raise CorruptionError("PUT_BATCH metadata lengths do not add up to the record")
    metadatas: list[dict | None] = []
    blobs: list[bytes | None] = []
    for length in lengths.tolist():
        if length == NO_METADATA:
            metadatas.append(None)
            blobs.append(None)
            continue
        blob = payload[offset : offset + length]
        offset += length
        try:
            value = json.loads(blob, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise CorruptionError("PUT_BATCH metadata is not valid JSON") from None
        if not isinstance(value, dict):
            raise CorruptionError("PUT_BATCH metadata is not a JSON object")
        metadatas.append(value)
        blobs.append(bytes(blob))
    return PutBatch(membrane_id, ids, vectors, metadatas, blobs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (the writer never stores it)")


def _decode_delete(payload: bytes) -> DeleteBatch:
    if len(payload) < _DELETE_HEAD.size:
        raise CorruptionError("DELETE_BATCH record shorter than its header")
    membrane_id, n = _DELETE_HEAD.unpack_from(payload, 0)
    if _DELETE_HEAD.size + n * 8 != len(payload):
        raise CorruptionError("DELETE_BATCH id count does not match the record size")
    ids = np.frombuffer(payload, dtype="<u8", count=n, offset=_DELETE_HEAD.size)
    return DeleteBatch(membrane_id, ids.astype(np.uint64))
