"""One crash round: start writer.py, let it die by SIGKILL, reopen the database, check it.

How the writer dies (`Kill`):

* `after_s`: the parent SIGKILLs it that long after it said "ready" (or,
  with `before_ready`, after "opening": a kill during recovery);
* `odds`: POMAIDB_TEST_KILL_ODDS, the child kills itself at a random file-system step;
* `step`: writer.STEP_ENV, the child kills itself at the n-th occurrence of one
  file-system step (a WAL rotation, a segment or manifest rename, the unlink
  of covered WAL files, ...);
* `fault`: a failing disk (EIO at the n-th occurrence of a step), and a
  moment later the child's own SIGKILL: the calls that got StorageError are
  "maybe", every call acknowledged before or after must still be there.

The child must die of SIGKILL and of nothing else: an exit status other than
-SIGKILL, or an exit before the parent killed it, fails the round with the
child's stderr in the message (a writer that died of an exception would
otherwise pass as a crash that lost nothing).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from acked import AckedWrites, CheckCounts, LostWrite
from writer import OPTIONS, STEP_ENV

import pomaidb_core as pdb

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.py")
SYNC_POLICIES = ("always", "batch", "never")
READY_TIMEOUT_S = 30.0
STEP_DEADLINE_S = 8.0  # a child still alive then is killed by the parent (its step never came)

# Targeted steps, with how many occurrences to let pass (1..max) before the kill. writer.py's
# workload makes each many times a second; the first WAL creations are the open's.
STEPS = {
    "before:create:wal": 20,  # WAL rotation: the old file is done with, the new one not yet made
    "after:create:wal": 20,  # the new WAL file exists, its directory entry is not yet synced
    "before:write:wal": 100,  # a multi-command drain's one write()
    "before:fsync:wal": 100,
    "before:rename:segment": 20,  # freeze or compaction: the segment is written, not yet named
    "after:rename:sidecar": 20,
    "before:rename:manifest": 20,  # the commit point of a freeze or compaction
    "after:rename:manifest": 20,  # committed; the old manifest and covered WAL files still there
    "before:unlink:wal": 20,  # dropping covered WAL files after a freeze
    "after:unlink:wal": 20,
    "before:unlink:segment": 20,  # compaction inputs retired
}

# Steps that fail with EIO in a `fault` round (same format and meaning of the counts).
FAULTS = {
    "before:write:wal@!rotate": 100,  # a drain's write: none of its commands may be acknowledged
    "before:fsync:wal": 100,
    "before:create:wal": 20,  # rotation
    "before:rename:manifest": 20,  # a freeze's or compaction's commit
    "before:write:segment": 100,
}


@dataclass(frozen=True)
class Kill:
    after_s: float | None = None
    before_ready: bool = False
    odds: int | None = None
    step: str | None = None  # "<when>:<op>:<kind>:<n>"
    fault: str | None = None  # "<action>:<when>:<op>:<kind>:<n>" (writer.STEP_ENV), "eio" or "bug"
    deadline_s: float = STEP_DEADLINE_S  # for step, odds and fault: the parent's fallback SIGKILL

    @property
    def kind(self) -> str:
        if self.fault is not None:
            return "failing disk"
        return "random io step" if self.odds is not None else "chosen step" if self.step else "random time"

    def describe(self) -> str:
        if self.odds is not None:
            return f"POMAIDB_TEST_KILL_ODDS={self.odds}"
        if self.step is not None:
            return f"at step {self.step}"
        if self.fault is not None:
            return f"{self.fault}, then SIGKILL"
        return f"SIGKILL {self.after_s:.3f}s after {'opening' if self.before_ready else 'ready'}"


KILL_KINDS = ("random time", "random io step", "chosen step", "failing disk", "step not reached")


def random_kill(rng: random.Random) -> Kill:
    kind = rng.choice(KILL_KINDS[:4])
    if kind == "random io step":
        return random_odds_kill(rng)
    if kind == "chosen step":
        return step_kill(rng, rng.choice(sorted(STEPS)))
    if kind == "failing disk":
        return fault_kill(rng, rng.choice(sorted(FAULTS)))
    return random_time_kill(rng)


def random_time_kill(rng: random.Random) -> Kill:
    if rng.random() < 0.2:
        return Kill(after_s=rng.uniform(0.0, 0.05), before_ready=True)
    return Kill(after_s=rng.uniform(0.02, 0.5))


def random_odds_kill(rng: random.Random) -> Kill:
    return Kill(odds=rng.randint(100, 1500))


def step_kill(rng: random.Random, step: str) -> Kill:
    """A kill at the n-th occurrence of `step` ("<when>:<op>:<kind>", a key of STEPS), n random."""
    return Kill(step=f"{step}:{rng.randint(1, STEPS[step])}")


def fault_kill(rng: random.Random, step: str) -> Kill:
    """EIO at the n-th occurrence of `step` (a key of FAULTS), n random; SIGKILL a moment later."""
    return Kill(fault=f"eio:{step}:{rng.randint(1, FAULTS[step])}")


class WriterFailed(AssertionError):
    """The writer child died some other way than the SIGKILL the round planned."""


@dataclass
class Outcome:
    lines: list[str]
    step_hit: bool  # the child's step action or odds kill fired


def run_writer(path: str, sync: str, version_base: int, kill: Kill) -> Outcome:
    env = dict(os.environ)
    env.pop("POMAIDB_TEST_KILL_ODDS", None)
    env.pop(STEP_ENV, None)
    if kill.odds is not None:
        env["POMAIDB_TEST_KILL_ODDS"] = str(kill.odds)
    if kill.step is not None or kill.fault is not None:
        env[STEP_ENV] = kill.fault or f"kill:{kill.step}"
    child = subprocess.Popen([sys.executable, WRITER, path, sync, str(version_base)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: list[str] = []
    stderr: list[bytes] = []
    ready = threading.Event()  # the line the kill is timed from has come
    marker = b"opening\n" if kill.before_ready else b"ready\n"

    def read_stdout() -> None:
        for raw in child.stdout:
            if raw.endswith(b"\n"):
                lines.append(raw.decode())
                if raw == marker:
                    ready.set()

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: stderr.append(child.stderr.read()), daemon=True)]
    for reader in readers:
        reader.start()
    killed_by_parent = _kill(child, kill, ready)
    returncode = child.wait(timeout=60)
    for reader in readers:
        reader.join(timeout=10)
    step_hit = any(line.startswith("K ") for line in lines) or (kill.odds is not None and not killed_by_parent)
    if returncode != -signal.SIGKILL or (kill.after_s is not None and not killed_by_parent):
        how = f"exit status {returncode}" + ("" if killed_by_parent else " before the parent killed it")
        raise WriterFailed(f"the writer ({sync}, {kill.describe()}) died of {how}, not of the planned "
                           f"SIGKILL; its stderr:\n{b''.join(stderr).decode(errors='replace')}")
    return Outcome(lines, step_hit)


def _kill(child: subprocess.Popen, kill: Kill, ready: threading.Event) -> bool:
    """Wait for the planned moment and SIGKILL the child; True if the parent sent the kill."""
    if kill.after_s is None:
        try:
            child.wait(timeout=kill.deadline_s)
            return False
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            return True
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.wait(0.01) and child.poll() is None and time.monotonic() < deadline:
        pass
    try:
        child.wait(timeout=kill.after_s)
        return False  # it died on its own
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        return True


@dataclass
class CrashSeries:
    """A directory written by a series of killed writers, each followed by a check."""

    path: str
    acked: AckedWrites
    rounds: int = 0
    step_hits: int = 0

    @classmethod
    def fresh(cls, path: str) -> CrashSeries:
        return cls(path, AckedWrites())

    def run(self, sync: str, kill: Kill, keep_crashed: bool = False) -> CheckCounts:
        """One killed writer, then the check; `keep_crashed` copies the directory to `<path>.crashed` first."""
        # Versions grow from round to round: a writer makes fewer than 2**24 operations per thread.
        outcome = run_writer(self.path, sync, self.rounds << 24, kill)
        self.rounds += 1
        self.step_hits += outcome.step_hit
        for line in outcome.lines:
            self.acked.feed(line)
        if keep_crashed and os.path.isdir(self.path):
            shutil.rmtree(self.path + ".crashed", ignore_errors=True)
            shutil.copytree(self.path, self.path + ".crashed")
        # The check only reads: no freeze or compaction of the recovered memtables may commit a
        # manifest under db.verify(), which reads the current one by name (a race of its own).
        with pdb.open(self.path, **OPTIONS, auto_freeze=False, auto_compact=False) as db:
            return self.acked.check(db)


# ---------------------------------------------------------------------------- the soak

FRESH_EVERY = 50  # rounds per directory: long enough to recover recovered databases, then a new one


class SoakFailure(AssertionError):
    """A soak round lost an acknowledged write or its writer died wrongly; says how to find it again."""


@dataclass
class SoakReport:
    rounds: int = 0
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KILL_KINDS, 0))
    acked_ops: int = 0
    ids: int = 0
    lost: int = 0

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.kills.items())
        return (f"rounds: {self.rounds}; kills: {sum(self.kills.values())} ({kinds}); acknowledged "
                f"writes checked: {self.acked_ops} (id states they pinned: {self.ids}); lost: {self.lost}")


def soak(rounds: int, seed: int, syncs: tuple[str, ...], workdir: str, log=print) -> SoakReport:
    """`rounds` crash rounds with random sync policies and kills; raises SoakFailure on the first loss.

    The directory of a failed round is left in `workdir`, with a copy taken
    before the check reopened it (`<db>.crashed`).
    """
    rng = random.Random(seed)
    report = SoakReport()
    started = time.monotonic()
    series = CrashSeries.fresh(os.path.join(workdir, "db-0"))
    for index in range(rounds):
        if index and index % FRESH_EVERY == 0:
            shutil.rmtree(series.path)
            shutil.rmtree(series.path + ".crashed", ignore_errors=True)
            series = CrashSeries.fresh(os.path.join(workdir, f"db-{index}"))
        sync, kill = rng.choice(syncs), random_kill(rng)
        try:
            hits_before = series.step_hits
            counts = series.run(sync, kill, keep_crashed=True)
        except Exception as exc:  # LostWrite, WriterFailed, or a reopen that fails (CorruptionError)
            report.lost += isinstance(exc, LostWrite)
            log(report.summary())
            raise SoakFailure(f"round {index} of seed {seed} ({sync}, {kill.describe()}) failed; its directory "
                              f"is {series.path} (as the kill left it: {series.path}.crashed)\n"
                              f"{type(exc).__name__}: {exc}") from exc
        report.rounds += 1
        report.kills[kill.kind if kill.after_s is not None or series.step_hits > hits_before
                     else "step not reached"] += 1
        report.acked_ops += counts.acked_ops
        report.ids += counts.ids
        if (index + 1) % 50 == 0:
            log(f"round {index + 1}/{rounds} after {time.monotonic() - started:.0f}s: {report.summary()}")
    return report
