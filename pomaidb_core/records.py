"""Logical records: the payloads the WAL frames, and validation of user input into them.

Payload layouts (little-endian). Record types are frozen on-disk values: never
renumber, retire by commenting out.

    PUT_BATCH (1):
        u32 membrane_id | u32 n | u32 dim
        u64 ids[n]
        f32 vectors[n * dim]             row-major
        u32 meta_len[n]                  0xFFFFFFFF = no metadata
        u8  meta_json[sum(meta_len)]     UTF-8 JSON objects, concatenated
        optional text trailer, present only when some record of the batch has a text
        (so a batch without texts is byte-identical to the original layout, and
        records written before texts existed replay unchanged):
        u32 text_len[n]                  0xFFFFFFFF = no text
        u8  text_utf8[sum(text_len)]     UTF-8 strings, concatenated
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
    texts: list[str | None] | None = None  # None: no record of the batch has a text

    def text_list(self) -> list[str | None]:
        return self.texts if self.texts is not None else [None] * len(self.ids)

    def subset(self, rows: np.ndarray) -> PutBatch:
        """The batch restricted to `rows` (an integer array of positions), in that order."""
        positions = rows.tolist()
        texts = None if self.texts is None else [self.texts[i] for i in positions]
        return PutBatch(self.membrane_id, self.ids[rows], self.vectors[rows],
                        [self.metadatas[i] for i in positions],
                        [self.meta_blobs[i] for i in positions], texts)


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


# ---------------------------------------------------------------- codec


def encode_put(batch: PutBatch) -> bytes:
    n, dim = batch.vectors.shape
    lengths = _lengths(batch.meta_blobs)
    parts = [
        _PUT_HEAD.pack(batch.membrane_id, n, dim),
        batch.ids.astype("<u8", copy=False).tobytes(),
        batch.vectors.astype("<f4", copy=False).tobytes(),
        lengths.tobytes(),
        b"".join(b for b in batch.meta_blobs if b is not None),
    ]
    if batch.texts is not None:
        encoded = [None if t is None else t.encode("utf-8") for t in batch.texts]
        parts.append(_lengths(encoded).tobytes())
        parts.append(b"".join(b for b in encoded if b is not None))
    return b"".join(parts)


def _lengths(blobs: list[bytes | None]) -> np.ndarray:
    return np.fromiter((NO_METADATA if b is None else len(b) for b in blobs), dtype="<u4",
                       count=len(blobs))


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
    fixed = _PUT_HEAD.size + n * 8 + n * dim * 4
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
    blobs, offset = _decode_blobs(payload, offset, n, "metadata")
    metadatas = [None if blob is None else _decode_json(blob) for blob in blobs]
    texts = None
    if offset < len(payload):
        encoded, offset = _decode_blobs(payload, offset, n, "text")
        try:
            texts = [None if b is None else b.decode("utf-8") for b in encoded]
        except UnicodeDecodeError:
            raise CorruptionError("PUT_BATCH text is not valid UTF-8") from None
    if offset != len(payload):
        raise CorruptionError("PUT_BATCH lengths do not add up to the record")
    return PutBatch(membrane_id, ids, vectors, metadatas, blobs, texts)


def _decode_blobs(payload: bytes, offset: int, n: int, what: str
                  ) -> tuple[list[bytes | None], int]:
    """n length-prefixed blobs (u32 lengths, then the bytes) and the offset after them."""
    if offset + 4 * n > len(payload):
        raise CorruptionError(f"PUT_BATCH {what} lengths exceed the record")
    lengths = np.frombuffer(payload, dtype="<u4", count=n, offset=offset)
    offset += n * 4
    present = lengths != NO_METADATA
    if int(lengths[present].sum(dtype=np.uint64)) > len(payload) - offset:
        raise CorruptionError(f"PUT_BATCH {what} lengths exceed the record")
    blobs: list[bytes | None] = []
    for length in lengths.tolist():
        if length == NO_METADATA:
            blobs.append(None)
            continue
        blobs.append(bytes(payload[offset : offset + length]))
        offset += length
    return blobs, offset


def _decode_json(blob: bytes) -> dict:
    try:
        value = json.loads(blob, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise CorruptionError("PUT_BATCH metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise CorruptionError("PUT_BATCH metadata is not a JSON object")
    return value


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
