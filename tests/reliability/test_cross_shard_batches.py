"""A put_batch spanning shards is all or nothing (txn.py), under faults, cancellation and races.

Oracles: the batch's own ids (all present or none), and a reopened database
(what replay rebuilds must equal what the running database showed).
"""

from __future__ import annotations

import asyncio
import random
import threading

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
