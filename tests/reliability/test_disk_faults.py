"""A full or failing disk at each call site in turn (LevelDB's and SQLite's IO-error tests).

After every injected failure:
* the call that hit it raises StorageError (never another type, never a hang);
* after a failed WAL write, fsync or rotation the shard refuses writes until
  the database is reopened (LevelDB's background error), while reads go on;
  any other failure is retried by the next call, which succeeds;
* close() works, and the reopened database holds every acknowledged write,
  nothing that was never written, and passes verify().
"""

from __future__ import annotations

import random
import re
import threading
import traceback
from dataclasses import dataclass

import pytest
from faults import FailingDisk, after, nth_step, step
from workload import DIM, MEMBRANE, History, run, surviving_state, vector_of

import pomaidb_core as pdb
from pomaidb_core import routing

SHARDS = 2
WAL = r"\.wal$"
SEG_TMP = r"\.seg\.tmp$"
SIDE_TMP = r"\.wsbr\.tmp$"
MAN_TMP = r"MANIFEST-\d+\.tmp$"
MAN = r"MANIFEST-\d+$"


@dataclass(frozen=True)
class Site:
    name: str
    match: object  # (op, path) -> bool
    trigger: str  # "put" | "freeze" | "compact" | "create_membrane"
    sticky: bool = False  # the shard must refuse writes until reopened
    sync: str = "batch"

    def __str__(self) -> str:
        return self.name


SITES = [
    # The WAL: append, fsync at acknowledgement, rotation at freeze, reset after the commit.
    Site("wal-append", step("write", WAL), "put", sticky=True),
    Site("wal-append-always", step("write", WAL), "put", sticky=True, sync="always"),
    Site("wal-fsync", step("fsync", WAL), "put", sticky=True),
    Site("wal-fsync-always", step("fsync", WAL), "put", sticky=True, sync="always"),
    Site("wal-append-never", step("write", WAL), "put", sticky=True, sync="never"),
    Site("wal-rotate-fsync", step("fsync", WAL), "freeze", sticky=True, sync="never"),
    Site("wal-rotate-create", step("create", WAL), "freeze", sticky=True),
    Site("wal-rotate-dir-fsync", step("fsync", r"/wal$"), "freeze", sticky=True),
    Site("wal-reset-unlink", step("unlink", WAL), "freeze"),
    Site("wal-reset-dir-fsync", after(step("unlink", WAL), step("fsync", r"/wal$")), "freeze"),
    # Freeze: segment and sidecar files, their directory, the manifest commit.
    Site("segment-create", step("create", SEG_TMP), "freeze"),
    Site("segment-write", step("write", SEG_TMP), "freeze"),
    Site("segment-fsync", step("fsync", SEG_TMP), "freeze"),
    Site("segment-rename", step("rename", r"\.seg$"), "freeze"),
    Site("sidecar-write", step("write", SIDE_TMP), "freeze"),
    Site("sidecar-fsync", step("fsync", SIDE_TMP), "freeze"),
    Site("sidecar-rename", step("rename", r"\.wsbr$"), "freeze"),
    Site("segment-dir-fsync", step("fsync", r"/segments$"), "freeze"),
    Site("manifest-write", step("write", MAN_TMP), "freeze"),
    Site("manifest-fsync", step("fsync", MAN_TMP), "freeze"),
    Site("manifest-rename", step("rename", MAN), "freeze"),
    Site("manifest-dir-fsync", step("fsync", r"/manifest$"), "freeze"),
    Site("manifest-unlink-old", step("unlink", MAN), "freeze"),
    # Compaction: the merged segment, its commit, and retiring the inputs.
    Site("compaction-segment-write", step("write", SEG_TMP), "compact"),
    Site("compaction-segment-fsync", step("fsync", SEG_TMP), "compact"),
    Site("compaction-sidecar-write", step("write", SIDE_TMP), "compact"),
    Site("compaction-dir-fsync", step("fsync", r"/segments$"), "compact"),
    Site("compaction-manifest-write", step("write", MAN_TMP), "compact"),
    Site("compaction-manifest-fsync", step("fsync", MAN_TMP), "compact"),
    Site("compaction-manifest-rename", step("rename", MAN), "compact"),
    Site("compaction-manifest-dir-fsync", step("fsync", r"/manifest$"), "compact"),
    Site("compaction-manifest-unlink-old", step("unlink", MAN), "compact"),
    # The catalog: create_membrane is a manifest commit of its own.
    Site("catalog-manifest-write", step("write", MAN_TMP), "create_membrane"),
    Site("catalog-manifest-fsync", step("fsync", MAN_TMP), "create_membrane"),
    Site("catalog-manifest-dir-fsync", step("fsync", r"/manifest$"), "create_membrane"),
]


