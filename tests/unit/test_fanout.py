"""Spread shard reads (fanout.py): the same answers as reading every shard on the caller's
thread, errors reported once every read has ended, helpers only borrowed when idle."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import fanout


@pytest.fixture
def spread_always(monkeypatch):
    """Four cores and no size floor: every search of a multi-shard DB is spread."""
    monkeypatch.setattr(fanout.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(fanout, "SPREAD_MIN_ROWS", 0)


def _hits(m, queries, **kwargs):
    return [[(h.id, h.score, h.metadata) for h in m.search(q, k=7, **kwargs)] for q in queries]


def test_spread_searches_answer_as_serial_ones(tmp_path, spread_always, monkeypatch):
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((3_000, 16)).astype(np.float32)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    with pdb.open(tmp_path / "db", shards=4) as db:
        m = db.create_membrane("m", dim=16)
        m.put_batch(range(2_000), vectors[:2_000], [{"i": i % 5} for i in range(2_000)])
        db.freeze()  # segments, and below them ...
        m.put_batch(range(1_000, 3_000), vectors[1_000:], [{"i": i % 5} for i in range(2_000)])
        m.delete_batch([5, 1_500])  # ... memtables that override and delete segment rows
        spread = [_hits(m, queries), _hits(m, queries, filter={"i": 2}),
                  _hits(m, queries, exact=True)]
        assert db._fanout.helpers == 3
        monkeypatch.setattr(fanout, "SPREAD_MIN_ROWS", 10**12)
        serial = [_hits(m, queries), _hits(m, queries, filter={"i": 2}),
                  _hits(m, queries, exact=True)]
    assert spread == serial
    assert all(len(hits) == 7 for hits in spread[0])


def test_a_failing_shard_read_raises_after_every_read_and_releases_the_segments(
        tmp_path, spread_always, monkeypatch):
    from pomaidb_core.layers import LiveSegment

    rng = np.random.default_rng(5)
    with pdb.open(tmp_path / "db", shards=4) as db:
        m = db.create_membrane("m", dim=8)
        m.put_batch(range(400), rng.standard_normal((400, 8)).astype(np.float32))
        db.freeze()
        real = db._read

        def read(shard, kind, *args):
            if kind == "search_found" and shard == 2:
                raise pdb.StorageError("shard 2 could not read")
            return real(shard, kind, *args)

        monkeypatch.setattr(db, "_read", read)
        monkeypatch.setattr(db, "_search_by_plan", lambda *args: None)  # through the shards
        acquired, released = [], []
        monkeypatch.setattr(LiveSegment, "acquire", _counting(LiveSegment.acquire, acquired))
        monkeypatch.setattr(LiveSegment, "release", _counting(LiveSegment.release, released))
        with pytest.raises(pdb.StorageError, match="shard 2 could not read"):
            m.search(np.ones(8, np.float32), k=5)
        assert acquired and len(acquired) == len(released)  # the other shards' hits let go


def _counting(method, calls):
    def counted(self, *args):
        calls.append(self)
        return method(self, *args)
    return counted


def test_busy_helpers_are_not_waited_for():
    """A search that finds every helper busy reads all its shards itself."""
    spread = fanout.ReadFanout(2)
    if spread.helpers == 0:
        pytest.skip("one core: no helper to keep busy")
    started, release = threading.Event(), threading.Event()

    def slow(shard: int) -> int:
        if shard == 1:
            started.set()
            assert release.wait(30)
        return shard

    other = threading.Thread(target=lambda: spread.outcomes(slow, 2, True, _keep))
    other.start()
    assert started.wait(30)  # the only helper holds shard 1 of the other search
    assert spread.outcomes(lambda shard: -shard, 3, True, _keep) == [
        fanout.Outcome(0, None), fanout.Outcome(-1, None), fanout.Outcome(-2, None)]
    release.set()
    other.join(30)
    spread.close()
    assert spread.outcomes(lambda shard: shard, 2, True, _keep) == [
        fanout.Outcome(0, None), fanout.Outcome(1, None)]  # closed: read here


def _keep(value) -> None:
    raise AssertionError(f"nothing is discarded here, got {value!r}")


def test_values_read_for_an_interrupted_caller_are_discarded(monkeypatch):
    """Ctrl-C while the caller waits for a helper: what its shards read (segments held for
    its hits) is handed to discard, the caller's own at once, the helper's when it ends."""
    from concurrent.futures import Future

    monkeypatch.setattr(fanout.os, "cpu_count", lambda: 4)
    spread = fanout.ReadFanout(4)
    release = threading.Event()

    def read(shard: int) -> str:
        if shard >= 2:  # the helpers' shards end after the caller gave up
            assert release.wait(30)
        return f"held by shard {shard}"

    real, interrupts = Future.result, [KeyboardInterrupt()]

    def interrupted(self, timeout=None):  # the caller's first wait is interrupted
        if interrupts:
            raise interrupts.pop()
        return real(self, timeout)

    discarded: list[str] = []
    monkeypatch.setattr(Future, "result", interrupted)
    with pytest.raises(KeyboardInterrupt):
        spread.outcomes(read, 4, True, discarded.append)
    assert discarded[0] == "held by shard 0" and "held by shard 2" not in discarded
    release.set()
    spread.close()  # waits for the helpers
    assert sorted(discarded) == [f"held by shard {i}" for i in range(4)]


def test_groups_cover_the_shards_in_order():
    for shards in range(1, 9):
        for count in range(1, shards + 1):
            groups = fanout._groups(range(shards), count)
            assert [s for g in groups for s in g] == list(range(shards))
            assert max(map(len, groups)) - min(map(len, groups)) <= 1
