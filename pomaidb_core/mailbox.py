"""A shard's bounded mailbox: many producers, one consumer (the shard thread).

Bounded so that a flood of writes makes callers wait (backpressure) instead of
growing memory. The shard drains up to `group_commit_max` commands at once so
it can write them with one WAL append and one sync (group commit).
Internal messages (background results, stop) skip the bound: the shard must
never wait on itself.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .errors import ClosedError


@dataclass(slots=True)
class Command:
    kind: str
    args: tuple
    future: Future = field(default_factory=Future)


class Mailbox:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._queue: deque[Command] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False

    def put(self, command: Command, block: bool = True) -> bool:
        """Queue a command, waiting while full (block) or returning False (not block)."""
        with self._lock:
            while len(self._queue) >= self._capacity and not self._closed:
                if not block:
                    return False
                self._not_full.wait()
            if self._closed:
                raise ClosedError("the database is closed")
            self._queue.append(command)
            self._not_empty.notify()
            return True

    def put_internal(self, command: Command) -> None:
        with self._lock:
            self._queue.append(command)
            self._not_empty.notify()

    def drain(self, limit: int, timeout: float | None = None) -> list[Command]:
        """Up to `limit` commands, waiting for at least one (or the timeout)."""
        with self._lock:
            if not self._queue:
                self._not_empty.wait(timeout)
            count = min(limit, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            if batch:
                self._not_full.notify_all()
            return batch

    def close(self) -> list[Command]:
        """Refuse new commands; returns those still queued (the caller fails them)."""
        with self._lock:
            self._closed = True
            leftover = list(self._queue)
            self._queue.clear()
            self._not_full.notify_all()
            self._not_empty.notify_all()
            return leftover


def resolve(future: Future, value: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
