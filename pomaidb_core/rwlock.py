"""A readers-writer lock that prefers its writer.

Each shard has one: caller threads read its state under the shared side, and
the shard thread (its only writer) takes the exclusive side for the short
moments it changes what readers traverse (applying a group, swapping memtables,
installing segments). A waiting writer holds back new readers, so a stream of
searches cannot starve the writes. `generation` counts the exclusive sections: a reader
that saw the same value before holds the same state (read_plan.py relies on it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    def __init__(self) -> None:
        # Readers take the mutex itself, not the Condition's Python-level __enter__ and
        # __exit__: a search takes this lock once per shard.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._read_side = ReadSide(self)
        # Bumped as each exclusive section begins, so it differs from any value a reader saw
        # before the section's changes; read without the mutex (an int read is atomic).
        self.generation = 0

    def read(self) -> ReadSide:
        """The shared side, as a context manager (a search takes it once per shard: a
        generator-based one cost more than the lock itself)."""
        return self._read_side

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
            self.generation += 1
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class ReadSide:
    """RWLock.read(): holds no state of its own, so every reader shares one."""

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        lock._mutex.acquire()
        try:
            while lock._writing or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1
        finally:
            lock._mutex.release()

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        lock._mutex.acquire()
        try:
            lock._readers -= 1
            if not lock._readers and lock._writers_waiting:  # only a writer waits for readers
                lock._cond.notify_all()
        finally:
            lock._mutex.release()
