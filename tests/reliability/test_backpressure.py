"""Backpressure holds writes back, never reads: a shard never sleeps on background work.

Segment builds are made to hang (on an event) while automatic freezes pile up
generations; reads must keep answering, writes must wait in order and complete
once the builds do, and close() must not hang either.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import builder

DIM = 4


def vector_of(key: int) -> np.ndarray:
    return np.full(DIM, float(key), dtype=np.float32)


@pytest.fixture
def stalled_builds(monkeypatch):
    release = threading.Event()
    started = threading.Semaphore(0)
    real = builder.build_segment

    def slow(*args, **kwargs):
        started.release()
        assert release.wait(60), "the test never released the build"
        return real(*args, **kwargs)

    monkeypatch.setattr(builder, "build_segment", slow)
    yield release, started
    release.set()


def test_reads_answer_while_writes_wait_behind_unsaved_generations(tmp_path, stalled_builds):
    release, started = stalled_builds
    with pdb.open(tmp_path / "db", shards=1, memtable_limit=1, auto_compact=False) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        for key in range(3):  # each put freezes its own generation; builds hang
            m.put(key, vector_of(key))
        assert started.acquire(timeout=10)
        parked_done = threading.Event()
        writer = threading.Thread(target=lambda: (m.put(99, vector_of(99)), parked_done.set()))
        writer.start()
        # The shard is backlogged: the write waits, but reads do not.
        assert not parked_done.wait(0.5)
        for key in range(3):
            assert m.get(key) is not None
        assert m.count() == 3
        assert m.search(vector_of(2), k=1)[0].id == 2
        assert m.get(99) is None  # not acknowledged, so not visible
        release.set()
        assert parked_done.wait(30), "the held-back write never completed"
        writer.join()
        assert m.get(99) is not None and m.count() == 4


def test_close_fails_held_back_writes_instead_of_hanging(tmp_path, stalled_builds):
    release, started = stalled_builds
    db = pdb.open(tmp_path / "db", shards=1, memtable_limit=1, auto_compact=False)
    m = db.create_membrane("m", dim=DIM, metric="l2")
    for key in range(3):
        m.put(key, vector_of(key))
    assert started.acquire(timeout=10)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            m.put(99, vector_of(99))
        except pdb.PomaiError as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    closer = threading.Thread(target=db.close)
    closer.start()
    release.set()  # the build in progress finishes; the queued ones are dropped
    closer.join(30)
    writer.join(30)
    assert not closer.is_alive() and not writer.is_alive()
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert all(m.get(key) is not None for key in range(3))
        assert (m.get(99) is not None) == (not errors)


def test_reads_run_beside_a_shard_thread_that_is_stuck_in_a_write(tmp_path):
    """Sync reads run on the caller's thread: a shard blocked in its log write still answers them."""
    from pomaidb_core import fs

    stuck, release = threading.Event(), threading.Event()

    def hook(op: str, path: str) -> None:
        if op == "write" and path.endswith(".wal") and not release.is_set():
            stuck.set()
            assert release.wait(30)

    with pdb.open(tmp_path / "db", shards=1) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put_batch(range(50), np.stack([vector_of(k) for k in range(50)]))
        db.freeze()
        m.put(60, vector_of(60))
        fs.set_fault_hook(hook)
        try:
            writer = threading.Thread(target=m.put, args=(99, vector_of(99)))
            writer.start()
            assert stuck.wait(10)
            assert m.get(7) is not None and m.get(60) is not None and m.exists(3)
            assert m.search(vector_of(7), k=1)[0].id == 7
            assert m.count() == 51 and len(list(m.scan())) == 51
            assert m.get(99) is None  # its group is not durable yet, so not visible
        finally:
            release.set()
            fs.set_fault_hook(None)
        writer.join(10)
        assert m.get(99) is not None
