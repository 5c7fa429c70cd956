"""Callers that give up: cancelled async calls never reach into a shard.

`asyncio.wait_for(m.asearch(...), timeout)` in a server cancels calls at any
moment, including between the shard's check that a future is still pending and
its setting of the result. The shard must neither die nor hang on that, and a
write is either acknowledged (then durable) or may or may not have happened.
"""

from __future__ import annotations

import asyncio
import random
import sys
from concurrent.futures import Future

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import db as db_module

DIM = 8


def vector_of(key: int) -> np.ndarray:
    return np.random.default_rng(key).standard_normal(DIM).astype(np.float32)


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # widens every race between the loop thread and the shards
    yield
    sys.setswitchinterval(old)


async def _cancel_storm(m: pdb.Membrane, rounds: int, acked: set[int], rng: random.Random) -> int:
    cancelled = 0
    for round_ in range(rounds):
        calls = []
        for j in range(30):
            key = round_ * 100 + j
            kind = j % 3
            if kind == 0:
                calls.append((key, asyncio.ensure_future(m.aput(key, vector_of(key)))))
            elif kind == 1:
                calls.append((None, asyncio.ensure_future(m.aget(rng.randrange(key + 1)))))
            else:
                calls.append((None, asyncio.ensure_future(m.asearch(vector_of(key), k=3))))
        await asyncio.sleep(rng.choice([0, 0, 1e-5, 1e-4]))
        for _, task in calls:
            if rng.random() < 0.7:
                task.cancel()
        results = await asyncio.gather(*(t for _, t in calls), return_exceptions=True)
        for (key, _), result in zip(calls, results):
            if isinstance(result, asyncio.CancelledError):
                cancelled += 1
            elif isinstance(result, BaseException):
                raise result
            elif key is not None:
                acked.add(key)
    return cancelled


@pytest.mark.parametrize("shards", [1, 3])
def test_thousands_of_cancelled_calls_leave_every_shard_answering(tmp_path, fast_switching, shards):
    acked: set[int] = set()
    path = tmp_path / "db"
    with pdb.open(path, shards=shards, sync="batch", memtable_limit=500) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        cancelled = asyncio.run(_cancel_storm(m, 120, acked, random.Random(shards)))
        assert cancelled > 1000
        # Every shard still answers, sync and async, and holds every acknowledged write.
        for key in sorted(acked):
            record = m.get(key)
            assert record is not None and np.array_equal(record.vector, vector_of(key)), key
        assert asyncio.run(m.acount()) == m.count() >= len(acked)
        m.put(10**9, vector_of(1))
        assert m.search(vector_of(1), k=1)[0].id in {1, 10**9}
    with pdb.open(path) as db:
        m = db.membrane("m")
        missing = [key for key in acked if m.get(key) is None]
        assert not missing
        db.verify()


def test_a_cancelled_write_that_never_ran_is_not_applied(tmp_path):
    """A put cancelled while still queued is skipped by the shard (never half-done)."""

    async def main(m: pdb.Membrane) -> tuple[list[int], list[int]]:
        tasks = [asyncio.ensure_future(m.aput(key, vector_of(key))) for key in range(2000)]
        await asyncio.sleep(0)
        for task in tasks[1000:]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        done = [k for k, r in enumerate(results) if not isinstance(r, BaseException)]
        cancelled = [k for k, r in enumerate(results) if isinstance(r, asyncio.CancelledError)]
        return done, cancelled

    with pdb.open(tmp_path / "db", shards=2, mailbox_capacity=4096) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        done, cancelled = asyncio.run(main(m))
        assert len(done) + len(cancelled) == 2000
        present = {k for k in range(2000) if m.exists(k)}
        assert set(done) <= present
        # A cancelled put either ran before the cancel reached it or never ran at all.
        assert present - set(done) <= set(cancelled)
        assert m.count() == len(present)


class _CancelledInTheGap(Future):
    """A future whose caller cancels it just after the shard checked that it is still pending."""

    def done(self) -> bool:
        finished = super().done()
        if not finished:
            self.cancel()
        return finished


def test_a_cancel_between_the_shards_check_and_its_answer_does_not_kill_the_shard(
        tmp_path, monkeypatch):
    with pdb.open(tmp_path / "db", shards=1) as db:
        m = db.create_membrane("m", dim=DIM, metric="l2")
        m.put(1, vector_of(1))
        monkeypatch.setattr(db_module, "Future", _CancelledInTheGap)

        async def gap_calls() -> list:
            calls = [m.aget(1), m.asearch(vector_of(1), k=1), m.aput(2, vector_of(2))]
            return await asyncio.gather(*calls, return_exceptions=True)

        asyncio.run(gap_calls())
        monkeypatch.undo()
        # The shard still answers, and the put either happened or did not: never half.
        assert m.get(1) is not None
        assert m.search(vector_of(1), k=1)[0].id == 1
        m.put(3, vector_of(3))
        assert m.count() in (2, 3)
