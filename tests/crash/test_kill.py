"""Crash tests: SIGKILL a writer at random moments, reopen, compare with what it acknowledged.

After every kill: each acknowledged put is present with its exact vector unless
an acknowledged delete followed it; nothing appears that was never written.
The same directory is reused across rounds, so recovery of a recovered
database (torn tails truncated, new WAL files) is exercised too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pomaidb_core as pdb

WRITER = os.path.join(os.path.dirname(__file__), "writer.py")
sys.path.insert(0, os.path.dirname(__file__))
from writer import vector_of  # noqa: E402


class Acked:
    """What the child acknowledged, newest state per id."""

    def __init__(self) -> None:
        self.live: set[int] = set()
        self.deleted: set[int] = set()
        self.maybe_deleted: set[int] = set()  # delete issued, never acknowledged
        self.highest = -1

    def feed(self, line: str) -> None:
        kind, *keys = line.split()
        for key in map(int, keys):
            if kind == "put":
                self.live.add(key)
                self.deleted.discard(key)
                self.highest = max(self.highest, key)
            elif kind == "del":
                self.live.discard(key)
                self.deleted.add(key)
                self.maybe_deleted.discard(key)
            elif kind == "try-del":
                self.maybe_deleted.add(key)


def _run_child(path, sync, start, mode, env, kill_after: float | None) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, WRITER, str(path), sync, str(start), mode],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    if kill_after is not None:
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    reader.join(timeout=10)
    return [line for line in lines if line.startswith(("put", "del", "try-del"))]


def _verify(path, acked: Acked, ceiling: int) -> None:
    with pdb.open(path, shards=3) as db:
        if "crash" not in db.membranes():
            assert not acked.live
            return
        m = db.membrane("crash")
        must_live = sorted(acked.live - acked.maybe_deleted)
        for key, record in zip(must_live, m.get_batch(must_live)):
            assert record is not None, f"acknowledged put {key} is missing"
            np.testing.assert_array_equal(record.vector, vector_of(key))
            assert record.metadata == {"k": key}
        gone = sorted(acked.deleted)
        for key, record in zip(gone, m.get_batch(gone)):
            assert record is None, f"acknowledged delete {key} came back"
        present = {r.id for r in m.scan()}
        assert all(key < ceiling for key in present), "a record that was never written appeared"
        assert acked.live - acked.maybe_deleted <= present
        # Whatever survived is the newest state: unacknowledged deletes are settled now.
        acked.live &= present
        acked.maybe_deleted.clear()
        if acked.live:
            probe = min(acked.live)
            hits = m.search(vector_of(probe), k=1, exact=True)
            assert hits and hits[0].id == probe
        db.verify()


@pytest.mark.parametrize("sync", ["always", "batch", "never"])
def test_acknowledged_writes_survive_sigkill(tmp_path, sync):
    rng = random.Random(hash(sync) & 0xFFFF)
    path = tmp_path / "db"
    acked = Acked()
    env = dict(os.environ)
    env.pop("POMAIDB_TEST_KILL_ODDS", None)
    rounds = 20
    for round_ in range(rounds):
        start = round_ * 1_000_000
        mode = "freeze" if round_ % 2 else "plain"
        for line in _run_child(path, sync, start, mode, env, kill_after=rng.uniform(0.02, 0.6)):
            acked.feed(line)
        _verify(path, acked, ceiling=start + 1_000_000)


@pytest.mark.parametrize("sync", ["batch", "never"])
def test_random_io_step_kills_during_freeze_and_compaction(tmp_path, sync):
    """POMAIDB_TEST_KILL_ODDS kills the writer at a random file-system step."""
    path = tmp_path / "db"
    acked = Acked()
    env = dict(os.environ, POMAIDB_TEST_KILL_ODDS="400")
    for round_ in range(8):
        start = round_ * 1_000_000
        for line in _run_child(path, sync, start, "freeze", env, kill_after=None):
            acked.feed(line)
        _verify(path, acked, ceiling=start + 1_000_000)
