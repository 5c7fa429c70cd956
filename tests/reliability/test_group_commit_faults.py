"""A failing WAL inside a multi-command group commit, judged per caller.

Several writer threads keep one shard's mailbox full, so every drain is a group
of many commands, and a tiny WAL file limit puts rotations inside those groups.
Then one WAL step (write, fsync, file create, directory fsync) fails, the n-th
of its kind for a sweep of n. The disk behaves as Linux's does after a failed
fsync: the dirty pages of that file are gone (the file falls back to what its
last good fsync made durable).

Per caller, before and after reopening: an acknowledged put is present with its
vector, an acknowledged delete is absent; a rejected put is absent and a
rejected delete hid nothing (a rejected call changes nothing).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from faults import FailingDisk

import pomaidb_core as pdb
from pomaidb_core import fs
from pomaidb_core.errors import StorageError

DIM = 4
THREADS = 6
OPS_PER_THREAD = 60


def vector_of(key: int) -> np.ndarray:
    return np.array([key, key % 7, 1.0, -key], dtype=np.float32)


class LosingDisk(FailingDisk):
    """A FailingDisk whose failed fsync also drops the file's unsynced bytes."""

    def __init__(self, op: str, nth: int) -> None:
        super().__init__(lambda o, p: o == op and (p.endswith(".wal") or p.endswith("/wal")),
                         nth=nth)
        self.synced: dict[str, int] = {}

    def observe(self, op: str, *paths: str) -> None:
        if op == "fsync" and paths[0].endswith(".wal"):
            self.synced[paths[0]] = os.path.getsize(paths[0])

    def __call__(self, op: str, path: str) -> None:
        try:
            super().__call__(op, path)
        except OSError:
            if op == "fsync" and path.endswith(".wal"):
                os.truncate(path, self.synced.get(path, 0))
            raise

    def __enter__(self) -> LosingDisk:
        fs.set_observer(self.observe)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        fs.set_observer(None)
        super().__exit__(*exc)


@dataclass
class Outcomes:
    acked_puts: set[int] = field(default_factory=set)
    rejected_puts: set[int] = field(default_factory=set)
    acked_deletes: set[int] = field(default_factory=set)
    rejected_deletes: set[int] = field(default_factory=set)
    unexpected: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, key: int, ok: bool) -> None:
        with self.lock:
            getattr(self, f"{'acked' if ok else 'rejected'}_{kind}s").add(key)


def _writer(m: pdb.Membrane, worker: int, out: Outcomes) -> None:
    mine: list[int] = []
    for i in range(OPS_PER_THREAD):
        key = worker * 10_000 + i
        kind = "delete" if mine and i % 5 == 4 else "put"
        try:
            if kind == "put":
                m.put(key, vector_of(key))
            else:
                key = mine.pop(0)
                assert m.delete(key) is True
        except StorageError:
            out.record(kind, key, ok=False)
            continue
        except BaseException as exc:
            out.unexpected.append(exc)
            return
        out.record(kind, key, ok=True)
        if kind == "put":
            mine.append(key)


def _check(m: pdb.Membrane, out: Outcomes, when: str) -> None:
    live = out.acked_puts - out.acked_deletes
    for key in sorted(live | out.rejected_puts | out.acked_deletes):
        record = m.get(key)
        if key in out.rejected_deletes or key in live:
            assert record is not None, f"{when}: acknowledged put {key} is missing"
            assert np.array_equal(record.vector, vector_of(key)), f"{when}: {key} has a wrong vector"
        else:
            assert record is None, f"{when}: id {key} was rejected or deleted but is visible"
    assert m.count() == len(live), f"{when}: count {m.count()} != {len(live)} acknowledged live"


@pytest.mark.parametrize("sync", ["batch", "always"])
@pytest.mark.parametrize(("op", "nth"), [("write", 1), ("write", 3), ("write", 8), ("fsync", 1),
                                         ("fsync", 3), ("fsync", 8), ("create", 1), ("create", 3)])
def test_a_failed_wal_step_fails_every_write_of_its_group_and_nothing_else(tmp_path, sync, op, nth):
    path = tmp_path / "db"
    options = dict(shards=1, sync=sync, wal_file_limit_bytes=4096, auto_freeze=False)
    out = Outcomes()
    with pdb.open(path, **options) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        with LosingDisk(op, nth) as disk:
            threads = [threading.Thread(target=_writer, args=(m, w, out)) for w in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert not out.unexpected, out.unexpected
        assert disk.fired, "the sweep never reached its failing step"
        assert out.rejected_puts or out.rejected_deletes
        _check(m, out, "before reopen")
    with pdb.open(path, **options) as db:
        _check(db.membrane("m"), out, "after reopen")
        db.verify()


def test_every_caller_of_a_failed_group_gets_its_own_exception(tmp_path):
    errors: list[BaseException] = []
    lock = threading.Lock()
    with pdb.open(tmp_path / "db", shards=1, sync="batch", auto_freeze=False) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        gate = threading.Barrier(THREADS)

        def put(key: int) -> None:
            gate.wait()
            try:
                m.put(key, vector_of(key))
            except StorageError as exc:
                with lock:
                    errors.append(exc)

        with FailingDisk(lambda o, p: o == "fsync" and p.endswith(".wal"), repeat=True):
            threads = [threading.Thread(target=put, args=(k,)) for k in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert len(errors) == THREADS
    assert len({id(e) for e in errors}) == THREADS


def test_a_write_rejected_by_a_failed_fsync_does_not_come_back_on_reopen(tmp_path):
    """The failed fsync is not retried as if it had worked (by a later rotation or close)."""
    with pdb.open(tmp_path / "db", shards=1, sync="batch", auto_freeze=False) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put(1, vector_of(1))
        with FailingDisk(lambda o, p: o == "fsync" and p.endswith(".wal")):
            with pytest.raises(StorageError):
                m.put(2, vector_of(2))
        with pytest.raises(StorageError):
            m.put(3, vector_of(3))
        assert m.get(2) is None and m.get(3) is None
    with pdb.open(tmp_path / "db", shards=1) as db:
        m = db.membrane("m")
        assert m.get(1) is not None and m.get(2) is None and m.get(3) is None
