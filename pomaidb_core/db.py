"""The DB facade: opening a directory, the membrane catalog, and fan-out to shards.

`DB(path, options)` only validates (design doc 002: constructors do no fallible
IO); `open()` refuses a directory that is not absent, empty or a database
(marker.py), takes the LOCK, loads the manifest, removes orphans, and starts
one actor per shard, which replays its WAL. Every public call is thread-safe:
calls turn into commands on shard mailboxes; the DB itself guards only the
membrane catalog and its own lifecycle with a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from . import fanout, filenames, fs, marker, read_plan, txn
from .errors import (
    AlreadyExistsError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    NotFoundError,
    PomaiError,
    ReadOnlyError,
    StorageError,
)
from .mailbox import Command, Mailbox, Reply
from .manifest import Manifest, ManifestStore, MembraneMeta
from .membrane import Membrane
from .options import METRICS, IndexParams, Options
from .shard_runtime import ShardThread
from .worker import BackgroundWorker

MAX_MEMBRANE_NAME_BYTES = 128
_READ_ONLY_ATTEMPTS = 20
MAX_DIM = 65536


class DB:
    """An embedded vector database in one directory: membranes of records, spread over shards.

    `DB(path, options, **overrides)` only validates its arguments; `open()` (or
    `pomaidb_core.open(path, ...)`, or `with DB(...) as db:`) does the IO. Every method is
    thread-safe, and a DB may be shared by threads and coroutines alike. One process at a time
    may open a directory for writing (`LockedError` otherwise); any number may open it with
    `read_only=True` for a consistent snapshot.

    Args:
        path: the database directory; created by `open()` if missing.
        options: an `Options`; any of its fields may also be given as a keyword.
    """

    def __init__(self, path: str | os.PathLike, options: Options | None = None, **kwargs: Any):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise InvalidArgumentError("path must be a non-empty str or os.PathLike")
        self.path = os.path.abspath(os.fspath(path))
        self.options = Options.merged(options, kwargs)
        self._lock = threading.RLock()
        self._opened = False
        self._closed = False
        self._shards: list[ShardThread] = []
        self._fanout = fanout.ReadFanout(0)  # an open DB's: spreads each search's shard reads
        self._plans: dict[int, read_plan.ReadPlan] = {}  # membrane id -> its latest read plan
        self._catalog: dict[int, MembraneMeta] = {}
        self._membranes: dict[str, Membrane] = {}
        self._worker: BackgroundWorker | None = None
        self._file_lock: fs.FileLock | None = None
        self._store = ManifestStore(self.path)
        self._segment_ids = itertools.count()
        self._segment_id_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> DB:
        """Create or open the directory, replay the write-ahead logs, start the shards.

        Returns this DB, so `db = DB(path).open()` works. Opening an open DB does nothing; a
        closed DB opens again (new shards replay the WAL, a writer takes the LOCK again, and
        the path and options stay what they were).

        Raises:
            LockedError: another writer holds the directory.
            CorruptionError: a file fails its checksum (nothing is repaired implicitly).
            NotFoundError: `read_only=True` and there is no database at `path`.
            InvalidArgumentError: `path` holds files that are not a PomaiDB database.
        """
        with self._lock:
            if self._opened and not self._closed:
                return self
            if self._closed:
                self._forget_closed_state()
            _refuse_a_file_path(self.path)
            try:
                self._open_retrying()
            except StorageError as exc:
                hint = _storage_hint(self.path, exc, self.options.read_only)
                if hint is None:
                    raise
                raise type(exc)(f"{exc}; {hint}") from exc
            self._opened = True
            return self

    def _open_retrying(self) -> None:
        """_open_locked, retried for a reader that raced a writer's commit; always under _lock."""
        for attempt in range(_READ_ONLY_ATTEMPTS):
            try:
                self._open_locked()
                break
            except (CorruptionError, StorageError):
                # A reader whose files vanished because a writer committed meanwhile
                # (compaction, WAL reset) loads the newer version; anything else is real.
                self._teardown()
                if (not self.options.read_only or self._store.is_latest()
                        or attempt == _READ_ONLY_ATTEMPTS - 1):
                    raise
            except BaseException:
                self._teardown()
                raise

    def _open_locked(self) -> None:
        read_only = self.options.read_only
        marked = marker.check_directory(self.path, read_only)  # nothing is written before this
        if not read_only:
            fs.makedirs(self.path)
            self._file_lock = fs.FileLock(filenames.lock_path(self.path))
            if not marked:
                marker.write_marker(self.path)
        manifest = self._store.load_or_create(self.options.shards, create=not read_only)
        self._catalog.update({m.membrane_id: m for m in manifest.membranes.values()})
        self._segment_ids = itertools.count(manifest.next_segment_id)
        if not read_only:
            self._remove_orphans(manifest)
            self._worker = BackgroundWorker()
        recovery = txn.Recovery(manifest.shards)
        self._shards = [
            ShardThread(i, self.path, self.options, self._store, self._catalog, self._worker,
                        self._allocate_segment_id, recovery)
            for i in range(manifest.shards)
        ]
        self._fanout = fanout.ReadFanout(manifest.shards)
        started = [shard.start() for shard in self._shards]
        errors = [f.exception() for f in started]
        for error in sorted((e for e in errors if e is not None),
                            key=lambda e: isinstance(e, txn.PeerFailed)):
            raise error  # the first shard's own failure, not another's echo of it

    def _remove_orphans(self, manifest: Manifest) -> None:
        live = self._store.live_files()
        for shard in range(manifest.shards):
            directory = filenames.segment_dir(self.path, shard)
            for name in fs.listdir(directory):
                path = os.path.join(directory, name)
                if path not in live:
                    fs.unlink(path)

    def _forget_closed_state(self) -> None:
        """Back to the state of a new DB: the manifest and membranes are read again from disk."""
        self._closed = False
        self._opened = False
        self._store = ManifestStore(self.path)
        self._membranes.clear()

    def _allocate_segment_id(self) -> int:
        with self._segment_id_lock:
            return next(self._segment_ids)

    def close(self) -> None:
        """Idempotent: drains every mailbox, stops the shards, releases the files and the LOCK.

        open() reopens it; until then every call raises ClosedError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._teardown()

    def _teardown(self) -> None:
        for shard in self._shards:
            shard.request_stop()
        for shard in self._shards:
            shard.join()
        self._shards = []
        self._plans = {}
        self._fanout.close()
        self._catalog.clear()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def __enter__(self) -> DB:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return f"DB({self.path!r}, shards={len(self._shards) or self.options.shards}, {state})"

    # ------------------------------------------------------------------ membranes

    def create_membrane(self, name: str, dim: int, metric: str = "cosine",
                        index: IndexParams | None = None) -> Membrane:
        """Create a membrane, durably (a manifest commit), and return it.

        Args:
            name: 1-128 bytes of UTF-8; not "." or "..", no "/", "\\", NUL or control characters.
            dim: vector length, 1-65536; fixed for the membrane's life.
            metric: "cosine", "ip" (inner product) or "l2"; scores are always "higher is
                more similar" (l2 scores are negated squared distances).
            index: WSBR parameters; default: `Options.index`.

        Raises:
            AlreadyExistsError: a membrane of that name exists.
            InvalidArgumentError: a bad name, dim, metric or index.
            ReadOnlyError: the DB was opened with `read_only=True`.
        """
        _check_name(name)
        _check_dim_metric(dim, metric)
        if index is not None and not isinstance(index, IndexParams):
            raise InvalidArgumentError("index must be a pomaidb_core.IndexParams")
        (index or self.options.index).analyzer()  # a stemmer that cannot load fails here, not at freeze
        with self._lock:
            self._require_writable()
            if name in self._store.current.membranes:
                raise AlreadyExistsError(f"membrane {name!r} already exists")
            params = (index or self.options.index).to_dict()

            def edit(manifest: Manifest) -> Manifest:
                meta = MembraneMeta(manifest.next_membrane_id, name, dim, metric, params)
                return dataclasses.replace(
                    manifest, membranes={**manifest.membranes, name: meta},
                    next_membrane_id=manifest.next_membrane_id + 1)

            meta = self._store.commit(edit).membranes[name]
            self._catalog[meta.membrane_id] = meta
            return self._membrane_for(meta)

    def _adopt_membrane(self, meta: MembraneMeta) -> None:
        """Add a membrane created on another shard of a Ray database, with its id (ray_shard.py)."""
        with self._lock:
            self._require_writable()
            existing = self._store.current.membranes.get(meta.name)
            if existing is not None:
                if existing.membrane_id != meta.membrane_id:
                    raise AlreadyExistsError(
                        f"membrane {meta.name!r} exists here with id {existing.membrane_id}, "
                        f"not {meta.membrane_id}")
                return

            def edit(manifest: Manifest) -> Manifest:
                return dataclasses.replace(
                    manifest, membranes={**manifest.membranes, meta.name: meta},
                    next_membrane_id=max(manifest.next_membrane_id, meta.membrane_id + 1))

            self._store.commit(edit)
            self._catalog[meta.membrane_id] = meta

    def membrane(self, name: str) -> Membrane:
        """The membrane called `name`; `NotFoundError` if there is none."""
        with self._lock:
            self._require_open()
            meta = self._store.current.membranes.get(name) if isinstance(name, str) else None
            if meta is None:
                raise NotFoundError(f"no membrane named {name!r}; create it with create_membrane")
            return self._membrane_for(meta)

    def get_or_create_membrane(self, name: str, dim: int, metric: str = "cosine",
                               index: IndexParams | None = None) -> Membrane:
        """The membrane called `name`, created with these settings if it does not exist.

        Raises InvalidArgumentError if it exists with another dim or metric (its index
        parameters are kept as they were created).
        """
        with self._lock:
            self._require_open()
            meta = self._store.current.membranes.get(name) if isinstance(name, str) else None
            if meta is None:
                return self.create_membrane(name, dim, metric, index)
            if meta.dim != dim or meta.metric != metric:
                raise InvalidArgumentError(
                    f"membrane {name!r} exists with dim={meta.dim}, metric={meta.metric!r}; "
                    f"asked for dim={dim}, metric={metric!r}")
            return self._membrane_for(meta)

    def membranes(self) -> list[str]:
        """The names of every membrane, sorted."""
        with self._lock:
            self._require_open()
            return sorted(self._store.current.membranes)

    def drop_membrane(self, name: str) -> None:
        """Delete a membrane and all its records from every shard, durably.

        `NotFoundError` if there is no such membrane.
        """
        with self._lock:
            self._require_writable()
            meta = self._store.current.membranes.get(name) if isinstance(name, str) else None
            if meta is None:
                raise NotFoundError(f"no membrane named {name!r}")
            mid = meta.membrane_id

            def edit(manifest: Manifest) -> Manifest:
                membranes = {k: v for k, v in manifest.membranes.items() if k != name}
                segments = {k: v for k, v in manifest.segments.items() if k[1] != mid}
                return dataclasses.replace(manifest, membranes=membranes, segments=segments)

            self._store.commit(edit)
            del self._catalog[mid]
            self._membranes.pop(name, None)
            self._plans.pop(mid, None)
            self._broadcast("drop", mid, name)

    def _membrane_for(self, meta: MembraneMeta) -> Membrane:
        cached = self._membranes.get(meta.name)
        if cached is None or cached.meta.membrane_id != meta.membrane_id:
            cached = Membrane(self, meta)
            self._membranes[meta.name] = cached
        return cached

    # ------------------------------------------------------------------ maintenance

    def freeze(self) -> None:
        """Every shard's memtables -> segments + sidecars, manifest commit, WAL reset; waits."""
        self._require_writable()
        waiters: list[Future] = [Future() for _ in self._shards]
        for shard, waiter in zip(self._shards, waiters):
            self._submit(shard.index, "freeze", waiter)
        for waiter in waiters:
            waiter.result()

    def compact(self) -> None:
        """Merges each membrane's segments per shard, dropping overwritten and deleted rows; waits."""
        self._require_writable()
        waiters = []
        for shard in self._shards:
            for mid in list(self._catalog):
                waiter: Future = Future()
                self._submit(shard.index, "compact", waiter, mid)
                waiters.append(waiter)
        for waiter in waiters:
            waiter.result()

    def stats(self) -> dict:
        """Counts and sizes, as a JSON-ready dict (also `pomaidb stats PATH`).

        `{"path", "shards", "membranes": {name: {"dim", "metric", "records",
        "memtable_records", "memtable_bytes", "frozen_memtables", "segments",
        "segment_rows", "bytes_on_disk", "per_shard": [...]}}}`; `records` counts live
        records, the other figures describe storage (overwritten and deleted rows included
        until compaction).
        """
        self._require_open()
        return combined_stats(self.path, self._store.current.membranes, self._broadcast("stats"))

    def verify(self) -> None:
        """Reads every file and checks every checksum; raises CorruptionError on the first bad one."""
        self._require_open()
        self._store.verify_current()
        self._broadcast("verify")

    # ------------------------------------------------------------------ plumbing for Membrane

    def _require_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the database at {self.path} is closed; call db.open() to reopen it")
        if not self._opened:
            raise ClosedError(
                f"the database at {self.path} is not open yet; call db.open() "
                "(or use pomaidb_core.open)")

    def _require_writable(self) -> None:
        self._require_open()
        if self.options.read_only:
            raise ReadOnlyError("this database was opened with read_only=True; writes are refused")

    @property
    def shard_count(self) -> int:
        """How many shards the open database has (fixed when the directory was created)."""
        self._require_open()
        return len(self._shards)

    def _submit(self, shard: int, kind: str, *args: Any) -> Reply:
        """Queue a command for a blocking caller; `.result()` once to wait for it."""
        reply = Reply()
        self._mailbox(shard).put(Command(kind, args, reply))
        return reply

    def _tell_shards(self, cross: txn.CrossShardBatch, kind: str, *args: Any) -> None:
        """A cross-shard batch's message (txn.py: "decide", "settled", "sync_commits"):
        post a `kind` command (one each: each runs it) to every shard of `cross` still open."""
        shards = self._shards
        for index in cross.shards:
            if index < len(shards):
                shards[index].mailbox.put_internal(Command(kind, args))

    def _put_parts(self, commands: list[tuple[int, tuple]], cross: txn.CrossShardBatch | None) -> None:
        """Queue a put's parts and wait for them; a batch part that cannot be queued votes no."""
        replies = []
        try:
            for shard, args in commands:
                replies.append(self._submit(shard, "put", *args))
        except BaseException as exc:
            if cross is not None:
                for reply in _give_up(cross, exc, [s for s, _ in commands], replies):
                    with contextlib.suppress(BaseException):
                        reply.result()
            raise
        for reply in replies:
            reply.result()

    async def _aput_parts(self, commands: list[tuple[int, tuple]],
                          cross: txn.CrossShardBatch | None) -> None:
        """Async `_put_parts`: a caller that gives up on a batch (cancelled) aborts it unless
        every part already voted yes, and returns once no part can still change what readers see."""
        futures: list[Future] = []
        try:
            for shard, args in commands:
                futures.append(await self._aqueue(shard, Command("put", args, Future())))
            await asyncio.gather(*map(asyncio.wrap_future, futures))
        except BaseException as exc:
            if cross is not None:
                for future in futures:
                    future.cancel()  # queued parts not yet taken are skipped
                settling = _give_up(cross, exc, [s for s, _ in commands], futures)
                await asyncio.gather(*map(asyncio.wrap_future, settling), return_exceptions=True)
            raise

    def _mailbox(self, shard: int) -> Mailbox:
        return self._shard(shard).mailbox

    def _shard(self, shard: int) -> ShardThread:
        self._require_open()
        shards = self._shards
        if shard >= len(shards):  # closed between the check above and here
            raise ClosedError(f"the database at {self.path} was closed meanwhile; call db.open() "
                              "to reopen it")
        return shards[shard]

    def _read(self, shard: int, kind: str, *args: Any) -> Any:
        """A read command run on the calling thread (Shard.read): no mailbox, no thread hop."""
        return self._shard(shard).read(kind, *args)

    def _read_all(self, kind: str, *args: Any) -> list:
        return [self._read(i, kind, *args) for i in range(self.shard_count)]

    def _read_spread(self, membrane_id: int, kind: str, *args: Any,
                     discard: Callable[[Any], None]) -> list[fanout.Outcome]:
        """Every shard's read command, spread over idle helper threads when the membrane
        is large enough to gain from it (fanout.py); every read has ended on return (see
        ReadFanout.outcomes for `discard`)."""
        spread = self._fanout.pays(membrane_id, lambda: sum(self._read_all("rows", membrane_id)))
        return self._fanout.outcomes(lambda shard: self._read(shard, kind, membrane_id, *args),
                                     self.shard_count, spread, discard)

    def _search_by_plan(self, meta: MembraneMeta, queries: Any,
                        params: Any) -> list[list[tuple]] | None:
        """An unfiltered, routed search through the membrane's read plan (read_plan.py): per
        query its k best (score, id, metadata, text); None where the shards must answer."""
        if params.flt is not None or params.exact:
            return None
        mid = meta.membrane_id
        plan = self._plans.get(mid)
        if plan is None or plan.stale():
            shards = [self._shard(i).shard for i in range(self.shard_count)]
            plan = read_plan.build(shards, lambda i: self._read(i, "plan_part", mid, params.shards),
                                   meta.metric)
            self._plans[mid] = plan
        helpers = self._fanout.borrow(plan.helpers_wanted())
        try:
            return plan.search(queries, params, helpers)
        finally:
            self._fanout.give_back(helpers)

    def _call(self, shard: int, kind: str, *args: Any) -> Any:
        return self._submit(shard, kind, *args).result()

    def _broadcast(self, kind: str, *args: Any) -> list:
        futures = [self._submit(i, kind, *args) for i in range(self.shard_count)]
        return [f.result() for f in futures]

    async def _acall(self, shard: int, kind: str, *args: Any) -> Any:
        """Like call, but never blocks the event loop, not even on a full mailbox."""
        return await asyncio.wrap_future(await self._aqueue(shard, Command(kind, args, Future())))

    async def _aqueue(self, shard: int, command: Command) -> Future:
        """Queue `command`, yielding to the event loop while the mailbox is full."""
        mailbox = self._mailbox(shard)
        delay = 0.0001
        while not mailbox.put(command, block=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        assert isinstance(command.future, Future)
        return command.future

    async def _abroadcast(self, kind: str, *args: Any) -> list:
        return list(await asyncio.gather(
            *(self._acall(i, kind, *args) for i in range(self.shard_count))))

    def _scan_shards(self, membrane_id: int, flt: Any) -> Iterator:
        for shard in range(self.shard_count):
            snapshot = self._read(shard, "snapshot", membrane_id, flt)
            yield from snapshot.records()


def combined_stats(path: str, membranes: dict[str, MembraneMeta], per_shard: list[dict]) -> dict:
    """`DB.stats()` from each shard's figures (a dict per membrane name, as Shard._do_stats)."""
    out: dict[str, Any] = {"path": path, "shards": len(per_shard), "membranes": {}}
    for name, meta in sorted(membranes.items()):
        shards = [stats.get(name, _empty_stats()) for stats in per_shard]
        totals = {key: sum(s[key] for s in shards) for key in _empty_stats()}
        out["membranes"][name] = {"dim": meta.dim, "metric": meta.metric, **totals,
                                  "per_shard": shards}
    return out


def _empty_stats() -> dict:
    return {"records": 0, "memtable_records": 0, "memtable_bytes": 0, "frozen_memtables": 0,
            "segments": 0, "segment_rows": 0, "bytes_on_disk": 0, "memory_bytes": 0}


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("membrane name must be a non-empty string")
    if len(name.encode("utf-8")) > MAX_MEMBRANE_NAME_BYTES:
        raise InvalidArgumentError(f"membrane name is longer than {MAX_MEMBRANE_NAME_BYTES} bytes")
    if name in (".", "..") or any(c in name for c in "/\\\x00") or not name.isprintable():
        raise InvalidArgumentError(
            f"membrane name {name!r} may not be '.' or '..' or contain '/', '\\\\', NUL or "
            "control characters")


def _refuse_a_file_path(path: str) -> None:
    """A database is a directory: say so when the path, or a parent of it, is a file."""
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            return
        existing = parent
    if not os.path.isdir(existing):
        where = path if existing == path else f"{path}: {existing}, a parent of the path,"
        raise StorageError(
            f"{where} is a file, not a directory; a PomaiDB database is a directory: "
            "give the path of one (or of one to create)")


_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})  # the OS forbids writing there


