"""The manifest store: versioned commits, crash-safe switching, strict reading of damaged files."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import struct
import subprocess
import sys
import threading

import pytest

import pomaidb_core
from pomaidb_core import filenames, fs
from pomaidb_core.errors import CorruptionError, InvalidArgumentError, NotFoundError, StorageError
from pomaidb_core.kernels import crc32c
from pomaidb_core.manifest import (
    Manifest,
    ManifestStore,
    MembraneMeta,
    SegmentMeta,
    encode_manifest,
    read_manifest,
)


def manifest_names(root):
    return sorted(os.listdir(filenames.manifest_dir(str(root))))


def add_membrane(name, dim=4, metric="cosine"):
    def edit(m: Manifest) -> Manifest:
        meta = MembraneMeta(m.next_membrane_id, name, dim, metric, {"wsbr_block_size": 32})
        return dataclasses.replace(
            m, membranes={**m.membranes, name: meta}, next_membrane_id=m.next_membrane_id + 1
        )

    return edit


def add_segment(shard, membrane_id, rows=10, covered=None):
    def edit(m: Manifest) -> Manifest:
        meta = SegmentMeta(m.next_segment_id, rows, rows - 1, 4096, 0xDEADBEEF, True)
        key = (shard, membrane_id)
        wal = list(m.wal_covered)
        wal[shard] = covered if covered is not None else wal[shard] + rows
        return dataclasses.replace(
            m,
            segments={**m.segments, key: (meta,) + m.segments.get(key, ())},
            next_segment_id=m.next_segment_id + 1,
            wal_covered=tuple(wal),
        )

    return edit


def populated(root, shards=3):
    store = ManifestStore(str(root))
    store.load_or_create(shards, create=True)
    store.commit(add_membrane("docs"))
    store.commit(add_membrane("ünïcode ✓", dim=1, metric="l2"))
    store.commit(add_segment(0, 1))
    store.commit(add_segment(2, 2))
    store.commit(add_segment(0, 1, rows=3))
    return store


def test_constructor_does_no_io(tmp_path):
    ManifestStore(str(tmp_path / "db"))
    assert not (tmp_path / "db").exists()


def test_create_writes_manifest_one_with_an_empty_database(tmp_path):
    manifest = ManifestStore(str(tmp_path)).load_or_create(4, create=True)
    assert manifest.number == 1 and manifest.shards == 4
    assert manifest.membranes == {} and manifest.segments == {}
    assert manifest.wal_covered == (0, 0, 0, 0)
    assert manifest_names(tmp_path) == ["MANIFEST-1"]
    assert read_manifest(filenames.manifest_path(str(tmp_path), 1)) == manifest


def test_commits_round_trip_through_a_reopen_and_keep_one_version(tmp_path):
    store = populated(tmp_path)
    current = store.current
    assert current.number == 6
    assert [s.rows for s in current.segments[(0, 1)]] == [3, 10]  # newest first
    assert current.wal_covered == (13, 0, 10)
    assert manifest_names(tmp_path) == ["MANIFEST-6"]
    assert ManifestStore(str(tmp_path)).load_or_create(3, create=True) == current
    assert read_manifest(filenames.manifest_path(str(tmp_path), 6)) == current


def test_empty_segment_lists_are_dropped_by_commit(tmp_path):
    store = populated(tmp_path)
    manifest = store.commit(lambda m: dataclasses.replace(m, segments={**m.segments, (2, 2): ()}))
    assert (2, 2) not in manifest.segments
    assert ManifestStore(str(tmp_path)).load_or_create(3, create=True) == manifest


def test_live_files_name_every_segment_and_sidecar(tmp_path):
    store = populated(tmp_path)
    root = str(tmp_path)
    ids = {key: [s.segment_id for s in live] for key, live in store.current.segments.items()}
    expected = set()
    for (shard, mid), segment_ids in ids.items():
        for sid in segment_ids:
            expected |= {
                filenames.segment_path(root, shard, mid, sid),
                filenames.sidecar_path(root, shard, mid, sid),
            }
    assert store.live_files() == expected and len(expected) == 6


def test_reopen_with_another_shard_count_says_how_it_was_created(tmp_path):
    populated(tmp_path, shards=3)
    with pytest.raises(InvalidArgumentError, match="created with 3 shards"):
        ManifestStore(str(tmp_path)).load_or_create(4, create=True)


def test_read_only_open_of_an_empty_directory_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        ManifestStore(str(tmp_path)).load_or_create(2, create=False)
    assert os.listdir(tmp_path) == []


def test_interrupted_commit_tmp_is_ignored_and_removed_on_open(tmp_path):
    store = populated(tmp_path)
    directory = filenames.manifest_dir(str(tmp_path))
    half_written = encode_manifest(dataclasses.replace(store.current, number=7))[:40]
    with open(os.path.join(directory, "MANIFEST-7.tmp"), "wb") as handle:
        handle.write(half_written)
    with open(os.path.join(directory, "stray.tmp"), "wb") as handle:
        handle.write(b"junk")
    reader = ManifestStore(str(tmp_path)).load_or_create(3, create=False)
    assert reader == store.current
    assert "MANIFEST-7.tmp" in manifest_names(tmp_path)  # a reader changes nothing
    assert ManifestStore(str(tmp_path)).load_or_create(3, create=True) == store.current
    assert manifest_names(tmp_path) == ["MANIFEST-6"]


def test_crash_between_rename_and_unlink_opens_the_newer_version(tmp_path):
    store = populated(tmp_path)
    old = store.current
    directory = filenames.manifest_dir(str(tmp_path))
    newer = store.commit(add_membrane("later"))
    with open(os.path.join(directory, "MANIFEST-6"), "wb") as handle:
        handle.write(encode_manifest(old))
    assert ManifestStore(str(tmp_path)).load_or_create(3, create=True) == newer
    assert manifest_names(tmp_path) == ["MANIFEST-7"]


@pytest.mark.parametrize(
    "failing_op,survives",
    [("create", False), ("write", False), ("fsync", False), ("rename", False), ("unlink", True)],
)
def test_a_commit_that_fails_on_disk_keeps_the_old_state_in_memory(tmp_path, failing_op, survives):
    store = populated(tmp_path)
    old = store.current

    def hook(op, path):
        if op == failing_op and "manifest" in path:
            raise OSError(5, "Input/output error")

    fs.set_fault_hook(hook)
    try:
        with pytest.raises(StorageError):
            store.commit(add_membrane("later"))
    finally:
        fs.set_fault_hook(None)
    assert store.current == old
    reopened = ManifestStore(str(tmp_path)).load_or_create(3, create=True)
    retried = store.commit(add_membrane("later"))  # rewrites the same number, disk agrees again
    assert reopened == (retried if survives else old)
    assert retried.number == 7 and manifest_names(tmp_path) == ["MANIFEST-7"]
    assert ManifestStore(str(tmp_path)).load_or_create(3, create=True) == retried


def test_a_reader_racing_commits_always_sees_a_whole_version(tmp_path):
    store = populated(tmp_path)
    done = threading.Event()

    def writer():
        for _ in range(150):
            store.commit(bump)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    numbers = []
    while not done.is_set():
        seen = ManifestStore(str(tmp_path)).load_or_create(3, create=False)
        assert seen.next_segment_id == seen.number - 6 + 4
        numbers.append(seen.number)
    thread.join()
    assert numbers == sorted(numbers)


def test_an_edit_that_raises_changes_nothing(tmp_path):
    store = populated(tmp_path)
    old = store.current

    def edit(m):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.commit(edit)
    assert store.current == old and manifest_names(tmp_path) == ["MANIFEST-6"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: dataclasses.replace(m, wal_covered=(1, 2)),
        lambda m: dataclasses.replace(m, shards=4, wal_covered=(0, 0, 0, 0)),
        lambda m: dataclasses.replace(m, next_segment_id=1),
        lambda m: dataclasses.replace(m, next_membrane_id=1),
        lambda m: dataclasses.replace(m, segments={**m.segments, (0, 99): m.segments[(0, 1)]}),
        lambda m: dataclasses.replace(m, segments={**m.segments, (5, 1): m.segments[(0, 1)]}),
        lambda m: dataclasses.replace(
            m, segments={(0, 1): m.segments[(0, 1)] + m.segments[(0, 1)][:1]}
        ),
        lambda m: dataclasses.replace(m, membranes={"x": m.membranes["docs"]}),
        lambda m: dataclasses.replace(
            m,
            membranes={
                **m.membranes,
                "docs": dataclasses.replace(m.membranes["docs"], metric="hamming"),
            },
        ),
        lambda m: dataclasses.replace(
            m,
            membranes={
                **m.membranes,
                "docs": dataclasses.replace(m.membranes["docs"], index={"wsbr_block_size": 0}),
            },
        ),
        lambda m: dataclasses.replace(m, wal_covered=(-1, 0, 0)),
        lambda m: "not a manifest",
    ],
)
def test_an_edit_that_breaks_a_rule_is_rejected_and_changes_nothing(tmp_path, edit):
    store = populated(tmp_path)
    old = store.current
    with pytest.raises(InvalidArgumentError):
        store.commit(edit)
    assert store.current == old and manifest_names(tmp_path) == ["MANIFEST-6"]


def test_concurrent_commits_are_serialized(tmp_path):
    store = ManifestStore(str(tmp_path))
    store.load_or_create(1, create=True)
    threads = [
        threading.Thread(target=lambda: [store.commit(bump) for _ in range(10)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.current.next_segment_id == 41 and store.current.number == 41
    assert manifest_names(tmp_path) == ["MANIFEST-41"]


# ---------------------------------------------------------------------------- damaged files


def test_every_flipped_byte_is_corruption(tmp_path):
    store = populated(tmp_path)
    path = filenames.manifest_path(str(tmp_path), store.current.number)
    with open(path, "rb") as handle:
        good = handle.read()
    for offset in range(len(good)):
        for mask in (0x01, 0xFF):
            damaged = bytearray(good)
            damaged[offset] ^= mask
            with open(path, "wb") as handle:
                handle.write(damaged)
            with pytest.raises(CorruptionError):
                read_manifest(path)
    with pytest.raises(CorruptionError):
        ManifestStore(str(tmp_path)).load_or_create(3, create=True)


def test_truncation_at_every_length_and_extension_are_corruption(tmp_path):
    store = populated(tmp_path)
    path = filenames.manifest_path(str(tmp_path), store.current.number)
    with open(path, "rb") as handle:
        good = handle.read()
    for data in [good[:length] for length in range(len(good))] + [good + b" "]:
        with open(path, "wb") as handle:
            handle.write(data)
        with pytest.raises(CorruptionError):
            read_manifest(path)


def test_a_damaged_live_version_is_not_replaced_by_an_older_one(tmp_path):
    store = populated(tmp_path)
    directory = filenames.manifest_dir(str(tmp_path))
    with open(os.path.join(directory, "MANIFEST-5"), "wb") as handle:
        handle.write(encode_manifest(dataclasses.replace(store.current, number=5)))
    with open(os.path.join(directory, "MANIFEST-6"), "r+b") as handle:
        handle.seek(30)
        handle.write(b"!")
    with pytest.raises(CorruptionError):
        ManifestStore(str(tmp_path)).load_or_create(3, create=True)
    assert manifest_names(tmp_path) == ["MANIFEST-5", "MANIFEST-6"]


def sealed(body: bytes) -> bytes:
    """A manifest file with valid checksums around an arbitrary body (a hostile writer)."""
    head = struct.pack("<8sIII", b"PMDBMAN\0", 1, len(body), crc32c(body))
    return head + struct.pack("<I", crc32c(head)) + body


def valid_body(tmp_path):
    store = populated(tmp_path)
    path = filenames.manifest_path(str(tmp_path), store.current.number)
    with open(path, "rb") as handle:
        return path, json.loads(handle.read()[24:])


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b.update(number=True),
        lambda b: b.update(number=0),
        lambda b: b.update(number=5),  # not the number in the file name
        lambda b: b.update(shards=0),
        lambda b: b.update(shards="3"),
        lambda b: b.update(extra=1),
        lambda b: b.pop("segments"),
        lambda b: b.update(wal_covered=[0, 0]),
        lambda b: b.update(wal_covered=[0, 0, 2**64]),
        lambda b: b.update(next_segment_id=2),
        lambda b: b["membranes"][0].update(name=""),
        lambda b: b["membranes"][0].update(dim=0),
        lambda b: b["membranes"][0].update(index=[]),
        lambda b: b["membranes"].append(dict(b["membranes"][0], id=0)),  # repeated name
        lambda b: b["segments"][0].update(shard=3),
        lambda b: b["segments"][0].update(membrane=77),
        lambda b: b["segments"][0].update(live=[]),
        lambda b: b["segments"].append(b["segments"][0]),
        lambda b: b["segments"][0]["live"][0].update(live_rows=11),
        lambda b: b["segments"][0]["live"][0].update(rows=1.5),
        lambda b: b["segments"][0]["live"][0].update(has_sidecar=1),
        lambda b: b.update(membranes={}),
    ],
)
def test_structurally_invalid_bodies_with_valid_checksums_are_corruption(tmp_path, damage):
    path, body = valid_body(tmp_path)
    damage(body)
    with open(path, "wb") as handle:
        handle.write(sealed(json.dumps(body).encode()))
    with pytest.raises(CorruptionError):
        ManifestStore(str(tmp_path)).load_or_create(3, create=True)


@pytest.mark.parametrize(
    "text",
    [
        b'{"number": NaN}',
        b'{"number": 6, "number": 6}',
        b"[]",
        b"\xff\xfe",
        b"[" * 100000,
        b'{"number": 1' + b"0" * 5000 + b"}",
    ],
)
def test_non_json_bodies_with_valid_checksums_are_corruption(tmp_path, text):
    path, _ = valid_body(tmp_path)
    with open(path, "wb") as handle:
        handle.write(sealed(text))
    with pytest.raises(CorruptionError):
        read_manifest(path)


_CHILD = """
import dataclasses, sys
from pomaidb_core.manifest import ManifestStore
store = ManifestStore(sys.argv[1])
store.load_or_create(2, create=True)
bump = lambda m: dataclasses.replace(m, next_segment_id=m.next_segment_id + 1,
                                     wal_covered=(m.next_segment_id, m.next_segment_id))
