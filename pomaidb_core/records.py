"""Logical records and their codec: the payloads the WAL frames (user input is checked
into records by validation.py).

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

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import stored_json
from .errors import CorruptionError

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
        value = stored_json.STRICT.decode(blob.decode("utf-8"))
    except (ValueError, RecursionError):
        raise CorruptionError("PUT_BATCH metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise CorruptionError("PUT_BATCH metadata is not a JSON object")
    return value


def _decode_delete(payload: bytes) -> DeleteBatch:
    if len(payload) < _DELETE_HEAD.size:
        raise CorruptionError("DELETE_BATCH record shorter than its header")
    membrane_id, n = _DELETE_HEAD.unpack_from(payload, 0)
    if _DELETE_HEAD.size + n * 8 != len(payload):
        raise CorruptionError("DELETE_BATCH id count does not match the record size")
    ids = np.frombuffer(payload, dtype="<u8", count=n, offset=_DELETE_HEAD.size)
    return DeleteBatch(membrane_id, ids.astype(np.uint64))