def _open(path, sync="batch", **kwargs):
    options = {"shards": SHARDS, "sync": sync, "auto_freeze": False, "auto_compact": False}
    return pdb.open(path, **{**options, **kwargs})


def _prepare(db, history: History):
    """Two segments per shard and some rows in the memtables: every site is reachable."""
    m = db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
    history.membrane = True
    for start in (0, 100):
        history.put(m, list(range(start, start + 40)))
        history.delete(m, [start + 1, start + 2])
        history.freeze(db)
    history.put(m, list(range(200, 220)))
    return m


def _pull_trigger(site: Site, db, m, history: History) -> None:
    if site.trigger == "put":
        history.put(m, [1000])
    elif site.trigger == "freeze":
        history.freeze(db)
    elif site.trigger == "compact":
        db.compact()
    else:
        db.create_membrane("other", dim=3)


def _key_on(shard: int, start: int = 5000) -> int:
    return next(k for k in range(start, start + 1000) if routing.shard_of(k, SHARDS) == shard)


def _shard_of(path: str) -> int | None:
    found = re.search(r"shard_(\d+)", path)
    return int(found.group(1)) if found else None


def check_reopened(path, history: History) -> dict[int, int]:
    """Every acknowledged write is there, nothing unwritten is, and every checksum holds."""
    with pdb.open(path, shards=SHARDS) as db:
        db.verify()
        if MEMBRANE not in db.membranes():
            assert not history.membrane
            return {}
        m = db.membrane(MEMBRANE)
        actual = surviving_state(m, SHARDS)
        for shard in range(SHARDS):
            k = history.prefix_length(shard, actual[shard], history.acked[shard])
            assert k is not None, f"shard {shard} lost an acknowledged write or gained a phantom"
        merged = {key: v for state in actual for key, v in state.items()}
        assert m.count() == len(merged)
        return merged


@pytest.mark.parametrize("site", SITES, ids=str)
def test_failure_at_each_call_site(tmp_path, site: Site):
    path = tmp_path / "db"
    history = History(SHARDS)
    db = _open(path, site.sync)
    try:
        m = _prepare(db, history)
        with FailingDisk(site.match) as disk, pytest.raises(pdb.StorageError):
            _pull_trigger(site, db, m, history)
        assert len(disk.fired) == 1, f"{site} was never reached"
        shard = _shard_of(disk.fired[0][1])
        if site.sticky:
            key = _key_on(shard)
            with pytest.raises(pdb.StorageError, match="refuses writes"):
                history.put(m, [key])
            assert m.get(0) is not None or m.get(3) is not None  # reads go on
        else:
            _pull_trigger(site, db, m, history)  # the retry succeeds
            history.put(m, [_key_on(0), _key_on(1)])
    finally:
        db.close()
    check_reopened(path, history)
    with _open(path, site.sync) as db:  # reopening clears a sticky error
        history.put(db.membrane(MEMBRANE), [_key_on(0, 9000), _key_on(1, 9000)])
    check_reopened(path, history)


@pytest.mark.parametrize("site", [s for s in SITES if not s.sticky], ids=str)
def test_close_right_after_a_failure_reopens_consistent(tmp_path, site: Site):
    """No retry cleans up: whatever the failed step left on disk must open as it is."""
    path = tmp_path / "db"
    history = History(SHARDS)
    db = _open(path, site.sync)
    try:
        m = _prepare(db, history)
        with FailingDisk(site.match) as disk, pytest.raises(pdb.StorageError):
            _pull_trigger(site, db, m, history)
        assert len(disk.fired) == 1, f"{site} was never reached"
    finally:
        db.close()
    check_reopened(path, history)


