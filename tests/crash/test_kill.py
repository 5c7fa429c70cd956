"""Crash tests: SIGKILL a multi-threaded writer, reopen, compare with what it acknowledged.

Each round kills writer.py (three writer threads putting, overwriting,
deleting and batch-putting across shards, a fourth freezing and compacting,
with a WAL file limit and memtable limit small enough that rotations, freezes
and compactions never stop) and then checks the reopened directory against
the acknowledged-writes oracle (acked.py). A directory is reused across rounds,
so recovery of a recovered database is exercised too.

Kills come at random times, at random file-system steps (POMAIDB_TEST_KILL_ODDS),
at chosen steps (inside a WAL rotation, before and after the renames that
commit a freeze or compaction, around the unlinks that follow them) and a
moment after a step failed with EIO. A writer that dies any other way fails
the test. tests/crash/soak.py runs the same rounds by the thousand, outside CI.
"""

from __future__ import annotations

import random

import pytest
from acked import AckedWrites, LostWrite
from rounds import (
    FAULTS,
    STEPS,
    SYNC_POLICIES,
    CrashSeries,
    Kill,
    WriterFailed,
    fault_kill,
    random_odds_kill,
    random_time_kill,
    run_writer,
    step_kill,
)
from writer import DIM, MEMBRANE, OPTIONS, vector_of

import pomaidb_core as pdb

# ---------------------------------------------------------------------------- the checker


def _feed(acked: AckedWrites, *lines: str) -> None:
    for line in ("ready", *lines):
        acked.feed(line)


def _db_holding(path, records: dict[int, int]) -> pdb.DB:
    db = pdb.open(path, **OPTIONS)
    m = db.get_or_create_membrane(MEMBRANE, dim=DIM, metric="l2")
    for key, version in records.items():
        m.put(key, vector_of(key, version), {"v": version})
    return db


@pytest.mark.parametrize("lines,holding,complaint", [
    (["I 0 0 P 5 3", "A 0 0"], {}, "id 3: lost: found absent, acknowledged put of version 5"),
    (["I 0 0 P 5 3", "A 0 0", "I 0 1 P 6 3", "A 0 1"], {3: 5}, "found version 5, acknowledged put of version 6"),
    (["I 0 0 P 5 3", "A 0 0", "I 0 1 D 3", "A 0 1"], {3: 5}, "found version 5, acknowledged delete"),
    (["I 0 0 P 5 3", "A 0 0"], {3: 5, 4: 1}, r"ids \[4\] are present but were never written"),
    (["I 0 0 P 5 3"], {3: 9}, "phantom version: found version 9"),
    (["I 1 0 P 6 4 7"], {7: 6}, "put_batch 0 of thread 1 .* partly applied: 1 of its 2 ids"),
])
def test_checker_rejects_what_the_writer_did_not_acknowledge(tmp_path, lines, holding, complaint):
    acked = AckedWrites()
    _feed(acked, *lines)
    with _db_holding(tmp_path / "db", holding) as db, pytest.raises(LostWrite, match=complaint):
        acked.check(db)


@pytest.mark.parametrize("holding", [{}, {3: 5}, {4: 6, 7: 6}, {3: 5, 4: 6, 7: 6}])
def test_checker_accepts_every_outcome_of_unacknowledged_ops(tmp_path, holding):
    acked = AckedWrites()
    # id 3: put acknowledged, then a delete in flight; ids 4 and 7: a put_batch in flight
    # (whole or absent: a batch is all or nothing across shards, crash or not).
    _feed(acked, "I 0 0 P 5 3", "A 0 0", "I 0 1 D 3", "I 1 0 P 6 4 7")
    with _db_holding(tmp_path / "db", holding) as db:
        counts = acked.check(db)
    assert counts.acked_ops == 1 and acked.settled == holding and not acked.ops


def test_checker_settles_on_what_survived(tmp_path):
    acked = AckedWrites()
    _feed(acked, "I 0 0 P 5 3", "I 0 1 P 6 3")  # neither acknowledged
    with _db_holding(tmp_path / "db", {3: 5}) as db:
        acked.check(db)
    with pdb.open(tmp_path / "db", **OPTIONS) as db:
        db.membrane(MEMBRANE).delete(3)
        with pytest.raises(LostWrite, match="id 3: lost: found absent"):
            acked.check(db)  # version 5 was what survived: it must stay


# ---------------------------------------------------------------------------- the harness


def test_a_writer_whose_engine_thread_dies_fails_the_round(tmp_path):
    kill = Kill(after_s=10.0, fault="bug:before:write:wal:5")
    with pytest.raises(WriterFailed, match="exit status 70 before the parent killed it"):
        run_writer(str(tmp_path / "db"), "batch", 0, kill)


def test_a_writer_that_exits_before_it_is_killed_fails_the_round(tmp_path):
    with pytest.raises(WriterFailed, match=r"(?s)before the parent killed it.*InvalidArgumentError"):
        run_writer(str(tmp_path / "db"), "sometimes", 0, Kill(after_s=30.0))


# ---------------------------------------------------------------------------- the crashes


@pytest.mark.parametrize("sync", SYNC_POLICIES)
def test_acknowledged_writes_survive_sigkill_at_random_times(tmp_path, sync):
    rng = random.Random(f"time-{sync}")
    series = CrashSeries.fresh(str(tmp_path / "db"))
    checked = rounds = 0
    while (rounds < 8 or checked <= 500) and rounds < 40:  # a loaded machine needs more rounds
        checked += series.run(sync, random_time_kill(rng)).acked_ops
        rounds += 1
    assert checked > 500, "the writers barely ran: the rounds proved little"


@pytest.mark.parametrize("sync", SYNC_POLICIES)
def test_acknowledged_writes_survive_sigkill_at_random_io_steps(tmp_path, sync):
    rng = random.Random(f"odds-{sync}")
    series = CrashSeries.fresh(str(tmp_path / "db"))
    for _ in range(8):
        series.run(sync, random_odds_kill(rng))
    assert series.step_hits == series.rounds, "POMAIDB_TEST_KILL_ODDS never fired"


@pytest.mark.parametrize("step", sorted(STEPS))
def test_acknowledged_writes_survive_sigkill_at_a_chosen_step(tmp_path, step):
    """Inside rotation, freeze and compaction: the kill lands at the n-th such step."""
    rng = random.Random(step)
    series = CrashSeries.fresh(str(tmp_path / "db"))
    for sync in SYNC_POLICIES:
        series.run(sync, step_kill(rng, step))
    assert series.step_hits == series.rounds, f"the writer never reached step {step}"


@pytest.mark.parametrize("step", sorted(FAULTS))
def test_acknowledged_writes_survive_a_failing_disk_then_sigkill(tmp_path, step):
    """EIO at the n-th such step, SIGKILL a moment later: what was acknowledged before or after is there."""
    rng = random.Random(step)
    series = CrashSeries.fresh(str(tmp_path / "db"))
    for sync in SYNC_POLICIES:
        series.run(sync, fault_kill(rng, step))
    assert series.step_hits == series.rounds, f"the writer never reached step {step}"
