"""Failing disks for pomaidb_core.fs's fault hook: one step, chosen by kind and position, fails.

Writes, creates and directory creation fail with ENOSPC (a full disk); fsync,
rename, unlink and truncate fail with EIO (a dying one), the way LevelDB's and
SQLite's IO-error tests fail them.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pomaidb_core import fs

ERRNO = {"write": errno.ENOSPC, "create": errno.ENOSPC, "open": errno.ENOSPC,
         "mkdir": errno.ENOSPC, "fsync": errno.EIO, "rename": errno.EIO, "unlink": errno.EIO,
         "truncate": errno.EIO}


def failure(op: str, path: str) -> OSError:
    code = ERRNO[op]
    return OSError(code, os.strerror(code), path)


@dataclass
class FailingDisk:
    """Fails the `nth` step (1-based) for which `match(op, path)` holds; counts every step.

    `match` sees every step in order, so it may keep state (see `after`).
    With `repeat`, every matching step from the nth on fails: a disk that stays full.
    """

    match: Callable[[str, str], bool]
    nth: int = 1
    repeat: bool = False
    seen: int = 0
    fired: list[tuple[str, str]] = field(default_factory=list)
    steps: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FailingDisk:
        fs.set_fault_hook(self)
        return self

    def __exit__(self, *exc: object) -> None:
        fs.set_fault_hook(None)

    def __call__(self, op: str, path: str) -> None:
        with self._lock:
            self.steps += 1
            if not self.match(op, path):
                return
            self.seen += 1
            if self.seen < self.nth or (self.fired and not self.repeat):
                return
            self.fired.append((op, path))
        raise failure(op, path)


def step(op: str, pattern: str) -> Callable[[str, str], bool]:
    """Matches steps of kind `op` on a path matching the regular expression `pattern`."""
    regex = re.compile(pattern)
    return lambda o, p: o == op and regex.search(p) is not None


def after(first: Callable[[str, str], bool], then: Callable[[str, str], bool]):
    """Matches `then` steps that come after a `first` step (the WAL reset's directory fsync)."""
    armed = [False]

    def match(op: str, path: str) -> bool:
        if first(op, path):
            armed[0] = True
            return False
        return armed[0] and then(op, path)

    return match


def nth_step(n: int) -> FailingDisk:
    """Fails the n-th mutating step of any kind (the SQLite IO-error sweep)."""
    return FailingDisk(lambda op, path: op in ERRNO, nth=n)
