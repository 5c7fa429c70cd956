"""A shard's bounded mailbox: many producers, one consumer (the shard thread).

Bounded so that a flood of writes makes callers wait (backpressure) instead of
growing memory. The shard drains up to `group_commit_max` commands at once so
it can write them with one WAL append and one sync (group commit).
Internal messages (background results, stop) skip the bound: the shard must
never wait on itself. Writes the shard holds back under backpressure still
count against the bound for new writes (`hold`), but not for reads, which the
shard keeps answering meanwhile.
"""

from __future__ import annotations

import _thread
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from .errors import ClosedError

WRITE_KINDS = frozenset({"put", "delete", "delete_where"})


class Reply:
    """A one-shot result for one blocking caller: a bare lock, far cheaper than a Future.

    Same surface as concurrent.futures.Future for what the shard uses (set_result,
    set_exception, done) and for the caller (result, called exactly once).
    """

    __slots__ = ("_done", "_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_running_or_notify_cancel(self) -> bool:
        return True  # a blocking caller cannot cancel

    def set_result(self, value: Any) -> None:
        if self._done:
            return
        self._value = value
        self._done = True
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        if self._done:
            return
        self._error = error
        self._done = True
        self._lock.release()

    def result(self) -> Any:
        self._lock.acquire()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass(slots=True)
class Command:
    kind: str
    args: tuple
    future: Future | Reply = field(default_factory=Future)


class Mailbox:
    """SimpleQueue (C, lock-free for the common case) plus a bound checked by producers.

    The bound is enforced on the slow path only: a producer that finds the queue
    full waits on a condition that the consumer signals after each drain.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._space = threading.Condition()
        self._waiting = 0  # producers blocked on a full mailbox
        self._held = 0  # writes taken out of the queue but held back by the consumer
        self._closed = False

    def put(self, command: Command, block: bool = True) -> bool:
        """Queue a command, waiting while full (block) or returning False (not block)."""
        held = self._held if command.kind in WRITE_KINDS else 0
        if self._queue.qsize() + held >= self._capacity and not self._wait_for_space(held, block):
            return False
        if self._closed:
            raise ClosedError("the database is closed")
        self._queue.put(command)
        if self._closed:  # closed while we queued: nobody will run it
            resolve(command.future, error=ClosedError("the database is closed"))
        return True

    def _wait_for_space(self, held: int, block: bool) -> bool:
        with self._space:
            while self._queue.qsize() + (held and self._held) >= self._capacity and not self._closed:
                if not block:
                    return False
                self._waiting += 1
                try:
                    self._space.wait(0.05)  # the timeout covers a notify that raced ahead
                finally:
                    self._waiting -= 1
        return True

    def put_internal(self, command: Command) -> None:
        self._queue.put(command)

    def hold(self, delta: int) -> None:
        """The consumer holds back (+) or releases (-) writes it has taken."""
        self._held += delta
        if delta < 0 and self._waiting:
            with self._space:
                self._space.notify_all()

    def drain(self, limit: int, timeout: float | None = None) -> list[Command]:
        """Up to `limit` commands, waiting for at least one (or `timeout` seconds: then [])."""
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if self._waiting:
            with self._space:
                self._space.notify_all()
        return batch

    def take(self) -> Command:
        """The next command, waiting for one (the consumer, after close: see Shard._close_parts)."""
        return self._queue.get()

    def close(self) -> list[Command]:
        """Refuse new commands; returns those still queued (the caller fails them)."""
        self._closed = True
        leftover = []
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._space:
            self._space.notify_all()
        return leftover


def start(future: Future | Reply) -> bool:
    """Mark a command running; False if its caller cancelled it first (then skip it).

    From here on a cancel can no longer succeed, so resolving it cannot race one.
    """
    return future.set_running_or_notify_cancel()


def resolve(future: Future | Reply, value: Any = None, error: BaseException | None = None) -> None:
    try:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass  # cancelled between done() and here: nobody waits for it any more
