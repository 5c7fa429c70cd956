"""close() interrupts a long background job instead of waiting for it (worker.py)."""

from __future__ import annotations

import threading
import time

import numpy as np

import pomaidb_core as pdb
from pomaidb_core import wsbr_build

DIM = 8


def test_close_interrupts_a_running_compaction_and_loses_nothing(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4096, DIM)).astype(np.float32)
    db = pdb.open(tmp_path / "db", shards=1, auto_compact=False)
    m = db.create_membrane("m", dim=DIM, metric="l2")
    for start in (0, 2048):
        m.put_batch(range(start, start + 2048), vectors[start : start + 2048])
        db.freeze()

    started, calls = threading.Event(), []
    real = wsbr_build.cluster_means

    def slow(*args, **kwargs):  # each k-means step of the merge's build takes 0.2 s
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(wsbr_build, "cluster_means", slow)
    outcome: list[BaseException | None] = []

    def compact() -> None:
        try:
            db.compact()
            outcome.append(None)
        except pdb.PomaiError as exc:
            outcome.append(exc)

    compactor = threading.Thread(target=compact)
    compactor.start()
    assert started.wait(30)
    began = time.monotonic()
    db.close()
    took = time.monotonic() - began
    compactor.join(10)
    steps = len(calls)
    monkeypatch.setattr(wsbr_build, "cluster_means", real)
    # The build has dozens of 0.2 s steps left: waiting for it would take many seconds.
    assert took < 3.0, f"close() waited {took:.1f} s for the compaction ({steps} steps ran)"
    assert outcome and isinstance(outcome[0], pdb.ClosedError)
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert m.count() == 4096
        assert db.stats()["membranes"]["m"]["segments"] == 2  # the merge never committed
        np.testing.assert_array_equal(m.get(4000).vector, vectors[4000])
        db.verify()
        db.compact()  # the interrupted merge runs again, to the end
        assert db.stats()["membranes"]["m"]["segments"] == 1 and m.count() == 4096
        assert m.search(vectors[17], k=1)[0].id == 17


def test_a_finished_job_is_not_kept_while_the_worker_waits():
    """What a job's closure holds (a compaction's retired segments, whose maps keep their
    unlinked files' space) is let go when the job ends, not when the next one arrives."""
    import gc
    import weakref

    from pomaidb_core.worker import BackgroundWorker

    class Held:
        pass

    held, done = Held(), threading.Event()
    alive = weakref.ref(held)
    worker = BackgroundWorker()
    try:
        worker.submit(lambda held=held: done.set())
        del held
        assert done.wait(30)
        deadline = time.monotonic() + 30
        while alive() is not None:  # the worker drops the job right after running it
            assert time.monotonic() < deadline, "the worker kept its finished job"
            gc.collect()
            time.sleep(0.01)
    finally:
        worker.stop()
