"""The background worker: one thread that builds segments for freezes and compactions.

One thread, because the machine PomaiDB targets has few cores and the shard
threads need them for writes and searches; jobs run in submission order, which
also keeps each shard's freezes in WAL order.

Stopping interrupts the job in progress: close() must return within about a
second even while a compaction merges millions of rows. Long loops of the
build code call `checkpoint()`, which raises `Interrupted` on a worker being
stopped (and costs one attribute read anywhere else). An interrupted job
changes nothing durable: its inputs (the WAL, the input segments) are intact,
and its half-written files are orphans that the next open removes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

_this_thread = threading.local()


class Interrupted(Exception):
    """The worker running this job is being stopped."""


def checkpoint() -> None:
    """Give up the current background job if its worker is being stopped."""
    stopping = getattr(_this_thread, "stopping", None)
    if stopping is not None and stopping.is_set():
        raise Interrupted("the database is closing")


class BackgroundWorker:
    def __init__(self) -> None:
        self._jobs: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._interrupt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pomaidb-background", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._stopping:
                return
            self._jobs.append(job)
            self._cond.notify()

    def stop(self) -> None:
        """Interrupt the job in progress, drop the queued ones (their inputs are intact)."""
        with self._cond:
            self._stopping = True
            self._interrupt.set()
            self._jobs.clear()
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        _this_thread.stopping = self._interrupt
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            job()
            # Not kept while waiting: a finished job's closure holds its inputs (a
            # compaction's retired segments, whose maps keep their unlinked files' space).
            del job
