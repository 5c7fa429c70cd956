"""One writer per directory, enforced by an OS lock; read-only openers see consistent snapshots.

* a second writer, in this process or another, gets LockedError at once;
* the lock is the operating system's: a writer killed with SIGKILL frees it;
* open(path, read_only=True) in another process, while the writer freezes and
  compacts, always opens, and always shows a per-shard prefix of the writer's
  history no shorter than what was acknowledged before it opened;
* a read-only database refuses every write and changes nothing on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from workload import DIM, MEMBRANE, History, run

import pomaidb_core as pdb
from pomaidb_core import builder, routing, wal

CHILD = os.path.join(os.path.dirname(__file__), "child.py")
SHARDS = 2


def _spawn(path, role: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, CHILD, str(path), role], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_a_second_process_is_refused_while_a_writer_holds_the_directory(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path) as db:
        db.create_membrane(MEMBRANE, dim=DIM)
        out, _ = _spawn(path, "writer").communicate(timeout=120)
    assert out.split() == ["locked", "LockedError"]


def test_a_writer_in_another_process_locks_us_out_at_once_until_it_is_killed(tmp_path):
    path = tmp_path / "db"
    child = _spawn(path, "writer")
    try:
        assert child.stdout.readline() == "opened\n"
        started = time.monotonic()
        with pytest.raises(pdb.LockedError, match="already open for writing"):
            pdb.open(path)
        assert time.monotonic() - started < 2, "the second writer must fail at once, not wait"
        with pdb.open(path, read_only=True) as reader:  # readers are welcome meanwhile
            assert reader.membranes() == []
    finally:
        child.kill()
        child.wait(timeout=60)
    with pdb.open(path) as db:  # the OS released the lock with the process
        db.create_membrane(MEMBRANE, dim=DIM)


def test_a_second_db_object_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path):
        other = pdb.DB(path)
        with pytest.raises(pdb.LockedError):
            other.open()
    with pdb.open(path):  # a refused open holds nothing
        pass


def test_read_only_processes_see_consistent_snapshots_while_a_writer_works(tmp_path):
    path = tmp_path / "db"
    history = History(SHARDS)
    db = pdb.open(path, shards=SHARDS, sync="batch", memtable_limit=80, compaction_trigger=2)
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            run(db, m, history, random.Random(5), steps=10**9, stop=stop.is_set)
        except BaseException as exc:
            failures.append(exc)

    try:
        m = db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
        history.membrane = True
        writer = threading.Thread(target=write)
        writer.start()
        snapshots = _take_snapshots(path, history, count=25)
    finally:
        stop.set()
        writer.join()
        db.close()
    assert not failures, failures
    for floor, line in snapshots:
        assert line.startswith("state "), line
        actual = [{} for _ in range(SHARDS)]
        for key, version in json.loads(line[len("state "):]).items():
            actual[routing.shard_of(int(key), SHARDS)][int(key)] = version
        for shard in range(SHARDS):
            assert history.prefix_length(shard, actual[shard], floor.acked[shard]) is not None, (
                f"a read-only snapshot of shard {shard} is not a prefix of the writer's history "
                f"at least {floor.acked[shard]} writes long")


def _take_snapshots(path, history: History, count: int) -> list:
    reader = _spawn(path, "reader")
    snapshots = []
    try:
        for _ in range(count):
            assert reader.stdout.readline() == "want\n"
            floor = history.floor()  # noted before the reader opens: it must see all of this
            reader.stdin.write("go\n")
            reader.stdin.flush()
            snapshots.append((floor, reader.stdout.readline().strip()))
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    return snapshots


@pytest.mark.parametrize("module,step,commit", [
    (wal, "list_wal_files", "freeze"),  # the WAL is reset between the manifest and the listing
    (wal, "read_wal", "freeze"),  # a listed WAL file is deleted before it is read
    (builder, "open_segment", "compact"),  # a listed segment is compacted away before it opens
], ids=["wal-reset-before-listing", "wal-file-deleted-before-reading",
        "segment-compacted-before-opening"])
def test_a_reader_overtaken_by_a_commit_at_each_step_of_its_open_still_sees_everything(
        tmp_path, monkeypatch, module, step, commit):
    """Deterministic interleavings: the reader's shard stops at `step` while the writer commits."""
    path = tmp_path / "db"
    writer = pdb.open(path, shards=1, auto_freeze=False, auto_compact=False)
    try:
        m = writer.create_membrane(MEMBRANE, dim=DIM)
        for start in (0, 10, 20):
            m.put_batch(range(start, start + 10), np.ones((10, DIM)))
            if start < 20:
                writer.freeze()
        writers = {t.ident for t in threading.enumerate()}
        stopped, resume = threading.Event(), threading.Event()
        original = getattr(module, step)

        def held(*args, **kwargs):
            if threading.get_ident() not in writers and not stopped.is_set():
                stopped.set()
                resume.wait(30)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, step, held)
        seen: list = []
        reader = threading.Thread(target=lambda: seen.append(_count_read_only(path)))
        reader.start()
        assert stopped.wait(30)
        getattr(writer, commit)()
        resume.set()
        reader.join(30)
    finally:
        writer.close()
    assert seen == [30]


def _count_read_only(path) -> int | str:
    try:
        with pdb.open(path, read_only=True) as db:
            return db.membrane(MEMBRANE).count()
    except pdb.PomaiError as exc:
        return f"{type(exc).__name__}: {exc}"


def _tree_digest(root) -> dict[str, str]:
    digest = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as handle:
                digest[os.path.relpath(full, root)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


@pytest.mark.parametrize("write", [
    lambda db, m: m.put(1, np.ones(DIM)),
    lambda db, m: m.put_batch([1, 2], np.ones((2, DIM))),
    lambda db, m: m.delete(1),
    lambda db, m: m.delete_batch([1]),
    lambda db, m: m.delete_where({"g": 1}),
    lambda db, m: db.create_membrane("x", dim=2),
    lambda db, m: db.get_or_create_membrane("x", dim=2),
    lambda db, m: db.drop_membrane(MEMBRANE),
    lambda db, m: db.freeze(),
    lambda db, m: db.compact(),
], ids=["put", "put_batch", "delete", "delete_batch", "delete_where", "create_membrane",
        "get_or_create_membrane", "drop_membrane", "freeze", "compact"])
def test_read_only_refuses_every_write_and_changes_nothing_on_disk(tmp_path, write):
    path = tmp_path / "db"
    with pdb.open(path, shards=SHARDS) as db:
        m = db.create_membrane(MEMBRANE, dim=DIM)
        m.put_batch(range(50), np.random.default_rng(0).standard_normal((50, DIM)))
        db.freeze()
        m.put_batch(range(50, 60), np.ones((10, DIM)), [{"g": 1}] * 10)
    before = _tree_digest(path)
    with pdb.open(path, read_only=True) as db:
        with pytest.raises(pdb.ReadOnlyError):
            write(db, db.membrane(MEMBRANE))
        assert db.membrane(MEMBRANE).count() == 60
    assert _tree_digest(path) == before
