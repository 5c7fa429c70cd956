"""open() writes only into a directory that is absent, empty, or already a PomaiDB database."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import filenames, fs
from pomaidb_core.kernels import crc32c


def snapshot(root):
    """Every entry under root with its bytes (files) and mode, to prove nothing was written."""
    state = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            content = None if os.path.isdir(path) else open(path, "rb").read()
            state[os.path.relpath(path, root)] = (info.st_mode, content)
    return state


def populated(path, shards=2):
    """A closed database holding one membrane with records 0..9, some of them in a segment."""
    with pdb.open(path, shards=shards) as db:
        m = db.create_membrane("m", dim=2)
        m.put_batch(range(5), np.ones((5, 2)), [{"i": i} for i in range(5)])
        db.freeze()
        m.put_batch(range(5, 10), np.ones((5, 2)), [{"i": i} for i in range(5, 10)])
    return path


def assert_holds_the_records(path, **options):
    with pdb.open(path, **options) as db:
        m = db.membrane("m")
        assert m.count() == 10
        assert [m.get(i).metadata for i in range(10)] == [{"i": i} for i in range(10)]


def refused(path, error, match=None):
    """open() raises `error` for path, writable and read-only, and leaves the directory as it was."""
    before = snapshot(path)
    for read_only in (False, True):
        with pytest.raises(error, match=match):
            pdb.open(path, read_only=read_only)
        assert snapshot(path) == before


# ---------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    "files",
    [
        {"notes.txt": b"my notes"},
        {"photo.jpg": b"\xff\xd8\xff", "sub/deeper.txt": b"x"},
        {"MANIFEST": b"include README.md\n"},  # a Python sdist's, at the root
        {"CURRENT": b"MANIFEST-000001\n", "MANIFEST-000001": b"\x00" * 32, "LOCK": b"", "LOG": b""},
        {"LOCK": b"", "shard_0/wal/junk": b"x"},  # our names alone do not make it ours
        {"manifest": b"a file, not our directory"},
        {"manifest/notes.txt": b"a directory of that name without a manifest version"},
        {".hidden": b""},
    ],
    ids=["notes", "photos", "sdist-manifest", "leveldb", "lock-and-shard", "manifest-file",
         "manifest-dir", "dotfile"],
)
def test_a_directory_of_other_files_is_refused_and_left_byte_for_byte_unchanged(tmp_path, files):
    root = tmp_path / "stranger"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    refused(root, pdb.InvalidArgumentError, match="is not a PomaiDB database")


def test_a_foreign_file_in_place_of_the_manifest_is_corruption_and_changes_nothing(tmp_path):
    root = tmp_path / "db"
    (root / "manifest").mkdir(parents=True)
    (root / "manifest" / "MANIFEST-1").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    refused(root, pdb.CorruptionError, match="not a PomaiDB manifest")


def test_a_damaged_manifest_of_a_database_without_marker_is_corruption_and_changes_nothing(tmp_path):
    root = populated(tmp_path / "db")
    os.unlink(root / "POMAIDB")
    (manifest,) = (root / "manifest").iterdir()
    data = bytearray(manifest.read_bytes())
    data[-2] ^= 0x04
    manifest.write_bytes(bytes(data))
    refused(root, pdb.CorruptionError, match="checksum")


def marker_bytes(version):
    """A marker built from the byte layout documented in marker.py, with any version."""
    body = struct.pack("<8sI", b"POMAIDB\0", version)
    return body + struct.pack("<I", crc32c(body))


@pytest.mark.parametrize("version", [2, 7, 2**32 - 1])
def test_a_marker_from_a_newer_format_is_refused_with_a_clear_message(tmp_path, version):
    root = populated(tmp_path / "db")
    (root / "POMAIDB").write_bytes(marker_bytes(version))
    refused(root, pdb.InvalidArgumentError, match=f"format {version}, written by a newer PomaiDB")


def damaged_markers():
    good = marker_bytes(1)
    yield pytest.param(b"", id="empty")
    for length in range(1, len(good)):
        yield pytest.param(good[:length], id=f"truncated-{length}")
    yield pytest.param(good + b"\0", id="extended")
    for offset in range(len(good)):
        for bit in (0x01, 0x80):
            flipped = bytearray(good)
            flipped[offset] ^= bit
            yield pytest.param(bytes(flipped), id=f"flip-{offset}-{bit:#x}")
    yield pytest.param(marker_bytes(0), id="version-0")


@pytest.mark.parametrize("data", list(damaged_markers()))
def test_a_damaged_marker_is_corruption_and_changes_nothing(tmp_path, data):
    root = populated(tmp_path / "db")
    (root / "POMAIDB").write_bytes(data)
    refused(root, pdb.CorruptionError)


def test_a_read_only_open_of_an_empty_or_missing_directory_is_not_found_and_writes_nothing(tmp_path):
    with pytest.raises(pdb.NotFoundError):
        pdb.open(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(pdb.NotFoundError):
        pdb.open(tmp_path / "empty", read_only=True)
    assert os.listdir(tmp_path / "empty") == []


# ---------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("where", ["missing/nested/db", "empty"])
def test_a_missing_or_empty_directory_becomes_a_database_with_a_marker(tmp_path, where):
    root = tmp_path / where
    if where == "empty":
        root.mkdir()
    populated(root)
    assert (root / "POMAIDB").read_bytes() == marker_bytes(1)
    assert_holds_the_records(root)
    assert_holds_the_records(root, read_only=True)


def test_a_database_from_before_the_marker_opens_and_gets_its_marker_on_a_writable_open(tmp_path):
    root = populated(tmp_path / "db")
    os.unlink(root / "POMAIDB")
    before = snapshot(root)
    assert_holds_the_records(root, read_only=True)
    assert snapshot(root) == before  # a reader never writes, not even the marker
    assert_holds_the_records(root)
    assert (root / "POMAIDB").read_bytes() == marker_bytes(1)
    assert_holds_the_records(root)


@pytest.mark.parametrize("leftovers", [["LOCK"], ["LOCK", "POMAIDB.tmp"], ["POMAIDB.tmp"]])
def test_what_a_creation_interrupted_before_the_marker_leaves_counts_as_empty(tmp_path, leftovers):
    root = tmp_path / "db"
    root.mkdir()
    for name in leftovers:
        (root / name).write_bytes(b"POMA" if name.endswith(".tmp") else b"")
    populated(root)
    assert_holds_the_records(root)
    assert "POMAIDB" in os.listdir(root) and "POMAIDB.tmp" not in os.listdir(root)


def test_a_creation_that_fails_at_any_step_leaves_a_directory_that_opens(tmp_path):
    """A first open failing at any file step (disk full) never leaves a directory that open()
    refuses as a stranger's: before the marker there is at most LOCK and the marker's temporary."""
    steps = []
    fs.set_fault_hook(lambda op, path: steps.append((op, path)))
    try:
        pdb.open(tmp_path / "counted", shards=2).close()
    finally:
        fs.set_fault_hook(None)
    assert ("rename", str(tmp_path / "counted" / "POMAIDB")) in steps
    for step in range(len(steps)):
        root = tmp_path / f"db{step}"
        calls = []

        def fail_at_step(op, path, step=step, calls=calls):
            calls.append(op)
            if len(calls) == step + 1:
                raise OSError(28, "No space left on device")

        fs.set_fault_hook(fail_at_step)
        try:
            with pytest.raises(pdb.StorageError):
                pdb.open(root, shards=2)
        finally:
            fs.set_fault_hook(None)
        populated(root)
        assert_holds_the_records(root)
        assert (root / "POMAIDB").read_bytes() == marker_bytes(1)


def test_the_marker_is_written_through_the_file_seam_durably(tmp_path):
    ops = []
    fs.set_observer(lambda op, *paths: ops.append((op, *[os.path.basename(p) for p in paths])))
    try:
        pdb.open(tmp_path / "db").close()
    finally:
        fs.set_observer(None)
    marker_ops = [op for op in ops if any("POMAIDB" in part for part in op[1:])]
    assert marker_ops == [("create", "POMAIDB.tmp"), ("write", "POMAIDB.tmp"),
                          ("fsync", "POMAIDB.tmp"), ("rename", "POMAIDB.tmp", "POMAIDB")]
    rename = ops.index(("rename", "POMAIDB.tmp", "POMAIDB"))
    assert ops[rename + 1] == ("fsync_dir", "db")  # the rename is durable before anything else
    assert filenames.marker_path("/x") == "/x/POMAIDB"
