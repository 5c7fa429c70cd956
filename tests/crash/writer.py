"""Child process of the crash tests: several threads write, and stdout says what was acknowledged.

argv: path sync version_base

Three writer threads put, overwrite, delete and put_batch across every shard;
a fourth calls freeze() and compact(). Thread t owns the ids with
id % THREADS == t, so the operations on one id are issued in one known order.
A small WAL file limit and memtable limit make every few drains rotate the
WAL, freeze, and compact, so a kill lands inside those as often as inside a put.

Stdout, one line per os.write (atomic on a pipe, and it survives the SIGKILL):

    opening                          the database is about to be opened (recovery follows)
    ready                            the membrane exists; operations follow
    I <thread> <n> P <version> <id>  op n of the thread is issued: put these ids
                                     (one or more) with vector_of(id, version)
    I <thread> <n> D <id>...         op n of the thread is issued: delete these ids
    A <thread> <n>                   op n returned: it is acknowledged
    F <thread> <n>                   op n raised StorageError (only when faults are injected)
    K <step>                         the step action fires (see STEP_ENV)

An issued operation is written before its call and acknowledged only after it
returned; anything in between, or rejected, is a "maybe" the checker accepts
both ways.

Any exception in any thread (a writer's call, freeze(), a shard thread dying)
prints its traceback to stderr and exits with EXIT_FAILED: the parent expects
death by SIGKILL only, and anything else fails the test. The one exception:
with an injected EIO, StorageError is expected; the thread that gets it says
"F" and stops (the shard refuses writes from then on) until the SIGKILL.

STEP_ENV ("<action>:<when>:<op>:<kind>:<n>", e.g. "kill:before:rename:manifest:2")
makes the child act at the n-th file-system step `op` on a file of `kind`
(see `step_name`), `when` "before" (fs fault hook) or "after" (fs observer) the
step. "<kind>@<f>" counts only the steps made inside a call of a function
named f (found on the stack: "write:wal@rotate" is the flush of the records a
drain appended before a WAL rotation), "<kind>@!<f>" only those outside.

Actions: "kill" SIGKILLs the child; "eio" (before only) makes the step fail
with EIO, a failing disk, and SIGKILLs the child a moment later; "bug" (before
only) raises RuntimeError there, an engine bug that kills the thread making
the step (the harness's own test that such a death fails the round).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
import threading
import time
import traceback

import numpy as np

import pomaidb_core as pdb
from pomaidb_core import fs

DIM = 8
THREADS = 3
ID_SPACE = 600  # small, so puts overwrite and deletes hit live records
MEMBRANE = "crash"
STEP_ENV = "POMAIDB_CRASH_STEP"
EXIT_FAILED = 70
FAULT_TO_KILL_S = 0.03  # an "eio" step action SIGKILLs the child at most this long after the failure
MAX_LIFETIME_S = 120  # a child the parent forgot never runs forever (and exits 0: a failure)
OPTIONS = dict(shards=3, memtable_limit=64, wal_file_limit_bytes=4096, compaction_trigger=3)


def vector_of(key: int, version: int) -> np.ndarray:
    return np.random.default_rng([key, version]).standard_normal(DIM).astype(np.float32)


def text_of(key: int, version: int) -> str:
    """The record's text: a term only this id holds (k<id>), so keyword search can find it."""
    return f"k{key} v{version} crash test"


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _die(what: str, error: BaseException) -> None:
    sys.stderr.write(f"{what}:\n{''.join(traceback.format_exception(error))}")
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


def step_name(op: str, path: str) -> str:
    """'<op>:<kind>' of a file-system step, e.g. 'rename:manifest', 'fsync_dir:wal', 'unlink:segment'.

    kind is the file's role (a `.tmp` file has the role of what it becomes);
    a directory is named by the role of the files it holds.
    """
    name = os.path.basename(path).removesuffix(".tmp")
    if name.endswith(".wal") or name == "wal":
        kind = "wal"
    elif name.endswith(".seg") or name == "segments":
        kind = "segment"
    elif name.endswith(".wsbr"):
        kind = "sidecar"
    elif name.startswith("MANIFEST") or name == "manifest":
        kind = "manifest"
    else:
        kind = "other"
    return f"{op}:{kind}"