@pytest.mark.parametrize("sync", ["always", "batch", "never"])
def test_every_io_step_of_a_workload_failing_in_turn(tmp_path, sync):
    """SQLite's sweep: fail step N of a random workload for many N; each run reopens clean."""
    rng = random.Random(sync)
    with FailingDisk(lambda op, path: False) as counter:
        _sweep_once(tmp_path / "count", sync, counter, random.Random(0))
    total = counter.steps
    for n in sorted(rng.sample(range(1, total + 1), min(total, 60))):
        _sweep_once(tmp_path / f"n{n}", sync, nth_step(n), random.Random(0))


def _sweep_once(path, sync: str, disk: FailingDisk, rng: random.Random) -> None:
    history = History(SHARDS)
    with disk:
        try:
            db = pdb.open(path, shards=SHARDS, sync=sync, memtable_limit=60,
                          compaction_trigger=2)
        except pdb.StorageError:
            db = None
        if db is not None:
            try:
                try:
                    m = db.get_or_create_membrane(MEMBRANE, dim=DIM, metric="l2")
                    history.membrane = True
                except pdb.StorageError:
                    m = None
                if m is not None:
                    run(db, m, history, rng, steps=40, tolerate=(pdb.StorageError,))
            finally:
                db.close()
    check_reopened(path, history)


def test_a_disk_that_stays_full_fails_freezes_without_hanging_and_recovers(tmp_path):
    """ENOSPC on every segment write: freezes fail, writes are refused once the backlog of
    unsaved memtables is full (memory stays bounded), nothing spins, hangs or is lost; once
    the disk has room again the next freeze saves everything, without a reopen."""
    path = tmp_path / "db"
    history = History(SHARDS)
    db = _open(path, auto_freeze=True, memtable_limit=30)
    try:
        m = _prepare(db, history)
        refused = []
        with FailingDisk(step("write", SEG_TMP), repeat=True):
            for start in range(300, 900, 25):
                try:
                    history.put(m, list(range(start, start + 25)))
                except pdb.StorageError as exc:
                    refused.append(str(exc))
            with pytest.raises(pdb.StorageError):
                history.freeze(db)
        assert any("writes are refused" in message for message in refused)
        history.freeze(db)
        history.put(m, list(range(900, 925)))
        assert m.count() == len(history.versions)
    finally:
        db.close()
    check_reopened(path, history)


def test_failed_wal_fsync_never_acknowledges_the_group(tmp_path):
    """Every write in the group whose fsync failed is reported failed, none acknowledged."""
    path = tmp_path / "db"
    history = History(1)
    db = pdb.open(path, shards=1, sync="batch")
    try:
        m = db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
        history.membrane = True
        history.put(m, [1])
        with FailingDisk(step("fsync", WAL)):
            errors = []

            def writer(key):
                try:
                    m.put(key, vector_of(key, 1))
                except pdb.StorageError as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=writer, args=(k,)) for k in range(10, 20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(errors) == 10
    finally:
        db.close()
    with pdb.open(path) as db:
        assert db.membrane(MEMBRANE).get(1) is not None
        db.verify()


def test_refused_writes_do_not_pile_up_in_the_sticky_error(tmp_path):
    """Each refusal is its own exception: one shared instance grew a frame list per call."""
    with pdb.open(tmp_path / "db", shards=1) as db:
        m = db.create_membrane(MEMBRANE, dim=DIM)
        with FailingDisk(step("write", WAL)), pytest.raises(pdb.StorageError):
            m.put(1, vector_of(1, 1))
        errors = []
        for key in range(500):
            with pytest.raises(pdb.StorageError, match="refuses writes") as caught:
                m.put(key, vector_of(key, 1))
            errors.append(caught.value)
        assert len({id(e) for e in errors}) == len(errors)
        assert len(traceback.extract_tb(errors[-1].__traceback__)) < 50
