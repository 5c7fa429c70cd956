"""Load: writers, searchers and maintenance at once for a fixed time, then close() under load.

`pytest -m stress` selects it; CI runs it by default for POMAIDB_STRESS_SECONDS
(5 unless set; set it to 600 for a soak). Checked:
* no call raises anything but ClosedError (once close() has begun), and nothing deadlocks:
  close() returns and every thread ends within a timeout;
* the mailboxes stay within their bound, and memory stops growing once the key space is
  full (overwrites, deletes, freezes and compactions churn a fixed set of ids);
* every search answer is well-formed while the data moves underneath it;
* afterwards the reopened database equals the writers' oracles exactly, and verifies.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import numpy as np
import pytest
from oracle import Oracle, assert_same_ranking

import pomaidb_core as pdb
from pomaidb_core import fs

SECONDS = float(os.environ.get("POMAIDB_STRESS_SECONDS", "5"))
DIM = 16
SHARDS = 3
WRITERS = 4
KEYS_PER_WRITER = 1500
MAILBOX = 16


def vector_of(key: int, version: int) -> np.ndarray:
    return np.random.default_rng([key, version]).standard_normal(DIM).astype(np.float32)


class Writer:
    """Owns the ids [base, base + KEYS_PER_WRITER): its oracle is exact, bar one in-flight op."""

    def __init__(self, m: pdb.Membrane, index: int) -> None:
        self.m = m
        self.index = index
        self.base = index * 1_000_000
        self.state: dict[int, int] = {}  # id -> version, acknowledged
        self.maybe: dict[int, int | None] = {}  # the op close() interrupted: id -> new version
        self.rng = random.Random(index)
        self.version = 0
        self.ops = 0

    def step(self) -> None:
        roll = self.rng.random()
        keys = self.rng.sample(range(self.base, self.base + KEYS_PER_WRITER),
                               1 if roll < 0.3 else self.rng.randint(2, 40))
        self.version += 1
        v = self.version
        if roll < 0.75:
            change: dict[int, int | None] = dict.fromkeys(keys, v)
            self.maybe = change
            self.m.put_batch(keys, np.stack([vector_of(k, v) for k in keys]),
                             [{"w": self.index, "v": v, "g": k % 7} for k in keys])
        elif roll < 0.95:
            change = dict.fromkeys(keys)
            self.maybe = change
            self.m.delete_batch(keys)
        else:
            group = self.rng.randrange(7)
            change = {k: None for k, ver in self.state.items() if k % 7 == group}
            self.maybe = change
            self.m.delete_where({"w": self.index, "g": group})
        for key, value in change.items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        self.maybe = {}
        self.ops += 1


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _check_hits(hits, k: int, flt: dict | None) -> None:
    assert len(hits) <= k
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.id for h in hits}) == len(hits)
    for hit in hits:
        assert hit.id % 1_000_000 < KEYS_PER_WRITER
        if flt is not None:
            assert all(hit.metadata[key] == value for key, value in flt.items())


@pytest.mark.stress
def test_writers_searchers_and_maintenance_then_close_under_load(tmp_path):
    path = tmp_path / "db"
    db = pdb.open(path, shards=SHARDS, sync="batch", memtable_limit=400, compaction_trigger=3,
                  mailbox_capacity=MAILBOX, group_commit_max=32)
    m = db.create_membrane("m", dim=DIM, metric="cosine")
    writers = [Writer(m, i) for i in range(WRITERS)]
    stop = threading.Event()
    errors: list[BaseException] = []
    closing = threading.Event()
    peak_queue = [0]

    def guarded(body):
        def run() -> None:
            try:
                while not stop.is_set():
                    body()
            except pdb.ClosedError:
                if not closing.is_set():
                    errors.append(AssertionError("ClosedError before close() began"))
            except BaseException as exc:
                errors.append(exc)
        return run

    def search() -> None:
        rng = np.random.default_rng(threading.get_ident() % 2**32)
        flt = {"g": int(rng.integers(7))} if rng.random() < 0.5 else None
        k = int(rng.integers(1, 30))
        if rng.random() < 0.2:
            for hits in m.search_batch(rng.standard_normal((4, DIM)), k=k, filter=flt):
                _check_hits(hits, k, flt)
        else:
            _check_hits(m.search(rng.standard_normal(DIM), k=k, filter=flt), k, flt)
        key = int(rng.integers(WRITERS)) * 1_000_000 + int(rng.integers(KEYS_PER_WRITER))
        record = m.get(key)
        assert record is None or record.metadata["w"] == key // 1_000_000

    def search_async() -> None:
        async def burst() -> None:
            query = np.random.default_rng().standard_normal(DIM)
            for hits in await asyncio.gather(*(m.asearch(query, k=5) for _ in range(8))):
                _check_hits(hits, 5, None)
        asyncio.run(burst())

    def maintain() -> None:
        time.sleep(0.05)
        choice = random.random()
        if choice < 0.4:
            db.freeze()
        elif choice < 0.6:
            db.compact()
        elif choice < 0.9:
            stats = db.stats()
            assert stats["membranes"]["m"]["records"] >= 0
        else:
            assert m.count() >= 0
        for shard in db._shards:  # white-box: the bound that keeps memory in check
            peak_queue[0] = max(peak_queue[0], shard.mailbox._queue.qsize())

    threads = [threading.Thread(target=guarded(w.step), name=f"writer-{w.index}") for w in writers]
    threads += [threading.Thread(target=guarded(search), name=f"searcher-{i}") for i in range(2)]
    threads += [threading.Thread(target=guarded(search_async), name="async-searcher"),
                threading.Thread(target=guarded(maintain), name="maintenance")]
    for thread in threads:
        thread.start()
    time.sleep(min(SECONDS * 0.3, 5))
    warm_rss = _rss_bytes()
    time.sleep(max(SECONDS - min(SECONDS * 0.3, 5), 0))
    loaded_rss = _rss_bytes()

    closing.set()
    closer = threading.Thread(target=db.close, name="closer")
    closer.start()  # under load: every thread is still calling in
    closer.join(60)
    assert not closer.is_alive(), "close() deadlocked under load"
    stop.set()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), f"{thread.name} hung after close()"
    assert not errors, errors[:3]
    assert all(w.ops > 10 for w in writers), [w.ops for w in writers]
    assert peak_queue[0] <= MAILBOX + len(threads) + 8, peak_queue[0]
    assert loaded_rss - warm_rss < 128 << 20, (warm_rss, loaded_rss)
    _check_reopened(path, writers)


def _check_reopened(path, writers: list[Writer]) -> None:
    with pdb.open(path) as db:
        db.verify()
        m = db.membrane("m")
        found = {r.id: r for r in m.scan()}
        oracle = Oracle(DIM, "cosine")
        for writer in writers:
            for key in range(writer.base, writer.base + KEYS_PER_WRITER):
                allowed = {writer.state.get(key)}
                if key in writer.maybe:
                    allowed.add(writer.maybe[key])
                record = found.get(key)
                got = None if record is None else record.metadata["v"]
                assert got in allowed, (key, got, allowed)
                if record is not None:
                    np.testing.assert_array_equal(record.vector, vector_of(key, got))
                    oracle.put(key, record.vector)
        assert len(found) == len(oracle.rows)
        query = np.random.default_rng(1).standard_normal(DIM)
        assert_same_ranking(m.search(query, k=10, exact=True), oracle.search(query, 10))


@pytest.mark.parametrize("maintenance", ["freeze", "compact"])
def test_close_while_a_segment_is_being_built_fails_the_waiting_call_with_closed(tmp_path,
                                                                               maintenance):
    """Deterministic: close() lands while the background worker is writing a segment."""
    db = pdb.open(tmp_path / "db", shards=1, auto_freeze=False, auto_compact=False)
    m = db.create_membrane("m", dim=DIM)
    for start in (0, 10, 20):
        m.put_batch(range(start, start + 10), np.ones((10, DIM)))
        if start < 20:
            db.freeze()
    building = threading.Event()

    def slow_segment(op: str, path: str) -> None:
        if op == "create" and path.endswith(".seg.tmp"):
            building.set()
            time.sleep(0.3)

    outcome: list = []

    def call() -> None:
        try:
            getattr(db, maintenance)()
            outcome.append("finished")
        except pdb.ClosedError:
            outcome.append("closed")

    fs.set_fault_hook(slow_segment)
    caller = threading.Thread(target=call)
    caller.start()
    assert building.wait(30)
    db.close()
    caller.join(30)
    assert not caller.is_alive(), f"{maintenance}() hung after close()"
    assert outcome in (["closed"], ["finished"])
    with pdb.open(tmp_path / "db") as again:
        assert again.membrane("m").count() == 30