class StepAction:
    """Acts at the n-th occurrence of one file-system step (installed from STEP_ENV)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.action, self.when, op, kind, count = spec.split(":")
        assert self.action == "kill" or self.when == "before", "only a step to come can fail"
        kind, _, where = kind.partition("@")
        self.target = f"{op}:{kind}"
        self.function = where.removeprefix("!")  # "": wherever the step is made
        self.outside = where.startswith("!")
        self.remaining = int(count)
        self.lock = threading.Lock()

    def install(self) -> None:
        if self.when == "before":
            fs.set_fault_hook(self._before)
        else:
            fs.set_observer(self._after)

    def _before(self, op: str, path: str) -> None:
        if op == "fsync" and os.path.isdir(path):
            op = "fsync_dir"
        self._count(step_name(op, path))

    def _after(self, op: str, *paths: str) -> None:
        self._count(step_name(op, paths[-1]))  # a rename's destination

    def _count(self, step: str) -> None:
        if step != self.target or (self.function and _called_from(self.function) == self.outside):
            return
        with self.lock:
            self.remaining -= 1
            if self.remaining != 0:
                return
        _say(f"K {self.spec}")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.action == "bug":
            raise RuntimeError("an engine bug, injected by " + STEP_ENV)
        # A crash soon after the disk failed, before a freeze can save what the failure lost.
        threading.Timer(random.uniform(0.0, FAULT_TO_KILL_S), os.kill, (os.getpid(), signal.SIGKILL)).start()
        raise OSError(errno.EIO, "injected by " + STEP_ENV)


def _called_from(function: str) -> bool:
    return any(frame.name == function for frame in traceback.extract_stack())


def write_forever(m: pdb.Membrane, thread: int, version_base: int) -> None:
    rng = random.Random(version_base * THREADS + thread)
    owned = range(thread, ID_SPACE, THREADS)
    for n in range(1 << 62):
        try:
            _write_one(m, thread, n, version_base + n, rng, owned)
        except pdb.StorageError:
            if not _faults_expected():
                raise
            _say(f"F {thread} {n}")
            return
        _say(f"A {thread} {n}")


def _write_one(m: pdb.Membrane, thread: int, n: int, version: int, rng: random.Random, owned: range) -> None:
    roll = rng.random()
    if roll < 0.35:
        key = rng.choice(owned)
        _say(f"I {thread} {n} P {version} {key}")
        m.put(key, vector_of(key, version), {"v": version}, text=text_of(key, version))
    elif roll < 0.70:
        keys = rng.sample(owned, rng.randint(2, 24))
        _say(f"I {thread} {n} P {version} " + " ".join(map(str, keys)))
        m.put_batch(keys, np.stack([vector_of(k, version) for k in keys]), [{"v": version}] * len(keys),
                    texts=[text_of(k, version) for k in keys])
    elif roll < 0.88:
        key = rng.choice(owned)
        _say(f"I {thread} {n} D {key}")
        m.delete(key)
    else:
        keys = rng.sample(owned, rng.randint(2, 8))
        _say(f"I {thread} {n} D " + " ".join(map(str, keys)))
        m.delete_batch(keys)


def maintain_forever(db: pdb.DB, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        time.sleep(rng.uniform(0.005, 0.05))
        try:
            db.freeze() if rng.random() < 0.7 else db.compact()
        except pdb.StorageError:
            if not _faults_expected():
                raise
            return


def _faults_expected() -> bool:
    return os.environ.get(STEP_ENV, "").startswith("eio:")


def _guarded(what: str, body, *args) -> None:
    try:
        body(*args)
    except BaseException as exc:
        _die(what, exc)


def main() -> None:
    path, sync, version_base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threading.excepthook = lambda hook: _die(f"thread {hook.thread.name if hook.thread else '?'} died",
                                             hook.exc_value)
    if os.environ.get(STEP_ENV):
        StepAction(os.environ[STEP_ENV]).install()
    _say("opening")
    try:
        db = pdb.open(path, sync=sync, **OPTIONS)
        m = db.get_or_create_membrane(MEMBRANE, dim=DIM, metric="l2")
    except pdb.StorageError as exc:
        if not _faults_expected():
            _die("open failed", exc)
        _say("F open")
        time.sleep(MAX_LIFETIME_S)
    except BaseException as exc:
        _die("open failed", exc)
    _say("ready")
    workers = [threading.Thread(target=_guarded, args=(f"writer {t}", write_forever, m, t, version_base),
                                daemon=True) for t in range(THREADS)]
    workers.append(threading.Thread(target=_guarded, args=("freeze/compact", maintain_forever, db, version_base),
                                    daemon=True))
    for worker in workers:
        worker.start()
    time.sleep(MAX_LIFETIME_S)


if __name__ == "__main__":
    main()