def _storage_hint(path: str, exc: StorageError, read_only: bool) -> str | None:
    """The likely fix for a writer's failed open; None when there is no good guess.

    fs.py raises StorageError from the OSError, so the errno is the cause's."""
    if read_only or getattr(exc.__cause__, "errno", 0) not in _REFUSED:
        return None
    if os.path.isdir(filenames.manifest_dir(path)):
        return ("a writer must be able to write to the directory; to read the database, "
                "open it with read_only=True")
    return "create the database in a writable directory"


def _check_dim_metric(dim: Any, metric: Any) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise InvalidArgumentError(f"dim must be an int in [1, {MAX_DIM}], got {dim!r}")
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {METRICS}, got {metric!r}")


def open(path: str | os.PathLike, options: Options | None = None, *, backend: str = "local",
         ray_address: str | None = None, **kwargs: Any) -> DB:
    """Construct and open; usable as a context manager that closes on exit.

    backend="ray" makes every shard a Ray actor (ray_backend.RayDB, the same API; needs
    the `ray` extra); `ray_address` is then the cluster to join (None: the running one,
    else a new local one).
    """
    if backend == "ray":
        from .ray_backend import RayDB  # on demand: the core install never imports ray

        return RayDB(path, options, ray_address=ray_address, **kwargs).open()  # type: ignore[return-value]
    if backend != "local":
        raise InvalidArgumentError(f"backend must be 'local' or 'ray', got {backend!r}")
    if ray_address is not None:
        raise InvalidArgumentError("ray_address is for backend='ray'")
    return DB(path, options, **kwargs).open()


__all__ = ["DB", "PomaiError", "open"]


def _give_up(cross: txn.CrossShardBatch, exc: BaseException, shards: list[int], answers: list) -> list:
    """Abort `cross` unless decided (txn.py); the answers of the parts that will hear the decision.

    Parts not logged yet never will be, so only the logged ones are worth waiting for.
    """
    cross.abandon(exc if isinstance(exc, Exception) else PomaiError("the batch's caller gave up on it"))
    return [answer for shard, answer in zip(shards, answers) if shard in cross.logged]
