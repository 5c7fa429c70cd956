"""A put_batch spanning shards is all or nothing (txn.py), under faults, cancellation and races.

Oracles: the batch's own ids (all present or none), and a reopened database
(what replay rebuilds must equal what the running database showed).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import numpy as np
import pytest
from faults import FailingDisk

import pomaidb_core as pdb
from pomaidb_core import routing

DIM = 4
SHARDS = 3


def vector_of(key: int, version: int = 0) -> np.ndarray:
    return np.array([key, version, 1.0, -key], dtype=np.float32)


def _snapshot(m: pdb.Membrane) -> dict[int, tuple]:
    return {r.id: (r.vector.tobytes(), r.metadata) for r in m.scan()}


def _batch(keys: list[int], version: int = 0) -> tuple[list[int], np.ndarray, list[dict]]:
    return keys, np.stack([vector_of(k, version) for k in keys]), [{"v": version} for k in keys]


def test_a_batch_whose_part_fails_on_one_shard_is_applied_on_none(tmp_path):
    path = tmp_path / "db"
    keys = list(range(100, 130))
    assert len({routing.shard_of(k, SHARDS) for k in keys}) == SHARDS
    failing_shard = f"shard_{routing.shard_of(keys[0], SHARDS)}/"
    with pdb.open(path, shards=SHARDS, sync="batch") as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put_batch(*_batch(list(range(10))))
        with FailingDisk(lambda op, p: op == "fsync" and failing_shard in p and p.endswith(".wal")):
            with pytest.raises(pdb.StorageError):
                m.put_batch(*_batch(keys))
        assert not any(m.exists(k) for k in keys)
        assert m.count() == 10
        healthy = next(k for k in range(1000, 2000) if routing.shard_of(k, SHARDS)
                       != routing.shard_of(keys[0], SHARDS))
        m.put(healthy, vector_of(healthy))  # the other shards still take writes
    with pdb.open(path) as db:
        m = db.membrane("m")
        assert not any(m.exists(k) for k in keys), "an aborted batch came back on reopen"
        assert m.count() == 11
        db.verify()


def test_cancelled_batches_are_each_applied_whole_or_not_at_all(tmp_path):
    path = tmp_path / "db"
    batches = [list(range(i * 100, i * 100 + 12)) for i in range(300)]

    async def storm(m: pdb.Membrane) -> None:
        rng = random.Random(7)
        tasks = [asyncio.ensure_future(m.aput_batch(*_batch(keys))) for keys in batches]
        for _ in range(40):
            await asyncio.sleep(0)
            for task in rng.sample(tasks, 20):
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def check(m: pdb.Membrane, when: str) -> None:
        for keys in batches:
            present = [m.exists(k) for k in keys]
            assert all(present) or not any(present), f"{when}: batch {keys[0]} is partial"

    with pdb.open(path, shards=SHARDS, mailbox_capacity=4096) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        asyncio.run(storm(m))
        check(m, "before reopen")
        before = _snapshot(m)
    with pdb.open(path) as db:
        m = db.membrane("m")
        check(m, "after reopen")
        assert _snapshot(m) == before


@pytest.mark.parametrize("sync", ["batch", "never"])
def test_racing_overlapping_writes_end_as_replay_rebuilds_them(tmp_path, sync):
    """Parts applied at decision time yield to writes logged after them, as replay does."""
    path = tmp_path / "db"
    keys = list(range(40))
    with pdb.open(path, shards=SHARDS, sync=sync, auto_freeze=False) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")

        def batches(worker: int) -> None:
            rng = random.Random(worker)
            for version in range(1, 60):
                m.put_batch(*_batch(rng.sample(keys, 10), worker * 1000 + version))

        def singles(worker: int) -> None:
            rng = random.Random(worker)
            for version in range(1, 200):
                key = rng.choice(keys)
                if version % 7 == 0:
                    m.delete(key)
                else:
                    m.put(key, vector_of(key, worker * 1000 + version), {"v": version})

        threads = [threading.Thread(target=batches, args=(w,)) for w in (1, 2, 3)]
        threads += [threading.Thread(target=singles, args=(w,)) for w in (4, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        before = _snapshot(m)
    with pdb.open(path) as db:
        assert _snapshot(db.membrane("m")) == before


def test_a_batch_cancelled_before_all_its_parts_are_queued_is_aborted(tmp_path):
    """A part still waiting for mailbox room when its caller gives up votes no on its behalf.

    Otherwise the parts already logged would wait for that vote forever: invisible, and
    holding every later close of the database.
    """
    from pomaidb_core import fs

    stuck, release = threading.Event(), threading.Event()
    keys = list(range(200, 230))
    blocked = routing.shard_of(keys[-1], 2)
    assert blocked == 1 and {routing.shard_of(k, 2) for k in keys} == {0, 1}
    others = [k for k in range(1000, 1100) if routing.shard_of(k, 2) == blocked][:2]

    def hook(op: str, p: str) -> None:
        if op == "write" and f"shard_{blocked}/" in p and p.endswith(".wal") and not release.is_set():
            stuck.set()
            assert release.wait(30)

    db = pdb.open(tmp_path / "db", shards=2, mailbox_capacity=1)
    m = db.create_membrane("m", dim=DIM, metric="l2")
    fs.set_fault_hook(hook)
    writers = []
    try:
        writers.append(threading.Thread(target=m.put, args=(others[0], vector_of(others[0]))))
        writers[0].start()
        assert stuck.wait(10)  # shard 1's thread is inside a log write
        writers.append(threading.Thread(target=m.put, args=(others[1], vector_of(others[1]))))
        writers[1].start()  # ... and its one mailbox slot is taken

        async def cancelled_batch() -> None:
            task = asyncio.ensure_future(m.aput_batch(*_batch(keys)))
            await asyncio.sleep(0.3)  # shard 0's part is logged; shard 1's waits for room
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_batch())
    finally:
        release.set()
        fs.set_fault_hook(None)
    for writer in writers:
        writer.join(10)
    assert not any(m.exists(k) for k in keys)
    closer = threading.Thread(target=db.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close waits for a vote that never comes"
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert not any(m.exists(k) for k in keys), "replay committed a cancelled batch"
        assert all(m.exists(k) for k in others)


def test_a_cancelled_batch_does_not_wait_for_a_part_held_back_by_backpressure(tmp_path, monkeypatch):
    """Shard 1 holds its part back (unsaved generations pile up); the caller gives up.

    The batch is aborted at once, and the held-back part, released later, must not be
    logged: it would wait for a decision already made (and replay would keep it).
    """
    from pomaidb_core import builder

    release = threading.Event()
    real = builder.build_segment
    monkeypatch.setattr(builder, "build_segment",
                        lambda *a, **kw: (release.wait(60), real(*a, **kw))[1])
    keys = list(range(200, 230))
    on_1 = [k for k in range(1000, 1100) if routing.shard_of(k, 2) == 1][:3]
    db = pdb.open(tmp_path / "db", shards=2, memtable_limit=1, auto_compact=False)
    try:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        for key in on_1:  # each put freezes a generation whose build hangs: shard 1 backlogs
            m.put(key, vector_of(key))

        async def cancelled_batch() -> None:
            task = asyncio.ensure_future(m.aput_batch(*_batch(keys)))
            await asyncio.sleep(0.3)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)  # not held until the backlog clears

        asyncio.run(cancelled_batch())
        assert not any(m.exists(k) for k in keys)
        release.set()
        m.put(on_1[0], vector_of(on_1[0]))  # behind the held-back part, in order
        assert not any(m.exists(k) for k in keys), "a part of an aborted batch was applied"
    finally:
        release.set()
        db.close()
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert not any(m.exists(k) for k in keys), "replay committed a cancelled batch"
        assert all(m.exists(k) for k in on_1)


_KILLED_MID_BATCH = """
import os, signal, sys, time
import numpy as np
import pomaidb_core as pdb
from pomaidb_core import fs

