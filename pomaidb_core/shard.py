"""A shard's state machine: sole owner of its WAL, memtables and segment list.

A host drives it (`ShardHost`: `shard_runtime.ShardThread` runs it on one
thread behind a bounded mailbox); every method but `read` runs on the host's
one shard thread. The host hands over commands in batches: `stage_write`
stages each write as one record of a WAL group, and `commit_group` writes the
group (and fsyncs it, once per group for `sync="batch"`, per write for
`"always"`) before any of its writes touches a memtable. Only a group that
reached the log under the sync policy is applied and acknowledged; if the log
refuses it, every write of the group fails and none is applied (LevelDB's
rule). The host commits the staged group before it `execute`s any other
command, so reads see every acknowledged write (read-your-writes) and never
an unacknowledged one.

Backpressure: while more than `_MAX_PENDING_GENERATIONS` frozen generations
wait to be saved, the shard is `backlogged` and the host holds writes back;
nothing on the shard thread sleeps on background work.

Freeze: the active memtables of all membranes become one frozen *generation*
covering WAL sequence numbers up to `max_seq`; the WAL rotates to a new file;
the host's background worker writes the generation's segments and sidecars;
back on the shard thread (an "install" command) the manifest commit makes them
live and records `max_seq` as covered, and only then are covered WAL files
deleted. Generations install strictly in order, so `wal_covered` never skips
unsaved records.

A failed WAL write, fsync or rotation is sticky (LevelDB's background error):
the shard refuses writes until the database is reopened.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import builder, compaction, filenames, fs, keyword_search, records, txn, wal
from .errors import ClosedError, CorruptionError, NotFoundError, PomaiError, StorageError, copy_for_caller
from .layers import LiveSegment, MembraneState, SearchParams, Snapshot, found_hits, layer_metadata, layer_text
from .mailbox import Command, resolve
from .manifest import Manifest, ManifestStore, MembraneMeta
from .memtable import Memtable
from .options import Options
from .rwlock import ReadSide, RWLock

_MAX_PENDING_GENERATIONS = 2


@dataclass
class Generation:
    """Memtables frozen together; they become segments in one manifest commit."""

    max_seq: int
    tables: dict[int, Memtable]
    waiters: list[Future] = field(default_factory=list)
    built: list[builder.BuiltSegment] | None = None
    error: BaseException | None = None
    running: bool = False


@dataclass
class CompactionJob:
    membrane_id: int
    inputs: list[LiveSegment]  # a run of adjacent segments, newest first
    at_bottom: bool  # the run holds the oldest segment: its tombstones can go
    forced: bool  # db.compact(): go on with the next run when done
    waiters: list[Future] = field(default_factory=list)
    built: builder.BuiltSegment | None = None
    error: BaseException | None = None
    done: bool = False


class ShardHost(Protocol):
    """What drives a Shard: `shard_runtime.ShardThread` in process (a Ray actor elsewhere).

    The host calls every Shard method from one thread at a time (the shard's
    thread), except `read`, which any thread may call.
    """

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on a background worker, off the shard's thread."""

    def built(self) -> None:
        """A background job ended: have the shard thread `execute` an "install" command."""


