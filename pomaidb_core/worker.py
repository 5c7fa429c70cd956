"""The background worker: one thread that builds segments for freezes and compactions.

One thread, because the machine PomaiDB targets has few cores and the shard
threads need them for writes and searches; jobs run in submission order, which
also keeps each shard's freezes in WAL order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class BackgroundWorker:
    def __init__(self) -> None:
        self._jobs: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pomaidb-background", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._stopping:
                return
            self._jobs.append(job)
            self._cond.notify()

    def stop(self) -> None:
        """Finish the job in progress, drop the queued ones (their inputs are still in the WAL)."""
        with self._cond:
            self._stopping = True
            self._jobs.clear()
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            job()