path, when, keys = sys.argv[1], sys.argv[2], [int(k) for k in sys.argv[3:]]
db = pdb.open(path, shards=2)
m = db.create_membrane("m", dim=4, metric="l2")
m.put(1, np.ones(4, dtype=np.float32))
writes = []

def hook(op, p):
    if op != "write" or not p.endswith(".wal"):
        return
    writes.append(p)
    if when == "part" and "shard_1/" in p:  # shard 1 dies as it writes its part ...
        time.sleep(0.5)  # ... after shard 0 logged its own
        os.kill(os.getpid(), signal.SIGKILL)
    if when == "commit" and len(writes) == 3:  # both parts logged, no COMMIT written yet
        os.kill(os.getpid(), signal.SIGKILL)

fs.set_fault_hook(hook)
m.put_batch(keys, np.stack([np.full(4, k, dtype=np.float32) for k in keys]))
if when == "commit":  # acknowledged: the COMMITs ride the shards' next writes, none came yet
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_mid_batch(path, when: str, keys: list[int]) -> None:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-P", "-c", _KILLED_MID_BATCH, str(path), when,
                            *map(str, keys)], capture_output=True, timeout=120)
    assert child.returncode == -9, child.stderr.decode()


def test_a_crash_after_every_part_is_logged_applies_the_whole_batch(tmp_path):
    keys = list(range(100, 160))
    assert {routing.shard_of(k, 2) for k in keys} == {0, 1}
    _killed_mid_batch(tmp_path / "db", "commit", keys)
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert all(m.exists(k) for k in keys), "every part was logged: the batch was decided"
        db.freeze()  # recovery logged the COMMITs, so one shard's freeze cannot split it later
    with pdb.open(tmp_path / "db") as db:
        assert all(db.membrane("m").exists(k) for k in keys)


