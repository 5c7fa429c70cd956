"""The POMAIDB marker: the file that makes a directory a PomaiDB database (SQLite's header, as a file).

`open()` writes into a directory only if it is absent, empty, or already a PomaiDB database, so a
mistyped path never scatters LOCK, manifest/ and shard_<i>/ among someone else's files. The
marker says which: `<root>/POMAIDB`, written once when a database is created (temporary name,
fsync, rename, directory fsync), never changed afterwards. Byte layout (integers little-endian),
16 bytes exactly:

    offset  width  field
    0       8      magic b"POMAIDB\\0"
    8       4      u32 database format version (frozen values: 1 = this layout of LOCK,
                   manifest/ and shard_<i>/; a later layout gets the next number, never a reused one)
    12      4      u32 CRC32C of bytes [0, 12)

A directory without the marker is still a database when `manifest/` holds a manifest version: it
was created before the marker existed, and gets its marker on its first writable open (read-only
opens never write). `LOCK` and `POMAIDB.tmp` alone are what a creation interrupted before the
marker's rename leaves behind, so they count as empty.
"""

from __future__ import annotations

import struct

from . import filenames, fs
from .errors import CorruptionError, InvalidArgumentError, NotFoundError
from .kernels import crc32c
from .manifest import ManifestStore

MAGIC = b"POMAIDB\0"
FORMAT_VERSION = 1
_BODY = struct.Struct("<8sI")
_CRC = struct.Struct("<I")
MARKER_BYTES = _BODY.size + _CRC.size
_LEFTOVERS = frozenset({filenames.LOCK, filenames.tmp_path(filenames.MARKER)})


def encode_marker() -> bytes:
    body = _BODY.pack(MAGIC, FORMAT_VERSION)
    return body + _CRC.pack(crc32c(body))


def check_directory(root: str, read_only: bool) -> bool:
    """May `root` be opened as a database? Reads only; True when its marker is already there.

    False means: a writer may create the database here (absent or empty), or it is a database
    from before the marker; either way the writer calls `write_marker` once it holds the LOCK.
    Raises CorruptionError for a damaged marker, InvalidArgumentError for a directory that is
    not a PomaiDB database or one in a newer format, NotFoundError for a reader with nothing to read.
    """
    names = set(fs.listdir(root))
    if filenames.MARKER in names:
        _check_marker(filenames.marker_path(root))
        return True
    if names <= _LEFTOVERS:
        if read_only:
            raise NotFoundError(f"no PomaiDB database at {root}")
        return False
    if filenames.MANIFEST_DIR in names and _holds_a_manifest(root):
        return False
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    raise InvalidArgumentError(
        f"{root} is not a PomaiDB database: it holds other files ({shown}) and no "
        f"{filenames.MARKER} file; open a new or empty directory instead"
    )


def write_marker(root: str) -> None:
    """Make `root` a PomaiDB database, durably. The caller holds its LOCK."""
    path = filenames.marker_path(root)
    tmp = filenames.tmp_path(path)
    fs.write_file(tmp, encode_marker())
    fs.rename(tmp, path)
    fs.fsync_dir(root)


def _holds_a_manifest(root: str) -> bool:
    """A database from before the marker: its latest manifest version must read back whole
    (CorruptionError if not: a damaged database is reported, never taken for a stranger's)."""
    directory = filenames.manifest_dir(root)
    if not fs.is_dir(directory):
        return False
    if not any(filenames.parse_manifest_name(name) is not None for name in fs.listdir(directory)):
        return False
    ManifestStore(root).load_or_create(None, create=False)
    return True


def _check_marker(path: str) -> None:
    size = fs.file_size(path)
    data = fs.read_file(path) if size == MARKER_BYTES else b""
    if len(data) != MARKER_BYTES:
        raise CorruptionError(f"{path} is {size} bytes, a PomaiDB marker is {MARKER_BYTES}")
    magic, version = _BODY.unpack_from(data)
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if magic != MAGIC or crc32c(data[: _BODY.size]) != crc:
        raise CorruptionError(f"{path} is damaged (bad magic or checksum)")
    if version > FORMAT_VERSION:
        raise InvalidArgumentError(
            f"{path} says database format {version}, written by a newer PomaiDB; this one reads "
            f"format {FORMAT_VERSION}: upgrade pomaidb to open it"
        )
    if version < 1:
        raise CorruptionError(f"{path} has format version {version}, which is never written")
