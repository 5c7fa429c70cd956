"""Read fan-out: one search's per-shard reads spread over idle helper threads.

A search reads every shard on the calling thread (Shard.read: no mailbox, no thread hop).
Where the shards hold many rows, their kernels (which release the GIL) dominate the query,
and a machine with idle cores answers one query sooner by reading some shards on another
thread: measured on 2 cores, a 1M x 384 membrane in four 250k-row shards went from 4.3-4.6 ms
to 2.3-3.1 ms p50 with one helper. Where the shards are small the Python around the kernels
dominates, and handing work to another thread gained nothing (pypi-100k, four 25k-row
shards: 0.62-0.66 ms serial, 0.56-0.72 ms spread), hence `SPREAD_MIN_ROWS`. (Read plans,
which need no Python per segment, spread over the kernels' own threads instead: `borrow`.)

Helpers are only borrowed for cores no other search is using: with as many searches in
flight as cores (or every helper busy), a search reads its shards itself, so N caller
threads still scale with cores instead of queueing behind each other (borrowing whenever a
helper was idle cost two callers on 2 cores a quarter of their QPS: three threads, two
cores). The answer never depends on the spreading: each shard's read is
the same call, and the caller merges the results in shard order.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

SPREAD_MIN_ROWS = 200_000  # rows a membrane holds before its searches are spread
# A membrane's row count is read again after this many seconds: asking every shard costs
# about 24 us, 4% of a small membrane's query, and a stale count only delays a choice of
# speed, never changes an answer.
ROWS_TTL_SECONDS = 0.5


class Outcome(NamedTuple):
    """One shard's read: its value, or the exception it raised."""

    value: Any
    error: BaseException | None


class ReadFanout:
    """Helper threads for one DB, created on first use; `close` stops them."""

    def __init__(self, shards: int) -> None:
        self._cores = os.cpu_count() or 1
        self._helpers = max(0, min(self._cores, shards) - 1)
        self._idle = self._helpers  # helpers no search has borrowed (under _lock)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._searches = 0  # outcomes() calls in flight
        self._rows: dict[int, tuple[float, int]] = {}  # membrane id -> (read at, rows)

    @property
    def helpers(self) -> int:
        return self._helpers

    def pays(self, membrane_id: int, count: Callable[[], int]) -> bool:
        """Whether spreading the membrane's searches pays: there are helpers (so more than
        one shard) and it holds SPREAD_MIN_ROWS rows, by count() at most every
        ROWS_TTL_SECONDS."""
        if self._helpers == 0:
            return False
        now = time.monotonic()
        cached = self._rows.get(membrane_id)
        if cached is None or now - cached[0] > ROWS_TTL_SECONDS:
            cached = self._rows[membrane_id] = (now, count())
        return cached[1] >= SPREAD_MIN_ROWS

    def borrow(self, wanted: int) -> int:
        """For one search that runs its own helpers (the kernels' pool, read_plan.py): counts
        it in flight and returns how many of `wanted` helpers it may use, on the terms
        outcomes() borrows them (only cores no other search is using). The caller gives them
        back with give_back() when it ends, whatever happens."""
        with self._lock:
            self._searches += 1
            borrowed = max(0, min(wanted, self._cores - self._searches, self._idle))
            self._idle -= borrowed
            return borrowed

    def give_back(self, borrowed: int) -> None:
        with self._lock:
            self._idle += borrowed
            self._searches -= 1

    def outcomes(self, read: Callable[[int], Any], shards: int, spread: bool,
                 discard: Callable[[Any], None]) -> list[Outcome]:
        """read(shard) for every shard, in shard order; with `spread`, groups of shards run
        on the helpers idle now. Every read has ended when this returns. If the caller is
        interrupted while it waits for a helper (KeyboardInterrupt), every value read for
        it goes to discard (now, or when its helper ends), so what a read holds is let go."""
        borrowed = self.borrow(shards - 1 if spread else 0)
        try:
            groups = _groups(range(shards), borrowed + 1)
            futures: list[Future] = []
            for group in groups[1:]:
                future = self._submit(read, group)
                if future is None:  # closed meanwhile: read here (and raise ClosedError)
                    self._release()
                    futures.append(_done(_run_group(read, group)))
                else:
                    futures.append(future)
            first = _run_group(read, groups[0])
            try:
                return first + [outcome for future in futures for outcome in future.result()]
            except BaseException:
                _discard(first, discard)
                for future in futures:
                    future.add_done_callback(lambda done: _discard(done.result(), discard))
                raise
        finally:
            self.give_back(0)  # the helpers' own, each when it ends (_helper)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _release(self) -> None:
        """One borrowed helper is idle again."""
        with self._lock:
            self._idle += 1

    def _submit(self, read: Callable[[int], Any], group: Sequence[int]) -> Future | None:
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._helpers, thread_name_prefix="pomaidb-read")
            return self._pool.submit(self._helper, read, group)

    def _helper(self, read: Callable[[int], Any], group: Sequence[int]) -> list[Outcome]:
        try:
            return _run_group(read, group)
        finally:
            self._release()


def _run_group(read: Callable[[int], Any], group: Sequence[int]) -> list[Outcome]:
    out = []
    for shard in group:
        try:
            out.append(Outcome(read(shard), None))
        except BaseException as exc:  # reported to the caller once every read has ended
            out.append(Outcome(None, exc))
    return out


def _discard(outcomes: list[Outcome], discard: Callable[[Any], None]) -> None:
    for outcome in outcomes:
        if outcome.error is None:
            discard(outcome.value)


def _groups(shards: range, count: int) -> list[range]:
    """`shards` cut into `count` contiguous groups of near-equal size."""
    size, extra = divmod(len(shards), count)
    out, start = [], shards.start
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(range(start, end))
        start = end
    return out


def _done(value: list[Outcome]) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