def test_a_crash_before_every_part_is_logged_leaves_no_part(tmp_path):
    keys = list(range(100, 160))
    _killed_mid_batch(tmp_path / "db", "part", keys)
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        present = [k for k in keys if m.exists(k)]
        assert present == [], f"{len(present)} of the batch's {len(keys)} ids survived the crash"
        assert m.exists(1)
        m.put_batch(keys, np.stack([vector_of(k) for k in keys]))  # the shards take writes again
    with pdb.open(tmp_path / "db") as db:
        assert all(db.membrane("m").exists(k) for k in keys)


def test_a_full_shard_freezes_after_a_batch_although_its_peer_stays_idle(tmp_path):
    """A batch's COMMITs ride each shard's next write; a shard whose freeze waits for an idle
    peer's COMMIT asks it to write it, instead of holding its full memtable for ever."""
    keys = list(range(100, 140))
    with pdb.open(tmp_path / "db", shards=2, memtable_limit=200, idle_freeze_seconds=0) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put_batch(*_batch(keys))
        on_0 = [k for k in range(1000, 2000) if routing.shard_of(k, 2) == 0][:300]
        for key in on_0:  # shard 1 gets no write after the batch
            m.put(key, vector_of(key))
        per_shard = []
        for _ in range(200):
            per_shard = db.stats()["membranes"]["m"]["per_shard"]
            if per_shard[0]["segments"] or per_shard[0]["frozen_memtables"]:
                break
            time.sleep(0.05)
        assert per_shard[0]["segments"] or per_shard[0]["frozen_memtables"], per_shard
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert all(m.exists(k) for k in keys + on_0)


def test_a_freeze_held_by_a_batch_whose_commit_fails_on_the_peer_fails_instead_of_hanging(tmp_path):
    """Shard 0's freeze waits for its peer's COMMIT of an acknowledged batch; the peer's WAL
    write fails, so that COMMIT never comes. The freeze must fail (StorageError), not wait for
    a command that an idle shard never gets; the batch survives the reopen whole."""
    keys = list(range(100, 140))
    with pdb.open(tmp_path / "db", shards=2, sync="batch", idle_freeze_seconds=0) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put_batch(*_batch(keys))
        outcome: list[BaseException | None] = []

        def freeze() -> None:
            try:
                db.freeze()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        with FailingDisk(lambda op, p: op == "write" and "shard_1/" in p and p.endswith(".wal")):
            waiter = threading.Thread(target=freeze, daemon=True)
            waiter.start()
            waiter.join(timeout=20)
        assert outcome, "db.freeze() hung"
        assert isinstance(outcome[0], pdb.StorageError), outcome
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert all(m.exists(k) for k in keys)
