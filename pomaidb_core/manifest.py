"""The manifest: which segments are live, per membrane and shard, and what WAL they cover.

Each version is a whole file `<root>/manifest/MANIFEST-<n>`; the highest n is
live. A commit writes `MANIFEST-<n+1>.tmp`, fsyncs it, renames it to
`MANIFEST-<n+1>`, fsyncs the directory and only then unlinks `MANIFEST-<n>`:
a crash at any instant leaves either the old or the new version as the
highest complete file, never a mix, and a leftover `.tmp` is never read.

Byte layout of a version (integers little-endian):

    offset  width  field
    0       8      magic b"PMDBMAN\\0"
    8       4      u32 format version = 1
    12      4      u32 body length L (the file is exactly 24 + L bytes)
    16      4      u32 CRC32C of the body
    20      4      u32 CRC32C of bytes [0, 20)
    24      L      body: UTF-8 JSON object, keys sorted, no NaN/Infinity:
        "number":           n, equal to the n of the file name
        "shards":           shard count, fixed when the directory is created
        "next_membrane_id": id the next created membrane receives
        "next_segment_id":  every live segment id is below it
        "wal_covered":      [seq per shard]: every WAL record with seq <= it is in segments
        "membranes":        [{"id", "name", "dim", "metric", "index"}] ("index": IndexParams as an object)
        "segments":         [{"shard", "membrane", "live": [segment, ...] newest first}]
                            one entry per non-empty (shard, membrane) list; a segment is
                            {"id", "rows", "live_rows", "nbytes", "data_checksum", "has_sidecar"}

Nothing in the body is evaluated: it is parsed as JSON and every field is
checked (type, range, cross-references) before a Manifest is built from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import filenames, fs, stored_json
from .errors import CorruptionError, InvalidArgumentError, NotFoundError, StorageError
from .kernels import crc32c
from .options import METRICS, IndexParams

MAGIC = b"PMDBMAN\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIII")
_HEADER_CRC = struct.Struct("<I")
HEADER_BYTES = _HEADER.size + _HEADER_CRC.size
MAX_BODY_BYTES = 1 << 30
_U64_MAX = 2**64 - 1
_READ_ATTEMPTS = 5  # a reader racing a writer's commit re-lists this many times


@dataclass(frozen=True)
class SegmentMeta:
    """What the manifest records of one live segment file (and its sidecar)."""

    segment_id: int
    rows: int  # rows in the file, tombstones included
    live_rows: int  # rows that are puts, not delete markers
    nbytes: int  # segment + sidecar bytes on disk
    data_checksum: int  # the segment header's CRC32C; the sidecar is bound to it
    has_sidecar: bool


@dataclass(frozen=True)
class MembraneMeta:
    membrane_id: int
    name: str
    dim: int
    metric: str
    index: dict  # IndexParams.to_dict()


@dataclass(frozen=True)
class Manifest:
    number: int  # the n in MANIFEST-<n>
    shards: int
    next_membrane_id: int
    next_segment_id: int
    membranes: dict[str, MembraneMeta]
    wal_covered: tuple[int, ...]  # per shard: every WAL record with seq <= this is in segments
    segments: dict[tuple[int, int], tuple[SegmentMeta, ...]]  # (shard, membrane id), newest first


def empty_manifest(shards: int) -> Manifest:
    return Manifest(
        number=1,
        shards=shards,
        next_membrane_id=1,
        next_segment_id=1,
        membranes={},
        wal_covered=(0,) * shards,
        segments={},
    )


# ---------------------------------------------------------------------------- encoding


def _segment_to_json(meta: SegmentMeta) -> dict[str, Any]:
    return {
        "id": meta.segment_id,
        "rows": meta.rows,
        "live_rows": meta.live_rows,
        "nbytes": meta.nbytes,
        "data_checksum": meta.data_checksum,
        "has_sidecar": meta.has_sidecar,
    }


def _body(manifest: Manifest) -> dict[str, Any]:
    membranes = [
        {"id": m.membrane_id, "name": m.name, "dim": m.dim, "metric": m.metric, "index": m.index}
        for m in manifest.membranes.values()
    ]
    segments = [
        {"shard": shard, "membrane": mid, "live": [_segment_to_json(s) for s in live]}
        for (shard, mid), live in sorted(manifest.segments.items())
    ]
    return {
        "number": manifest.number,
        "shards": manifest.shards,
        "next_membrane_id": manifest.next_membrane_id,
        "next_segment_id": manifest.next_segment_id,
        "wal_covered": list(manifest.wal_covered),
        "membranes": sorted(membranes, key=lambda m: m["id"]),
        "segments": segments,
    }


def encode_manifest(manifest: Manifest) -> bytes:
    body = json.dumps(
        _body(manifest), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, len(body), crc32c(body))
    return head + _HEADER_CRC.pack(crc32c(head)) + body


# ---------------------------------------------------------------------------- decoding


class _Invalid(Exception):
    """A manifest that breaks a rule; CorruptionError when read, InvalidArgumentError in commit."""


def _int(value: Any, what: str, low: int = 0, high: int = _U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Invalid(f"{what} must be an int in [{low}, {high}], got {value!r}")
    return value


def _obj(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise _Invalid(f"{what} must be an object with exactly the keys {sorted(keys)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(f"{what} must be a list")
    return value


def _membrane(raw: Any) -> MembraneMeta:
    raw = _obj(raw, {"id", "name", "dim", "metric", "index"}, "membrane")
    name, metric, index = raw["name"], raw["metric"], raw["index"]
    if not isinstance(name, str) or not name:
        raise _Invalid("membrane name must be a non-empty string")
    if metric not in METRICS:
        raise _Invalid(f"membrane {name!r} has unknown metric {metric!r}")
    if not isinstance(index, dict):
        raise _Invalid(f"membrane {name!r} index must be an object")
    try:
        IndexParams.from_dict(index)
    except (InvalidArgumentError, TypeError) as exc:
        raise _Invalid(f"membrane {name!r} index is invalid: {exc}") from None
    return MembraneMeta(
        _int(raw["id"], "membrane id"), name, _int(raw["dim"], "dim", 1, 2**32 - 1), metric, index
    )


def _segment(raw: Any) -> SegmentMeta:
    keys = {"id", "rows", "live_rows", "nbytes", "data_checksum", "has_sidecar"}
    raw = _obj(raw, keys, "segment")
    if not isinstance(raw["has_sidecar"], bool):
        raise _Invalid("has_sidecar must be a bool")
    rows = _int(raw["rows"], "rows", 1)
    return SegmentMeta(
        _int(raw["id"], "segment id"),
        rows,
        _int(raw["live_rows"], "live_rows", 0, rows),
        _int(raw["nbytes"], "nbytes", 1),
        _int(raw["data_checksum"], "checksum"),
        raw["has_sidecar"],
    )


def _segment_lists(
    raw: Any, shards: int, membrane_ids: set[int]
) -> dict[tuple[int, int], tuple[SegmentMeta, ...]]:
    segments: dict[tuple[int, int], tuple[SegmentMeta, ...]] = {}
    for entry in _list(raw, "segments"):
        entry = _obj(entry, {"shard", "membrane", "live"}, "segment list")
        key = (_int(entry["shard"], "shard", 0, shards - 1), _int(entry["membrane"], "membrane"))
        if key[1] not in membrane_ids or key in segments:
            raise _Invalid(f"segment list {key} names an unknown membrane or is repeated")
        live = tuple(_segment(s) for s in _list(entry["live"], "live segments"))
        if not live:
            raise _Invalid(f"segment list {key} is empty")
        segments[key] = live
    return segments


def _from_body(raw: Any) -> Manifest:
    keys = {
        "number",
        "shards",
        "next_membrane_id",
        "next_segment_id",
        "wal_covered",
        "membranes",
        "segments",
    }
    raw = _obj(raw, keys, "manifest")
    shards = _int(raw["shards"], "shards", 1, 256)
    covered = _list(raw["wal_covered"], "wal_covered")
    membranes = [_membrane(m) for m in _list(raw["membranes"], "membranes")]
    ids = {m.membrane_id for m in membranes}
    manifest = Manifest(
        number=_int(raw["number"], "number", 1),
        shards=shards,
        next_membrane_id=_int(raw["next_membrane_id"], "next_membrane_id"),
        next_segment_id=_int(raw["next_segment_id"], "next_segment_id"),
        membranes={m.name: m for m in membranes},
        wal_covered=tuple(_int(seq, "wal_covered") for seq in covered),
        segments=_segment_lists(raw["segments"], shards, ids),
    )
    if len(manifest.membranes) != len(membranes):
        raise _Invalid("two membranes share a name")
    _check_consistent(manifest)
    return manifest


def _check_consistent(manifest: Manifest) -> None:
    """The cross-field rules every manifest obeys, read from disk or produced by an edit."""
    if len(manifest.wal_covered) != manifest.shards:
        raise _Invalid(
            f"wal_covered has {len(manifest.wal_covered)} entries, "
            f"expected one per shard ({manifest.shards})"
        )
    membrane_ids = [m.membrane_id for m in manifest.membranes.values()]
    if len(set(membrane_ids)) != len(membrane_ids):
        raise _Invalid("two membranes share an id")
    if any(mid >= manifest.next_membrane_id for mid in membrane_ids):
        raise _Invalid("a membrane id is not below next_membrane_id")
    if any(name != m.name for name, m in manifest.membranes.items()):
        raise _Invalid("a membrane is filed under another name")
    for (shard, mid), live in manifest.segments.items():
        if not 0 <= shard < manifest.shards or mid not in membrane_ids:
            raise _Invalid(f"segments listed for unknown shard/membrane ({shard}, {mid})")
        segment_ids = [s.segment_id for s in live]
        if len(set(segment_ids)) != len(segment_ids):
            raise _Invalid(f"segment list ({shard}, {mid}) repeats a segment")
        if any(sid >= manifest.next_segment_id for sid in segment_ids):
            raise _Invalid("a segment id is not below next_segment_id")


def decode_manifest(data: bytes, where: str) -> Manifest:
    """Parse and validate one manifest version; CorruptionError names `where`."""
    if len(data) < HEADER_BYTES:
        raise CorruptionError(f"manifest {where} is truncated ({len(data)} bytes)")
    magic, version, length, body_crc = _HEADER.unpack_from(data, 0)
    (head_crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
    if magic != MAGIC:
        raise CorruptionError(f"manifest {where} has a bad magic (not a PomaiDB manifest)")
    if crc32c(data[: _HEADER.size]) != head_crc:
        raise CorruptionError(f"manifest {where} header checksum mismatch")
    if version != FORMAT_VERSION:
        raise CorruptionError(f"manifest {where} has unsupported format version {version}")
    if length != len(data) - HEADER_BYTES:
        raise CorruptionError(
            f"manifest {where} is {len(data)} bytes, header says {HEADER_BYTES + length}"
        )
    body = data[HEADER_BYTES:]
    if crc32c(body) != body_crc:
        raise CorruptionError(f"manifest {where} body checksum mismatch")
    try:
        raw = _DECODER.decode(body.decode("utf-8"))
        return _from_body(raw)
    except (ValueError, RecursionError, _Invalid) as exc:
        raise CorruptionError(f"manifest {where} is malformed: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("repeated key in an object")
    return result


_DECODER = stored_json.strict_decoder(object_pairs_hook=_unique_keys)


def read_manifest(path: str) -> Manifest:
    """Read and strictly validate the manifest version at `path`."""
    if not fs.exists(path):
        raise CorruptionError(f"manifest {path} is missing")
    return decode_manifest(_read_bounded(path), path)


def _read_bounded(path: str) -> bytes:
    size = fs.file_size(path)
    if size > HEADER_BYTES + MAX_BODY_BYTES:
        raise CorruptionError(f"manifest {path} is implausibly large ({size} bytes)")
    return fs.read_file(path)


# ---------------------------------------------------------------------------- the store


class ManifestStore:
    """The live manifest of one database directory and the only code that changes it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._dir = filenames.manifest_dir(root)
        self._lock = threading.Lock()
        self._current: Manifest | None = None

    @property
    def current(self) -> Manifest:
        assert self._current is not None, "load_or_create() first"
        return self._current

    def load_or_create(self, shards: int | None, create: bool,
                       default_shards: int = 4) -> Manifest:
        """Load the highest-numbered version; with `create`, also start and tidy the directory.

        shards=None accepts whatever count the directory was created with (and
        `default_shards` for a new one); an explicit count must match it.

        create=True is the single writer: it creates `MANIFEST-1` in an empty
        directory, then removes `.tmp` leftovers and superseded versions.
        create=False is a read-only opener and changes nothing on disk (the
        writer may be mid-commit in another process); NotFoundError if there
        is no manifest. A damaged live version raises CorruptionError: older
        versions are superseded state, never a fallback.
        """
        with self._lock:
            if create:
                fs.makedirs(self._dir)
            manifest = self._load_latest()
            if manifest is None:
                if not create:
                    raise NotFoundError(f"no PomaiDB database at {self.root} (no manifest)")
                manifest = empty_manifest(shards if shards is not None else default_shards)
                self._write(manifest)
            if shards is not None and manifest.shards != shards:
                raise InvalidArgumentError(
                    f"{self.root} was created with {manifest.shards} shards; "
                    f"open it with shards={manifest.shards}"
                )
            if create:
                self._remove_stale(manifest.number)
            self._current = manifest
            return manifest

    def is_latest(self) -> bool:
        """Is the loaded version still the newest on disk? (A reader's consistency check.)

        True when none could be loaded: the newest version itself is damaged, and
        there is nothing newer to retry with.
        """
        if self._current is None:
            return True
        versions = self._versions()
        return bool(versions) and versions[-1] == self.current.number

    def _versions(self) -> list[int]:
        numbers = (filenames.parse_manifest_name(name) for name in fs.listdir(self._dir))
        return sorted(n for n in numbers if n is not None)

    def _load_latest(self) -> Manifest | None:
        for _ in range(_READ_ATTEMPTS):
            versions = self._versions()
            if not versions:
                return None
            path = filenames.manifest_path(self.root, versions[-1])
            try:
                data = _read_bounded(path)
            except StorageError:
                if fs.exists(path):
                    raise
                continue  # a concurrent commit removed it after a newer one went live
            manifest = decode_manifest(data, path)
            if manifest.number != versions[-1]:
                raise CorruptionError(f"manifest {path} holds version {manifest.number}")
            return manifest
        raise StorageError(f"the manifests in {self._dir} kept changing while being read")

    def _remove_stale(self, live: int) -> None:
        for name in fs.listdir(self._dir):
            number = filenames.parse_manifest_name(name)
            if name.endswith(filenames.TMP_SUFFIX) or (number is not None and number < live):
                fs.unlink(os.path.join(self._dir, name))

    def _write(self, manifest: Manifest) -> None:
        path = filenames.manifest_path(self.root, manifest.number)
        tmp = filenames.tmp_path(path)
        fs.write_file(tmp, encode_manifest(manifest))
        fs.rename(tmp, path)
        fs.fsync_dir(self._dir)

    def commit(self, edit: Callable[[Manifest], Manifest]) -> Manifest:
        """Apply `edit` to the current manifest and make the result live, durably.

        Thread-safe. `edit` must return a new Manifest (dataclasses.replace);
        its `number` is assigned here. Empty segment lists are dropped. A
        result that breaks a manifest rule raises InvalidArgumentError; any
        error, StorageError included, leaves `current` the old version.
        """
        with self._lock:
            old = self.current
            new = _normalized(edit(old), old)
            self._write(new)
            # Until the old version is gone, `current` stays old: if this
            # raises, the next commit rewrites the same number over the new
            # file, so disk and memory agree again.
            fs.unlink(filenames.manifest_path(self.root, old.number))
            self._current = new
            return new

    def verify_current(self) -> None:
        """Re-read the live version from disk with every check, never racing a commit's swap."""
        with self._lock:
            read_manifest(filenames.manifest_path(self.root, self.current.number))

    def live_files(self) -> set[str]:
        """Every segment and sidecar path the current manifest references."""
        paths = set()
        for (shard, mid), live in self.current.segments.items():
            for meta in live:
                paths.add(filenames.segment_path(self.root, shard, mid, meta.segment_id))
                if meta.has_sidecar:
                    paths.add(filenames.sidecar_path(self.root, shard, mid, meta.segment_id))
        return paths


def _normalized(new: Manifest, old: Manifest) -> Manifest:
    if not isinstance(new, Manifest) or new.shards != old.shards:
        raise InvalidArgumentError("a manifest edit must return a Manifest with the same shards")
    new = dataclasses.replace(
        new,
        number=old.number + 1,
        wal_covered=tuple(new.wal_covered),
        segments={key: tuple(live) for key, live in new.segments.items() if live},
    )
    try:
        _check_consistent(new)
        return decode_manifest(encode_manifest(new), "edit")
    except (_Invalid, CorruptionError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"a manifest edit broke a rule: {exc}") from None