class Shard:
    def __init__(self, index: int, root: str, options: Options, store: ManifestStore,
                 catalog: dict[int, MembraneMeta], host: ShardHost,
                 allocate_segment_id: Callable[[], int], recovery: txn.Recovery) -> None:
        self.index = index
        self._recovery = recovery
        self._root = root
        self._options = options
        self._store = store
        self._catalog = catalog
        self._host = host
        self._allocate_segment_id = allocate_segment_id
        self._states: dict[int, MembraneState] = {}
        self._dropped: dict[int, str] = {}  # membrane id -> repr(name), for stale handles' errors
        self._wal: wal.WalWriter | None = None
        self._write_error: StorageError | None = None
        self._group: list[tuple[Command, Callable[[], None] | None, object]] = []
        self._prepared = txn.PreparedParts()  # logged parts of cross-shard batches, undecided
        self._parts_waiting: dict[txn.CrossShardBatch, tuple[int, Command]] = {}
        # Batches whose COMMIT is appended to the log but not yet written, with the part's
        # command when it is answered only once that is written (answer_after_commit)
        self._commits: list[tuple[txn.CrossShardBatch, Command | None]] = []
        self._unconfirmed: list[txn.CrossShardBatch] = []  # committed here, COMMIT not yet everywhere
        self._evidence = txn.Evidence()  # what replay found (txn.committed_keys)
        self._deferred_freezes: list[Future] = []  # freezes asked for while parts wait
        self._last_write = 0.0  # time.monotonic() of the last write or idle freeze attempt
        self._pending: list[Generation] = []
        self._compactions: dict[int, CompactionJob] = {}
        # Readers on other threads traverse _states under its shared side; the shard thread
        # takes the exclusive side whenever it changes what they traverse (see `read`).
        self._state_lock = RWLock()
        self._readable = False

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Recover: open the live segments, replay the WAL, then start a fresh WAL file."""
        try:
            self._recover()
        except BaseException:
            self._recovery.fail()  # the other shards stop waiting for this one's evidence
            raise
        self._readable = True

    def _recover(self) -> None:
        manifest = self._store.current
        for mid, meta in self._catalog.items():
            state = MembraneState(meta, Memtable(meta.dim))
            segments = manifest.segments.get((self.index, mid), ())
            state.set_segments([builder.open_segment(self._root, self.index, meta, s)
                                for s in segments])
            self._states[mid] = state
        covered = manifest.wal_covered[self.index]
        replay = wal.read_wal(wal.list_wal_files(self._root, self.index), covered)
        for seq, record in wal.iter_decoded(replay):
            self._replay(seq, record)
        self._evidence.held = self._prepared.keyed()
        uncommitted = self._decide_replayed(self._recovery.report(self.index, self._evidence))
        if not self._options.read_only:
            self._settle_log(replay)
            fs.makedirs(filenames.wal_dir(self._root, self.index))
            fs.makedirs(filenames.segment_dir(self._root, self.index))
            self._wal = wal.WalWriter(self._root, self.index, replay.last_seq + 1,
                                      self._options.wal_file_limit_bytes)
            self._wal.rotate()
            self._log_commits(uncommitted)
        self._recovery.logged()  # no shard freezes a recovered part before every COMMIT is written

    def _decide_replayed(self, committed: set[bytes]) -> list[bytes]:
        """Apply the replayed parts whose batch committed (txn.committed_keys), drop the others;
        the keys of those applied without a COMMIT record here."""
        uncommitted = []
        for seq in self._prepared.seqs():
            key = self._prepared.key_of(seq)
            if key is not None and key not in committed:
                self._prepared.drop(seq)
                continue
            self._commit_part(seq)  # keyless: an old PUT_PREPARED part, presumed committed
            if key is not None and key not in self._evidence.committed:
                uncommitted.append(key)
        return uncommitted

    def _log_commits(self, keys: list[bytes]) -> None:
        assert self._wal is not None
        if keys:
            for key in keys:
                self._wal.append(records.COMMIT, records.encode_commit(key))
            self._wal.commit(durable=self._options.sync != "never")

    def _replay(self, seq: int, record: records.LogRecord) -> None:
        if isinstance(record, records.Abort):
            key = self._prepared.key_of(record.prepared_seq)
            if key is not None:
                self._evidence.aborted.add(key)
            self._prepared.drop(record.prepared_seq)
            return
        if isinstance(record, records.Commit):
            self._evidence.committed.add(record.key)
            return
        target = self._states.get(record.membrane_id)
        if target is None:  # records of a dropped membrane are ignored
            return
        batch = record.batch if isinstance(record, records.PreparedPut) else record
        if isinstance(batch, records.PutBatch) and batch.vectors.shape[1] != target.meta.dim:
            raise CorruptionError(
                f"shard {self.index}: WAL record {seq} holds {batch.vectors.shape[1]}-d "
                f"vectors for membrane {target.meta.name!r} of dim {target.meta.dim}")
        if isinstance(record, records.PreparedPut):
            self._prepared.add(seq, target, record.batch, record.key, record.shards)
        else:
            self._apply(target, batch, seq)

    def _settle_log(self, replay: wal.ReplayResult) -> None:
        """Make what was replayed durable before new groups claim it as synced."""
        directory = filenames.wal_dir(self._root, self.index)
        if replay.torn_file is not None:
            wal.truncate_torn_tail(replay.torn_file, replay.torn_offset)
            for path in replay.torn_later:
                fs.unlink(path)
            fs.fsync_dir(directory)
            return
        files = wal.list_wal_files(self._root, self.index)
        if files:  # a killed writer's last groups may sit in the page cache only
            wal.sync_file(files[-1].path)

    def awaits_decisions(self) -> bool:
        """Logged parts of cross-shard batches wait for their decision (see txn.py)."""
        return bool(self._parts_waiting)

    def close(self) -> None:
        """After the host answered its queued commands: fail what waits, release the files."""
        if self._wal is not None:
            self.commit_group(sync_commits=True)
        self._fail_waiters(self._deferred_freezes, ClosedError("the database was closed"))
        try:
            if self._wal is not None:
                self._wal.close()
        except StorageError:
            pass  # every acknowledged write was already synced per its policy or is in the page cache
        for generation in self._pending:
            self._fail_waiters(generation.waiters,
                               ClosedError("the database closed before the freeze finished"))
        for job in self._compactions.values():
            self._fail_waiters(job.waiters,
                               ClosedError("the database closed before the compaction finished"))
        with self._state_lock.write():
            self._readable = False
            for state in self._states.values():
                for seg in state.segments:
                    seg.release()

    # ------------------------------------------------------------------ reads from any thread

    def read(self, kind: str, *args):
        """Run the read command `kind` on the calling thread, beside the shard's thread.

        Reads never queue behind writes, freezes, compactions or backpressure: they
        wait at most for the shard thread to finish applying one group. What they see
        includes every write acknowledged before the call.
        """
        with self._state_lock.read():
            if not self._readable:
                raise ClosedError("the database was closed; call db.open() to reopen it")
            return getattr(self, "_do_" + kind)(*args)

    @property
    def generation(self) -> int:
        """Counts the changes readers can see (RWLock.generation): equal, the same state."""
        return self._state_lock.generation

    def reading(self) -> ReadSide:
        """The shared side of the state lock, for readers of several shards at once
        (read_plan.py); `read` takes it for one command."""
        return self._state_lock.read()

    # ------------------------------------------------------------------ commands, on the shard thread

    def stage_write(self, command: Command) -> None:
        """Stage a write in the current group (answered once `commit_group` logged it)."""
        self._last_write = time.monotonic()
        try:
            if self._write_error is not None:
                # A fresh error each time: re-raising one instance would grow its traceback
                # (and keep every refused call's frames alive) with each refusal.
                raise StorageError(str(self._write_error))
            if len(self._pending) > _MAX_PENDING_GENERATIONS:  # the oldest build failed
                self._build_pending()
                raise self._backlog_error()
            apply, result = getattr(self, "_stage_" + command.kind)(*command.args)
        except BaseException as exc:
            fail(command, exc)
            return
        self._group.append((command, apply, result))
        if self._options.sync == "always":
            self.commit_group()

    def commit_group(self, sync_commits: bool = False) -> None:
        """Write the staged group to the log; apply and acknowledge it only if that worked.

        Pending COMMIT records ride along; with no group they wait for the next one
        unless `sync_commits` (a freeze waits for them, or a caller does).
        """
        if not self._group and not (self._commits and sync_commits):
            return
        group, self._group = self._group, []
        if (exc := self._write_log()) is not None:
            self._write_error = StorageError(
                f"shard {self.index}: a WAL write or fsync failed ({exc}); the writes of that "
                "group were not applied, and the shard refuses writes until the database is reopened")
            for command, _, _ in group:
                fail(command, copy_for_caller(self._write_error))
            return
        with self._state_lock.write():
            for _, apply, _ in group:
                if apply is not None:
                    apply()
        for command, _, result in group:
            if isinstance(result, _PartLogged):  # the batch's decision answers the caller
                self._parts_waiting[result.part.batch] = (result.seq, command)
                result.part.vote(None)
            else:
                resolve(command.future, result)

    def _write_log(self) -> StorageError | None:
        """Write (and sync, per policy) what was appended to the log since the last write;
        the COMMITs among it are confirmed, or unconfirmable if that failed."""
        assert self._wal is not None
        commits, self._commits = self._commits, []
        try:
            self._wal.commit(durable=self._options.sync != "never")
        except StorageError as exc:
            self._commits_written(commits, written=False)
            return exc
        self._commits_written(commits, written=True)
        return None

    def backlogged(self) -> bool:
        """Too many generations wait to be saved and the oldest is still being built."""
        return len(self._pending) > _MAX_PENDING_GENERATIONS and self._pending[0].running

    def execute(self, command: Command) -> None:
        """Run a command that is not a write (the group is committed first by the host)."""
        try:
            result = getattr(self, "_do_" + command.kind)(*command.args)
        except BaseException as exc:
            resolve(command.future, error=exc)
            return
        if result is not _DEFERRED:
            resolve(command.future, result)

    def end_drain(self) -> None:
        """After each batch of commands: log the group, run held-back freezes, freeze if full."""
        self.commit_group(sync_commits=any(command is not None for _, command in self._commits))
        if self._deferred_freezes and not self._freeze_blocked():
            waiters, self._deferred_freezes = self._deferred_freezes, []
            for waiter in waiters:
                self._do_freeze(waiter)
        elif self._deferred_freezes and (refused := self._freeze_refused()) is not None:
            self._fail_waiters(self._deferred_freezes, refused)
            self._deferred_freezes = []
        self._maybe_freeze()

    def freeze_if_idle(self) -> None:
        """No write for idle_freeze_seconds: save what a bulk load left in the memtables.

        Tried once per idle period: a freeze can be blocked (a cross-shard batch waits for a
        peer that is itself held back by backpressure), and retrying at once would spin the
        shard thread, whose GIL then starves the very builds the peer waits for.
        """
        if self.idle_wait() == 0:
            self._last_write = time.monotonic()
            self._maybe_freeze(self._options.idle_freeze_min_records)

    # ------------------------------------------------------------------ writes

    def _state(self, membrane_id: int) -> MembraneState:
        state = self._states.get(membrane_id)
        if state is None:
            state = self._read_state(membrane_id)
            self._states[membrane_id] = state
        return state

    def _read_state(self, membrane_id: int) -> MembraneState:
        """The state readers see: like _state, but never adds one (only this thread does)."""
        state = self._states.get(membrane_id)
        if state is not None:
            return state
        meta = self._catalog.get(membrane_id)
        if meta is None:
            name = self._dropped.get(membrane_id, f"with id {membrane_id}")
            raise NotFoundError(f"membrane {name} was dropped")
        return MembraneState(meta, Memtable(meta.dim))

    def _append(self, kind: int, payload: bytes) -> int:
        assert self._wal is not None, "writes are refused before reaching a read-only shard"
        return self._wal.append(kind, payload)

    def _apply(self, state: MembraneState, batch, seq: int) -> None:
        if isinstance(batch, records.PutBatch):
            state.active.put_batch(batch.ids, batch.vectors, batch.metadatas, batch.meta_blobs,
                                   batch.texts)
        else:
            state.active.delete_batch(batch.ids)
        state.active.max_seq = max(state.active.max_seq, seq)
        if self._prepared:
            self._prepared.shadow(state.meta.membrane_id, batch.ids, seq)

    # A `_stage_<kind>` appends the write's record to the group and returns
    # (how to apply it once the group is durable, the caller's result).

    def _stage_put(self, batch: records.PutBatch, payload: bytes,
                   part: txn.BatchPart | None = None) -> tuple[Callable[[], None], object]:
        state = self._state(batch.membrane_id)
        if part is None:
            seq = self._append(records.PUT_BATCH, payload)
            return functools.partial(self._apply, state, batch, seq), None
        if part.batch.decided:  # aborted without this part (its caller gave up): do not log it
            assert part.batch.error is not None
            raise copy_for_caller(part.batch.error)
        seq = self._append(records.PUT_PART, payload)
        return functools.partial(self._prepared.add, seq, state, batch), _PartLogged(part, seq)

    def _do_decide(self, cross: txn.CrossShardBatch, commit: bool,
                   error: BaseException | None) -> None:
        """The last vote of a cross-shard batch came in: apply or abort this shard's part."""
        seq, command = self._parts_waiting.pop(cross, (None, None))
        if seq is None or command is None:
            return  # this shard's part never got logged
        if commit:
            self._commit_part(seq)
            self._log_commit(cross, command)
        else:
            self._prepared.drop(seq)
            self._log_abort(seq)
            assert error is not None
            resolve(command.future, error=copy_for_caller(error))

    def _log_commit(self, cross: txn.CrossShardBatch, command: Command) -> None:
        """Append COMMIT for the next group to write; answer the part's caller now, unless the
        batch needs that record to be replayed (answer_after_commit). Until every shard's
        COMMIT is written none freezes its part."""
        assert self._wal is not None
        if len(self._unconfirmed) >= 64:  # writes alone, with no freeze due, must not grow it
            self._prune_unconfirmed()
        self._unconfirmed.append(cross)
        waiting: Command | None = command
        if not cross.answer_after_commit:
            resolve(command.future, None)
            waiting = None
        try:
            self._wal.append(records.COMMIT, records.encode_commit(cross.key))
        except StorageError:
            self._commits_written([(cross, waiting)], written=False)
            return
        self._commits.append((cross, waiting))

    def _commits_written(self, commits: list[tuple[txn.CrossShardBatch, Command | None]],
                         written: bool) -> None:
        """The batches committed whether or not their COMMIT was written (every part is
        logged, which recovery honours); an unwritten one only keeps their freezes held."""
        for cross, command in commits:
            cross.confirm(self.index, written)
            if command is not None:
                resolve(command.future, None)

    def _do_sync_commits(self) -> None:
        """Another shard's freeze waits for a batch's COMMIT here (txn.py): write it now."""
        self.commit_group(sync_commits=True)

    def _commit_part(self, seq: int) -> None:
        taken = self._prepared.take(seq)
        if taken is not None:
            state, batch = taken
            with self._state_lock.write():
                self._apply(state, batch, seq)  # type: ignore[arg-type]

    def _log_abort(self, seq: int) -> None:
        """Best effort: if the log refuses even this, replay keeps the part (outcome unknown)."""
        assert self._wal is not None
        try:
            self._wal.append(records.ABORT, records.encode_abort(seq))
            error = self._write_log()
        except StorageError as exc:
            error = exc
        if error is not None:
            self._write_error = StorageError(
                f"shard {self.index}: logging a batch abort failed ({error}); it refuses writes "
                "until the database is reopened")

    def _stage_delete(self, membrane_id: int, ids: np.ndarray) -> tuple:
        state = self._state(membrane_id)
        self.commit_group()  # liveness is read from applied state
        live = ids[np.array(state.is_live(ids.tolist()), dtype=bool)]
        return self._stage_tombstones(state, live)

    def _stage_delete_where(self, membrane_id: int, flt) -> tuple:
        state = self._state(membrane_id)
        self.commit_group()
        return self._stage_tombstones(state, state.matching_ids(flt))

    def _stage_tombstones(self, state: MembraneState, ids: np.ndarray) -> tuple:
        if self._write_error is not None:  # the commit just above failed
            raise StorageError(str(self._write_error))
        if len(ids) == 0:
            return None, 0
        batch = records.DeleteBatch(state.meta.membrane_id, ids)
        seq = self._append(records.DELETE_BATCH, records.encode_delete(batch))
        return functools.partial(self._apply, state, batch, seq), len(ids)

    def _do_drop(self, membrane_id: int, name: str) -> None:
        self._dropped[membrane_id] = repr(name)
        with self._state_lock.write():
            state = self._states.pop(membrane_id, None)
            if state is not None:
                for seg in state.segments:
                    seg.retire()

    # ------------------------------------------------------------------ reads

    def _do_get(self, membrane_id: int, ids: list[int]) -> list:
        return self._read_state(membrane_id).lookup(ids)

    def _do_exists(self, membrane_id: int, ids: list[int]) -> list[bool]:
        return self._read_state(membrane_id).is_live(ids)

    def _do_count(self, membrane_id: int) -> int:
        return self._read_state(membrane_id).count()

    def _do_rows(self, membrane_id: int) -> int:
        return self._read_state(membrane_id).rows()

    def _do_search(self, membrane_id: int, queries: np.ndarray, params: SearchParams) -> list:
        """Per query: [(score, id, metadata, text)], best first, at most k."""
        found = self._read_state(membrane_id).search(queries, params)
        return [[(score, key, layer_metadata(layer, row), layer_text(layer, row))
                 for score, key, layer, row in hits] for hits in found]

    def _do_search_found(self, membrane_id: int, queries: np.ndarray,
                         params: SearchParams) -> tuple[list, set]:
        """`search` with segment hits left undecoded (layers.found_hits): (per query its
        hits, the segments acquired for them, which the caller releases)."""
        found = self._read_state(membrane_id).search(queries, params)
        held: set = set()
        return [found_hits(hits, held) for hits in found], held

    def _do_plan_part(self, membrane_id: int, shards: int) -> tuple[int, list | None]:
        """(generation, this shard's part of the membrane's read plan or None): read_plan.py."""
        return self.generation, self._read_state(membrane_id).plan_part(shards)

    def _do_keyword_stats(self, membrane_id: int, terms: list[str]):
        """This shard's share of the BM25 corpus statistics (keyword_search.py, phase 1)."""
        return keyword_search.stats(self._read_state(membrane_id), terms)

    def _do_keyword_search(self, membrane_id: int, terms: list[str], corpus, k: int,
                           flt) -> list:
        """[(score, id, metadata, text)] of this shard's best k by BM25 (phase 2)."""
        found = keyword_search.search(self._read_state(membrane_id), terms, corpus, k, flt)
        return [(score, key, layer_metadata(layer, row), layer_text(layer, row))
                for score, key, layer, row in found]

    def _do_snapshot(self, membrane_id: int, flt) -> Snapshot:
        return Snapshot(self._read_state(membrane_id), flt)

    def _do_stats(self) -> dict:
        out = {}
        for state in self._states.values():
            out[state.meta.name] = {
                "records": state.count(),
                "memtable_records": state.active.n,
                "memtable_bytes": state.active.nbytes,
                "frozen_memtables": len(state.frozen),
                "segments": len(state.segments),
                "segment_rows": sum(s.meta.rows for s in state.segments),
                "bytes_on_disk": sum(s.meta.nbytes for s in state.segments),
                "memory_bytes": state.memory_bytes(),
            }
        return out

    def _do_verify(self) -> None:
        for state in self._states.values():
            for seg in state.segments:
                seg.reader.verify()
                builder.verify_sidecar(seg)
        manifest = self._store.current
        wal.read_wal(wal.list_wal_files(self._root, self.index), manifest.wal_covered[self.index])

    # ------------------------------------------------------------------ freeze

    def idle_wait(self) -> float | None:
        """Seconds until the memtables count as idle (0: they do); None: no idle freeze due."""
        options = self._options
        if (not options.auto_freeze or not options.idle_freeze_seconds or self._wal is None
                or sum(s.active.n for s in self._states.values()) < options.idle_freeze_min_records):
            return None
        return max(0.0, self._last_write + options.idle_freeze_seconds - time.monotonic())

    def _maybe_freeze(self, min_records: int | None = None) -> None:
        """Freeze when the memtables are full (or, when idle, hold at least `min_records`)."""
        if not self._options.auto_freeze or self._wal is None:
            return
        records_ = sum(s.active.n for s in self._states.values())
        nbytes = sum(s.active.nbytes for s in self._states.values())
        full = records_ >= self._options.memtable_limit or nbytes >= self._options.memtable_limit_bytes
        if (full or (min_records is not None and records_ >= min_records)) and not self._freeze_blocked():
            try:
                self._freeze(None)
            except StorageError:
                pass  # a failed WAL rotation is sticky: the writes that follow report it

    def _do_freeze(self, waiter: Future) -> object:
        if (refused := self._freeze_refused()) is not None:
            resolve(waiter, error=refused)
            return _DEFERRED
        if self._freeze_blocked():
            self._deferred_freezes.append(waiter)
            return _DEFERRED
        try:
            self._freeze(waiter)
        except BaseException as exc:  # the caller waits on `waiter`, not on this command
            resolve(waiter, error=exc)
        return _DEFERRED

    def _freeze_blocked(self) -> bool:
        """A freeze now would break a cross-shard batch's recovery (txn.py): parts wait for their
        decision (they are in no memtable yet), or a committed part's COMMIT is not yet written
        on every shard (a crash would find the other shards' parts without this one's). Asked
        only when a freeze is due, so it writes this shard's pending COMMITs and asks the
        other shards of each unconfirmed batch to write theirs."""
        self.commit_group(sync_commits=True)
        self._prune_unconfirmed()
        for cross in self._unconfirmed:
            cross.ask_sync()
        return bool(self._prepared) or bool(self._unconfirmed)

    def _prune_unconfirmed(self) -> None:
        self._unconfirmed = [c for c in self._unconfirmed if not c.confirmed]

    def _freeze_refused(self) -> StorageError | None:
        if any(c.unconfirmable for c in self._unconfirmed):
            return StorageError(
                f"shard {self.index}: another shard failed to log a batch's commit, so this one "
                "keeps its part in the log (no freeze) until the database is reopened")
        return None

    def _do_settled(self) -> None:
        """A batch this shard committed is confirmed everywhere, or never will be: the loop's
        end_drain runs the freezes it held, or fails them."""

    def _freeze(self, waiter: Future | None) -> None:
        assert self._wal is not None
        tables = {mid: s.active for mid, s in self._states.items() if s.active.n}
        if tables:
            # Rotate first: if it fails, the memtables stay active, where a later
            # freeze still finds them (frozen outside a generation, they would
            # be covered by the next one's wal_covered without being saved).
            self._rotate_wal()
            generation = Generation(self._wal.next_seq - 1, tables)
            with self._state_lock.write():
                for mid, table in tables.items():
                    state = self._states[mid]
                    table.frozen = True
                    state.frozen.insert(0, table)
                    state.active = Memtable(state.meta.dim)
            self._pending.append(generation)
        if waiter is not None:
            if self._pending:
                self._pending[-1].waiters.append(waiter)
            else:
                resolve(waiter)
        self._build_pending()

    def _build_pending(self) -> None:
        """(Re)start the build of every generation not being built (new or failed)."""
        for generation in self._pending:
            # A set error means its build job has ended, even if the install it
            # queued has not run yet.
            if not generation.running or generation.error is not None:
                generation.running = True
                generation.error = None
                self._host.submit(functools.partial(self._build_generation, generation))

    def _backlog_error(self) -> StorageError:
        return StorageError(
            f"shard {self.index}: {len(self._pending)} frozen memtables wait to be saved and "
            "saving the oldest failed (disk full?); writes are refused until it succeeds")

    def _rotate_wal(self) -> None:
        assert self._wal is not None
        try:
            self._wal.rotate()
        except StorageError as exc:
            # The old file's last fsync may have failed: sticky, like a failed append.
            self._write_error = StorageError(
                f"shard {self.index}: rotating the WAL failed ({exc}); it refuses writes until "
                "the database is reopened")
            raise self._write_error from exc

    def _build_generation(self, generation: Generation) -> None:
        """Background worker: write the generation's segments (no shared state touched)."""
        try:
            built = []
            for mid, table in generation.tables.items():
                meta = self._catalog.get(mid)
                if meta is None:
                    continue
                n = table.n
                built.append(builder.build_segment(
                    self._root, self.index, meta, self._allocate_segment_id(), table.ids[:n],
                    ~table.live[:n], table.vectors[:n], table.metadatas[:n], table.texts[:n]))
            fs.fsync_dir(filenames.segment_dir(self._root, self.index))
            generation.built = built
        except BaseException as exc:
            generation.error = exc
        self._host.built()

    def _do_install(self) -> None:
        self._install_generations()
        self._finish_compactions()
        for mid in list(self._states):
            self._maybe_compact(mid, None)

    def _install_generations(self) -> None:
        while self._pending:
            generation = self._pending[0]
            if generation.error is not None:
                generation.running = False
                self._fail_all_waiters(generation.error)
                return  # retried by the next freeze; later generations wait behind it
            if generation.built is None:
                return
            try:
                self._commit_generation(generation)
            except BaseException as exc:
                generation.running = False
                generation.built = None
                self._fail_all_waiters(exc)
                return
            self._pending.pop(0)
            assert self._wal is not None
            try:
                self._wal.drop_covered(generation.max_seq)
            except StorageError as exc:
                # The generation is live; a WAL file left behind holds only covered
                # records, which replay skips and the next reset deletes.
                self._fail_waiters(generation.waiters, exc)
                continue
            for waiter in generation.waiters:
                resolve(waiter)

    def _fail_all_waiters(self, error: BaseException) -> None:
        """The oldest generation failed: no freeze waiting behind it can finish either."""
        for generation in self._pending:
            self._fail_waiters(generation.waiters, error)

    @staticmethod
    def _fail_waiters(waiters: list[Future], error: BaseException) -> None:
        for waiter in waiters:
            resolve(waiter, error=copy_for_caller(error))
        waiters.clear()

    def _commit_generation(self, generation: Generation) -> None:
        shard = self.index
        built = generation.built or []

        def edit(manifest: Manifest) -> Manifest:
            live_ids = {m.membrane_id for m in manifest.membranes.values()}
            segments = dict(manifest.segments)
            for item in built:
                if item.membrane_id in live_ids:
                    key = (shard, item.membrane_id)
                    segments[key] = (item.live.meta,) + segments.get(key, ())
            covered = list(manifest.wal_covered)
            covered[shard] = generation.max_seq
            top = max((b.live.meta.segment_id for b in built), default=-1)
            return dataclasses.replace(
                manifest, segments=segments, wal_covered=tuple(covered),
                next_segment_id=max(manifest.next_segment_id, top + 1))

        self._store.commit(edit)
        with self._state_lock.write():
            for item in built:
                state = self._states.get(item.membrane_id)
                if state is None:
                    item.live.retire()
                    continue
                state.set_segments([item.live, *state.segments])
            for mid, table in generation.tables.items():
                state = self._states.get(mid)
                if state is not None:
                    state.frozen.remove(table)

    # ------------------------------------------------------------------ compaction

    def _do_compact(self, waiter: Future, membrane_id: int) -> object:
        self._maybe_compact(membrane_id, waiter, forced=True)
        return _DEFERRED

    def _maybe_compact(self, membrane_id: int, waiter: Future | None, forced: bool = False) -> None:
        state = self._states.get(membrane_id)
        running = self._compactions.get(membrane_id)
        if running is not None:
            if waiter is not None:
                running.waiters.append(waiter)
                # a db.compact() that finds an automatic merge running goes on after it
                running.forced = running.forced or forced
            return
        run = None
        if state is not None and not self._options.read_only and (forced or self._options.auto_compact):
            run = compaction.pick_run(state.segments, self._options.compaction_trigger,
                                      self._options.max_segment_rows, forced)
        if state is None or run is None:
            if waiter is not None:
                resolve(waiter)
            return
        start, end = run
        job = CompactionJob(membrane_id, [seg.acquire() for seg in state.segments[start:end]],
                            at_bottom=end == len(state.segments), forced=forced)
        if waiter is not None:
            job.waiters.append(waiter)
        self._compactions[membrane_id] = job
        self._host.submit(lambda: self._build_compaction(job, state.meta))

    def _build_compaction(self, job: CompactionJob, meta: MembraneMeta) -> None:
        try:
            ids, tombstones, vectors, metadatas, texts = compaction.merged_rows(job.inputs,
                                                                                job.at_bottom)
            if len(ids):
                job.built = builder.build_segment(
                    self._root, self.index, meta, self._allocate_segment_id(), ids,
                    tombstones, vectors, metadatas, texts)
                fs.fsync_dir(filenames.segment_dir(self._root, self.index))
        except BaseException as exc:
            job.error = exc
        job.done = True
        self._host.built()

    def _finish_compactions(self) -> None:
        for mid, job in list(self._compactions.items()):
            if not job.done:
                continue
            del self._compactions[mid]
            try:
                if job.error is not None:
                    raise job.error
                self._commit_compaction(job)
            except BaseException as exc:
                if job.built is not None:
                    # Close, never delete: a commit that failed after its rename left a
                    # manifest on disk naming these files; if not, they are orphans,
                    # removed on the next open.
                    job.built.live.reader.close()
                self._fail_waiters(job.waiters, exc)
            else:
                if job.forced and job.waiters:  # db.compact(): the next run, until none is left
                    waiters, job.waiters = job.waiters, []
                    for waiter in waiters:
                        self._maybe_compact(mid, waiter, forced=True)
                for waiter in job.waiters:
                    resolve(waiter)
            finally:
                for seg in job.inputs:
                    seg.release()

    def _commit_compaction(self, job: CompactionJob) -> None:
        shard, mid = self.index, job.membrane_id
        input_ids = {seg.meta.segment_id for seg in job.inputs}
        output = job.built

        def edit(manifest: Manifest) -> Manifest:
            key = (shard, mid)
            current = manifest.segments.get(key, ())
            if not input_ids <= {s.segment_id for s in current}:
                raise PomaiError("compaction inputs changed underneath it (membrane dropped)")
            segments = dict(manifest.segments)
            segments[key] = _replace_run(current, input_ids, output.live.meta if output else None,
                                         lambda s: s.segment_id)
            if not segments[key]:
                del segments[key]
            top = output.live.meta.segment_id if output is not None else -1
            return dataclasses.replace(manifest, segments=segments,
                                       next_segment_id=max(manifest.next_segment_id, top + 1))

        self._store.commit(edit)
        state = self._states[mid]
        with self._state_lock.write():
            state.set_segments(list(_replace_run(tuple(state.segments), input_ids,
                                                 output.live if output else None,
                                                 lambda s: s.meta.segment_id)))
            for seg in job.inputs:
                seg.retire()


_DEFERRED = object()  # the command's future is resolved later (freeze, compaction)


def _replace_run(stack: tuple, input_ids: set[int], output, segment_id) -> tuple:
    """The stack with the compacted run (adjacent, newest first) replaced by its output in place."""
    positions = [i for i, s in enumerate(stack) if segment_id(s) in input_ids]
    assert positions == list(range(positions[0], positions[0] + len(input_ids))), "a run is adjacent"
    merged = (output,) if output is not None else ()
    return stack[: positions[0]] + merged + stack[positions[-1] + 1 :]


@dataclass(frozen=True)
class _PartLogged:
    """A staged part of a cross-shard batch: once logged it votes, and waits for the decision."""

    part: txn.BatchPart
    seq: int


def _part_of(command: Command) -> txn.BatchPart | None:
    if command.kind == "put" and len(command.args) == 3:
        return command.args[2]
    return None


def vote(command: Command, error: BaseException) -> None:
    part = _part_of(command)
    if part is not None:
        part.vote(error)


def fail(command: Command, error: BaseException) -> None:
    """A write that will not be logged: answer its caller, and vote no for its batch if any."""
    resolve(command.future, error=error)
    vote(command, copy_for_caller(error))
