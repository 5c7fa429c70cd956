"""One shard of a Ray-backed database: a Ray actor that owns a single-shard directory on its node.

The actor opens `<path>/ray-<i>-of-<n>/` with the in-process engine (`DB` with
shards=1: one `ShardThread` driving one `Shard` state machine, which replays
the WAL right here in `__init__`), so every write and read takes the same path
as in process; this module only adds what crossing processes needs:

- Replies are `(True, value)` or `(False, exception)`, so a caller re-raises the
  engine's own `PomaiError` instead of Ray's wrapper.
- A put travels as its WAL payload alone (records.py), one bytes object that
  Ray copies without pickling record by record; the actor decodes the batch
  from it, as replay would, instead of receiving every vector twice.
- Writes carry a request id; a retried request (the caller lost the reply)
  gets the first answer instead of running twice, for as long as the actor
  lives. After a restart the id is forgotten, and the retry runs again: puts
  and deletes are idempotent in what they leave (a retried delete may then
  count 0).
- A put spanning shards is prepared here and decided by the client (two-phase
  commit over txn.py): the part is logged as a PUT_PART naming this shard and
  the client, and the shard votes; the client's decision is the second vote.
  Replay applies the part only if this shard logged its COMMIT; a commit that a
  restart cut short is answered UNKNOWN, and the client writes the batch again.
- The actor is threaded (`max_concurrency`), so concurrent callers meet in the
  shard's mailbox and share one WAL group commit; reads run beside the shard
  thread under its read lock.

On disk, beside each shard directory: `ray-<i>-of-<n>.host`, UTF-8 text, the
name of the host (custom resource `pomaidb_host:<name>`) the shard is pinned
to, written once when the shard is created (temporary file, fsync, rename) so
that placement finds its files again after a restart.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from . import filenames, fs, records, txn
from .db import DB
from .errors import ClosedError, InvalidArgumentError, PomaiError, copy_for_caller
from .manifest import MembraneMeta
from .options import IndexParams, Options

_SHARD_DIR = re.compile(r"^ray-(\d+)-of-(\d+)$")
_CLIENT = 1  # the client's vote on a prepared part (the shard itself votes as shard 0)
UNKNOWN = "unknown"  # decide's answer when a restart lost the part: write the batch again
_REMEMBERED_REQUESTS = 4096
_DECISION_WAIT_SECONDS = 120.0  # a client that never decides: presume commit, as replay would


def shard_directory(path: str, index: int, count: int) -> str:
    return os.path.join(path, f"ray-{index}-of-{count}")


def host_file(path: str, index: int, count: int) -> str:
    return shard_directory(path, index, count) + ".host"


def shards_on_disk(path: str, host: str | None) -> list[tuple[int, int]]:
    """(index, count) of each shard of `path` whose files this node holds for `host`.

    Run on that node; host None: every shard directory here.
    """
    found = []
    for name in fs.listdir(path) if fs.is_dir(path) else []:
        match = _SHARD_DIR.match(name)
        if match is None:
            continue
        index, count = int(match[1]), int(match[2])
        marker = host_file(path, index, count)
        if host is None or (fs.exists(marker) and fs.read_file(marker).decode("utf-8") == host):
            found.append((index, count))
    return found


def _refuse_another_count(path: str, count: int) -> None:
    """A database made with n shards is never reopened with another n (routing would move keys)."""
    for name in fs.listdir(path):
        if name.startswith("ray-") and not name.endswith(f"-of-{count}") and ".host" not in name:
            raise InvalidArgumentError(
                f"{path} holds shards of a Ray database with another shard count ({name}); "
                "open it with that count (shards=None attaches to running shards)")


class _ClientDecides(txn.CrossShardBatch):
    """A cross-shard batch as one shard sees it: its own vote, then the client's decision."""

    # The client logs nothing, so only this shard's COMMIT makes its part replayable
    answer_after_commit = True

    def __init__(self, tell: Any) -> None:
        super().__init__([0, _CLIENT], tell)
        self.voted = threading.Event()
        self.vote_error: BaseException | None = None
        self.answer: Any = None  # the put's reply, answered once the decision is applied
        self.deadline = float("inf")  # once voted: when to presume the client's commit

    def vote(self, shard: int, error: BaseException | None) -> None:
        if shard == 0:
            self.vote_error = error
            self.voted.set()
        super().vote(shard, error)


