"""The in-process runtime of a shard: one thread and one bounded mailbox driving a `Shard`.

Other threads never touch the shard's state; they send a `Command` and wait on
its future (reads excepted: `read` runs on the caller's thread, see
`Shard.read`). The loop drains up to `group_commit_max` commands at a time,
stages every write of the drain into one WAL group and commits the group
before any other command, and at the end of the drain (the shard's group
commit).

A caller may give up on a command (an async call cancelled): a command is
marked running when the loop takes it, and one cancelled before that is
skipped; once running, cancellation can no longer reach the shard.

Backpressure: while the shard is backlogged (frozen generations wait to be
saved), writes are parked here in order (they keep their place in the
mailbox's bound) and reads go on; the "install" that saves a generation
releases them.

Closing: the stop command ends the loop; queued and parked commands are
failed, except that every logged part of a cross-shard batch first hears its
batch's decision (see `_close_parts`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from . import txn
from .errors import ClosedError, PomaiError, copy_for_caller
from .mailbox import WRITE_KINDS, Command, Mailbox, start
from .manifest import ManifestStore, MembraneMeta
from .options import Options
from .shard import Shard, fail, vote
from .worker import BackgroundWorker


class ShardThread:
    """A `ShardHost`: runs one shard's commands on its own thread, in mailbox order."""

    def __init__(self, index: int, root: str, options: Options, store: ManifestStore,
                 catalog: dict[int, MembraneMeta], worker: BackgroundWorker | None,
                 allocate_segment_id: Callable[[], int], recovery: txn.Recovery) -> None:
        self.index = index
        self._options = options
        self._worker = worker
        self.shard = Shard(index, root, options, store, catalog, self, allocate_segment_id,
                           recovery)
        self.mailbox = Mailbox(options.mailbox_capacity)
        self._parked: deque[Command] = deque()  # writes held back by backpressure, in order
        self._unstarted: list[Command] = []  # drained after the stop command: never run
        self._thread = threading.Thread(target=self._run, name=f"pomaidb-shard-{index}",
                                        daemon=True)
        self._opened: Future = Future()

    # ------------------------------------------------------------------ ShardHost

    def submit(self, job: Callable[[], None]) -> None:
        assert self._worker is not None, "a read-only shard starts no background work"
        self._worker.submit(job)

    def built(self) -> None:
        self.mailbox.put_internal(Command("install", ()))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Future:
        self._thread.start()
        return self._opened

    def request_stop(self) -> None:
        """Ask the shard to stop; `join` waits for it (all shards stop together: see _close_parts)."""
        if self._thread.is_alive():
            self.mailbox.put_internal(Command("stop", ()))

    def join(self) -> None:
        self._thread.join()

    def read(self, kind: str, *args):
        return self.shard.read(kind, *args)

    def _run(self) -> None:
        try:
            self.shard.open()
        except BaseException as exc:  # reported to DB.open, which closes everything
            self._opened.set_exception(exc)
            return
        self._opened.set_result(None)
        try:
            self._loop()
        finally:
            self._close_parts()
            self.shard.close()

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        shard = self.shard
        limit = self._options.group_commit_max
        while True:
            commands = self.mailbox.drain(limit, timeout=shard.idle_wait())
            shard.freeze_if_idle()
            for position, command in enumerate(commands):
                if command.kind == "stop":
                    shard.commit_group()
                    self._unstarted = commands[position + 1 :]  # _close_parts answers them
                    return
                if not start(command.future):  # its caller gave up before the shard took it
                    vote(command, PomaiError("the call was cancelled before its shard ran it"))
                    continue
                if command.kind in WRITE_KINDS:
                    self._write(command)
                else:
                    shard.commit_group()
                    shard.execute(command)
                    if command.kind == "install":  # saved generations may end the backlog
                        self._release_parked()
            shard.end_drain()

    def _write(self, command: Command) -> None:
        if self._parked or self.shard.backlogged():
            self._parked.append(command)
            self.mailbox.hold(1)
            return
        self.shard.stage_write(command)

    def _release_parked(self) -> None:
        while self._parked and not self.shard.backlogged():
            self.mailbox.hold(-1)
            self.shard.stage_write(self._parked.popleft())
        self.shard.commit_group()

    def _close_parts(self) -> None:
        """Fail what is queued, but let every logged part of a batch hear its decision.

        The other shards of a batch are closing at the same time and vote for
        their parts (logged, failed or cancelled), so the decisions come; leaving
        before them would let replay commit a part whose batch was aborted.
        """
        closed = ClosedError("the database was closed")
        for command in self._parked:  # taken, so already running
            fail(command, copy_for_caller(closed))
        self._parked.clear()
        leftover = [*self._unstarted, *self.mailbox.close()]
        while leftover or self.shard.awaits_decisions():
            command = leftover.pop(0) if leftover else self.mailbox.take()
            if command.kind == "decide":
                self.shard.execute(command)
            elif start(command.future):
                fail(command, copy_for_caller(closed))
            else:
                vote(command, PomaiError("the call was cancelled before its shard ran it"))
