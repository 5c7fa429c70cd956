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
    K <step>                         the step killer fires (see STEP_ENV)

An issued operation is written before its call and acknowledged only after it
returned; anything in between is a "maybe" the checker accepts both ways.

Any exception in any thread (a writer's call, freeze(), a shard thread dying)
prints its traceback to stderr and exits with EXIT_FAILED: the parent expects
death by SIGKILL only, and anything else fails the test.

STEP_ENV ("<action>:<when>:<op>:<kind>:<n>", e.g. "kill:before:rename:manifest:2")
makes the child act at the n-th file-system step `op` on a file of `kind`
(see `step_name`), `when` "before" (fs fault hook) or "after" (fs observer) the
step: "kill" SIGKILLs itself, "eio" raises OSError(EIO) there (the harness's
own test that a writer dying of an exception fails the round).
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
MAX_LIFETIME_S = 120  # a child the parent forgot never runs forever (and exits 0: a failure)
OPTIONS = dict(shards=3, memtable_limit=64, wal_file_limit_bytes=4096, compaction_trigger=3)


def vector_of(key: int, version: int) -> np.ndarray:
    return np.random.default_rng([key, version]).standard_normal(DIM).astype(np.float32)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _die(what: str) -> None:
    sys.stderr.write(f"{what}:\n{traceback.format_exc()}")
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
        self.target = f"{op}:{kind}"
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
        if step != self.target:
            return
        with self.lock:
            self.remaining -= 1
            if self.remaining != 0:
                return
        _say(f"K {self.spec}")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.EIO, "injected by " + STEP_ENV)


def write_forever(m: pdb.Membrane, thread: int, version_base: int) -> None:
    rng = random.Random(version_base * THREADS + thread)
    owned = range(thread, ID_SPACE, THREADS)
    for n in range(1 << 62):
        version = version_base + n
        roll = rng.random()
        if roll < 0.35:
            key = rng.choice(owned)
            _say(f"I {thread} {n} P {version} {key}")
            m.put(key, vector_of(key, version), {"v": version})
        elif roll < 0.70:
            keys = rng.sample(owned, rng.randint(2, 24))
            _say(f"I {thread} {n} P {version} " + " ".join(map(str, keys)))
            m.put_batch(keys, np.stack([vector_of(k, version) for k in keys]),
                        [{"v": version}] * len(keys))
        elif roll < 0.88:
            key = rng.choice(owned)
            _say(f"I {thread} {n} D {key}")
            m.delete(key)
        else:
            keys = rng.sample(owned, rng.randint(2, 8))
            _say(f"I {thread} {n} D " + " ".join(map(str, keys)))
            m.delete_batch(keys)
        _say(f"A {thread} {n}")


def maintain_forever(db: pdb.DB, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        time.sleep(rng.uniform(0.005, 0.05))
        if rng.random() < 0.7:
            db.freeze()
        else:
            db.compact()


def _guarded(what: str, body, *args) -> None:
    try:
        body(*args)
    except BaseException:
        _die(what)


def main() -> None:
    path, sync, version_base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threading.excepthook = lambda hook: _die(f"thread {hook.thread.name if hook.thread else '?'} died")
    if os.environ.get(STEP_ENV):
        StepAction(os.environ[STEP_ENV]).install()
    _say("opening")
    try:
        db = pdb.open(path, sync=sync, **OPTIONS)
        m = db.get_or_create_membrane(MEMBRANE, dim=DIM, metric="l2")
    except BaseException:
        _die("open failed")
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