class ShardActor:
    """Made a Ray actor class by ray_backend (`ray.remote(...)`); every method answers an outcome."""

    def __init__(self, path: str, index: int, count: int, host: str | None, options: Options) -> None:
        self.index = index
        self._db = DB(shard_directory(path, index, count), dataclasses.replace(options, shards=1))
        # An error here is answered to every call (Ray would neither restart nor explain it).
        self._open_error: PomaiError | None = None
        try:
            fs.makedirs(path)
            _refuse_another_count(path, count)
            self._db.open()  # replays this shard's WAL
            if host is not None and not fs.exists(host_file(path, index, count)):
                _write_host_file(host_file(path, index, count), host)
        except PomaiError as exc:
            self._open_error = exc
        self._answers: OrderedDict[str, Future] = OrderedDict()
        self._batches: dict[str, _ClientDecides] = {}
        self._lock = threading.Lock()
        self._graph_owner: str | None = None  # the client whose compiled graph runs here
        self._stopped = threading.Event()
        threading.Thread(target=self._presume_commits, name="pomaidb-ray-decisions",
                         daemon=True).start()

    # ------------------------------------------------------------------ reads

    def ping(self) -> tuple[bool, Any]:
        return self._outcome(lambda: self.index)

    def node_id(self) -> str:
        """The Ray node hosting this shard (for operators and placement tests)."""
        import ray  # only here: the rest of this module runs without ray (tests, tools)

        return ray.get_runtime_context().get_node_id()

    def read(self, kind: str, args: tuple) -> tuple[bool, Any]:
        return self._outcome(lambda: self._db._read(0, kind, *args))

    def scan(self, membrane_id: int, flt: Any) -> tuple[bool, Any]:
        return self._outcome(lambda: list(self._db._read(0, "snapshot", membrane_id, flt).records()))

    def catalog(self) -> tuple[bool, Any]:
        return self._outcome(lambda: dict(self._db._store.current.membranes))

    def stats(self) -> tuple[bool, Any]:
        return self._outcome(lambda: self._db._call(0, "stats"))

    def verify(self) -> tuple[bool, Any]:
        return self._outcome(self._db.verify)

    def claim_graph(self, owner: str) -> tuple[bool, Any]:
        """May client `owner` compile its search graph on this actor? Ray runs one compiled
        graph per actor, and compiling another one waits forever (ray_backend.py): the first
        client to ask gets it until it releases it (or this actor restarts)."""
        with self._lock:
            if self._graph_owner in (None, owner):
                self._graph_owner = owner
                return True, True
            return True, False

    def release_graph(self, owner: str) -> None:
        with self._lock:
            if self._graph_owner == owner:
                self._graph_owner = None

    # ------------------------------------------------------------------ writes

    def write(self, request_id: str, kind: str, args: tuple) -> tuple[bool, Any]:
        """put (args: its PUT_BATCH payload), delete or delete_where, once per request id."""
        if kind == "put":
            return self._once(request_id, lambda: self._db._call(0, kind, *_put_args(args[0])))
        return self._once(request_id, lambda: self._db._call(0, kind, *args))

    def maintain(self, kind: str) -> tuple[bool, Any]:
        """freeze or compact: what `DB.freeze`/`DB.compact` do, on this shard."""
        return self._outcome(getattr(self._db, kind))

    def prepare(self, batch_id: str, payload: bytes) -> tuple[bool, Any]:
        """Log this shard's part of a cross-shard batch (its PUT_PART payload) and vote; the
        client decides later."""
        return self._outcome(lambda: self._prepare(batch_id, payload))

    def _prepare(self, batch_id: str, payload: bytes) -> None:
        with self._lock:
            batch = self._batches.get(batch_id)
            fresh = batch is None
            if batch is None:  # not a retry
                batch = self._batches[batch_id] = _ClientDecides(self._db._tell_shards)
        if fresh:
            try:  # outside the lock: a full mailbox makes this wait
                part, local = _local_part(payload, batch.key)
                batch.answer = self._db._submit(0, "put", part, local, txn.BatchPart(batch, 0))
            except BaseException:
                with self._lock:
                    self._batches.pop(batch_id, None)
                raise
        if not batch.voted.wait(_DECISION_WAIT_SECONDS):
            raise PomaiError(f"shard {self.index} could not log its part of a batch in time")
        if batch.vote_error is not None:
            raise copy_for_caller(batch.vote_error)
        batch.deadline = time.monotonic() + _DECISION_WAIT_SECONDS

    def decide(self, batch_id: str, commit: bool, error: BaseException | None) -> tuple[bool, Any]:
        """The client's vote on a prepared part; answers once the shard applied or aborted it."""
        with self._lock:
            batch = self._batches.pop(batch_id, None)
        if batch is None:  # prepared before a restart: its part is applied only if committed
            return True, UNKNOWN if commit else None
        if commit:
            batch.vote(_CLIENT, None)
            batch.confirm(_CLIENT, True)  # the client logs nothing: only this shard's COMMIT counts
        else:
            batch.abandon(error or PomaiError("the batch was aborted"))
        return self._outcome(batch.answer.result)

    def _presume_commits(self) -> None:
        """A client that vanished between its votes: commit its parts (it may have committed
        on other shards, and it acknowledged nothing either way).

        Until then the part blocks this shard's freezes (txn.py), so it must not wait forever.
        """
        while not self._stopped.wait(1.0):
            now = time.monotonic()
            with self._lock:
                expired = [key for key, batch in self._batches.items()
                           if batch.voted.is_set() and batch.deadline < now]
                batches = [self._batches.pop(key) for key in expired]
            for batch in batches:
                batch.vote(_CLIENT, None)
                batch.confirm(_CLIENT, True)

    # ------------------------------------------------------------------ catalog

    def create_membrane(self, name: str, dim: int, metric: str, index: IndexParams | None
                        ) -> tuple[bool, Any]:
        return self._outcome(lambda: self._db.create_membrane(name, dim, metric, index).meta)

    def adopt_membrane(self, meta: MembraneMeta) -> tuple[bool, Any]:
        return self._outcome(lambda: self._db._adopt_membrane(meta))

    def drop_membrane(self, name: str) -> tuple[bool, Any]:
        def drop() -> None:
            if name in self._db._store.current.membranes:
                self._db.drop_membrane(name)
        return self._outcome(drop)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Abort the undecided batches and close the directory (then the client kills the actor)."""
        with self._lock:
            batches, self._batches = list(self._batches.values()), {}
        self._stopped.set()
        for batch in batches:
            batch.abandon(ClosedError("the database was shut down"))
        self._db.close()

    def _outcome(self, run: Any) -> tuple[bool, Any]:
        try:
            if self._open_error is not None:
                raise copy_for_caller(self._open_error)
            return True, run()
        except PomaiError as exc:
            return False, exc

    def _once(self, request_id: str, run: Any) -> tuple[bool, Any]:
        with self._lock:
            answer = self._answers.get(request_id)
            first = answer is None
            if first:
                answer = self._answers[request_id] = Future()
                while len(self._answers) > _REMEMBERED_REQUESTS:
                    self._answers.popitem(last=False)
        assert answer is not None
        if first:
            answer.set_result(self._outcome(run))
        return answer.result()




def _put_args(payload: bytes) -> tuple[records.PutBatch, bytes]:
    """The engine's put arguments (batch, payload) from the payload alone."""
    batch = records.decode(records.PUT_BATCH, payload)
    assert isinstance(batch, records.PutBatch)
    return batch, payload


def _local_part(payload: bytes, key: bytes) -> tuple[records.PutBatch, bytes]:
    """The part's batch, and the client's PUT_PART payload re-keyed for this shard's own
    log (records.py layout).

    Each shard actor recovers by itself: its part names this shard (0) and the client (1),
    which logs nothing, so replay applies the part only if this shard logged its COMMIT.
    A commit decision that a restart cut short is answered UNKNOWN: the client writes the
    whole batch again.
    """
    shards = int.from_bytes(payload[records.BATCH_KEY_BYTES : records.BATCH_KEY_BYTES + 2], "little")
    put_payload = payload[records.BATCH_KEY_BYTES + 2 + 2 * shards :]
    batch, _ = _put_args(put_payload)
    return batch, records.encode_part(key, [0, _CLIENT], put_payload)


def _write_host_file(path: str, host: str) -> None:
    tmp = filenames.tmp_path(path)
    fs.write_file(tmp, host.encode("utf-8"))
    fs.rename(tmp, path)
    fs.fsync_dir(os.path.dirname(path))