while True:
    print(store.commit(bump).next_segment_id, flush=True)
"""


@pytest.mark.parametrize("seed", range(6))
def test_a_process_killed_at_a_random_step_reopens_to_the_last_or_next_commit(tmp_path, seed):
    package_root = os.path.dirname(os.path.dirname(pomaidb_core.__file__))
    env = dict(
        os.environ,
        POMAIDB_TEST_KILL_ODDS=str(4 + seed * 3),
        PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    )
    root = str(tmp_path / "db")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, root],
        check=False,
        env=env,
        cwd=tmp_path,  # `-c` puts the cwd first on sys.path: not the source tree
        capture_output=True,
        timeout=120,
        text=True,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    acknowledged = [int(line) for line in result.stdout.split()]
    last = acknowledged[-1] if acknowledged else 1
    if not os.path.isdir(filenames.manifest_dir(root)) or not any(
        n.startswith("MANIFEST-") and not n.endswith(".tmp") for n in manifest_names(root)
    ):
        assert not acknowledged  # killed while creating the very first version
        return
    manifest = ManifestStore(root).load_or_create(2, create=True)
    assert manifest.next_segment_id in (last, last + 1)
    assert manifest.wal_covered == (manifest.next_segment_id - 1,) * 2 or manifest.number == 1


def bump(manifest):
    return dataclasses.replace(manifest, next_segment_id=manifest.next_segment_id + 1)
