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
