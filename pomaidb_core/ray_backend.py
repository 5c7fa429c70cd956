"""The Ray backend: `pdb.open(path, backend="ray")`, a database whose shards are Ray actors.

The only module that imports ray at its top (the core install never imports it).
`RayDB` has the DB's API and plumbing, so `Membrane` (validation, routing,
merging) and both integrations run unchanged on top of it; each shard is a
`ray_shard.ShardActor`, the in-process engine on one shard directory.

Actors: shard i of the database at `path` (absolute) is the detached actor
`shard-<i>` in the Ray namespace `pomaidb:<path>`, with `max_restarts=-1`: a
killed actor is restarted by Ray and replays its WAL before it answers. A
client opening the same path attaches to running actors (`get_if_exists`), so
any number of clients share them; `close()` detaches, `shutdown()` stops them.

Placement: a node offers PomaiDB a stable host name by advertising the custom
resource `pomaidb_host:<name>` (`ray start --resources='{"pomaidb_host:a": 1000}'`).
A shard is pinned to one host by requiring a sliver of its resource, so a
restarted actor runs where its files are. Which host: the one whose node holds
the shard's files (asked of each host by a small task), else, for a new shard,
the host with the fewest shards (ties: host name order). A cluster without such
resources (one machine, `ray_address=None`) places actors freely.

Calls: every call carries a deadline (`ray_timeout_seconds`); a call to an
actor that is restarting is retried until then with the same request id (see
ray_shard.py), and shards that do not answer by then make the call fail with
`UnavailableError` naming them: never a hang. Sync fan-outs (search, count)
send every shard its call and wait with one `ray.get` (a vector search too: one
hop, not one per shard); async ones await the object refs directly. With
`ray_compiled_search=True` sync vector searches go through a Ray Compiled Graph
when it can answer at once, plain calls otherwise (`_CompiledSearch`). A put
spanning shards is a two-phase commit run by the client: every shard logs its
part and votes, then the client decides; a shard that a restart made lose a
committed part says so, and the client writes the whole batch again (puts are
idempotent).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from . import db as local_db
from .errors import (
    ClosedError,
    InvalidArgumentError,
    NotFoundError,
    PomaiError,
    UnavailableError,
)
from .mailbox import WRITE_KINDS
from .manifest import MembraneMeta
from .membrane import Membrane
from .options import IndexParams, Options
from .ray_shard import UNKNOWN, ShardActor, shards_on_disk
from .results import merge_hits

HOST_RESOURCE = "pomaidb_host:"
_PIN = 0.001  # of a host's resource: any number of shards fit on a host
_ACTOR_THREADS = 64  # concurrent calls per actor: they meet in the shard's group commit
_RETRY_SECONDS = 0.05
_COMPILED_MAX_QUERY_BYTES = 64 * 1024  # bigger searches take plain calls (channel buffers)
_COMPILED_WAIT_SECONDS = 5.0  # a compiled search slower than this: plain calls instead
_RECOMPILE_AFTER_SECONDS = 5.0  # after a broken graph, plain calls for at least this long
_compiling_namespaces: set[str] = set()  # databases with a _CompiledSearch in this process
_compiling_lock = threading.Lock()

_Actor = ray.remote(ShardActor)


class RayDB:
    """A PomaiDB database whose shards are Ray actors; the same API as `DB`.

    `RayDB(path, options, ray_address=None, ray_timeout_seconds=30.0, **overrides)` only
    validates; `open()` joins the cluster and starts or attaches to the shard actors.

    Args:
        path: the database directory, on every node that hosts a shard.
        options: an `Options` (shards: the shard count of a new database; None attaches
            to running actors, else 4); any field may also be given as a keyword.
        ray_address: the cluster to join; None: the running one (RAY_ADDRESS), else a new
            local one.
        ray_timeout_seconds: how long a call waits for a shard before `UnavailableError`.
        ray_compiled_search: send vector searches through a Ray Compiled Graph (`_CompiledSearch`:
            about a millisecond less per search; one client process per database may use it).
    """

    def __init__(self, path: str | os.PathLike, options: Options | None = None, *,
                 ray_address: str | None = None, ray_timeout_seconds: float = 30.0,
                 ray_compiled_search: bool = False, **kwargs: Any) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise InvalidArgumentError("path must be a non-empty str or os.PathLike")
        self.path = os.path.abspath(os.fspath(path))
        self.options = Options.merged(options, kwargs)
        if self.options.read_only:
            raise InvalidArgumentError(
                "read_only is not available with backend='ray': every client of a Ray "
                "database reads the shards' current state (attach another client instead)")
        if not ray_timeout_seconds > 0:
            raise InvalidArgumentError("ray_timeout_seconds must be > 0")
        if not isinstance(ray_compiled_search, bool):
            raise InvalidArgumentError("ray_compiled_search must be a bool")
        self._compiled: _CompiledSearch | None = None
        self._compiled_search = ray_compiled_search
        self._address = ray_address
        self._timeout = float(ray_timeout_seconds)
        self._namespace = f"pomaidb:{self.path}"
        self._actors: list[Any] = []
        self._membranes: dict[str, Membrane] = {}
        self._opened = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> RayDB:
        """Join the cluster, start or attach to every shard actor (each replays its WAL)."""
        if self._opened and not self._closed:
            return self
        if not ray.is_initialized():
            ray.init(address=self._address, ignore_reinit_error=True, log_to_driver=False)
        found = self._shards_on_disk()
        count = self.options.shards or self._running_count() or _count_on_disk(found) or 4
        hosts = _placement(found, count)
        self._actors = [self._start_actor(i, count, host) for i, host in enumerate(hosts)]
        self._compiled = _CompiledSearch(self, self._actors) if self._compiled_search else None
        self._closed = False
        self._opened = True
        try:
            self._broadcast_each("ping")
            self._reconcile_catalog()
        except BaseException:
            self._actors = []
            self._closed = True
            raise
        return self

    def _start_actor(self, index: int, count: int, host: str | None) -> Any:
        """The running actor of shard `index`, or a new one pinned to `host`."""
        return _Actor.options(
            name=f"shard-{index}", namespace=self._namespace, get_if_exists=True,
            lifetime="detached", max_restarts=-1, max_task_retries=0,
            max_concurrency=_ACTOR_THREADS, num_cpus=0,
            resources={HOST_RESOURCE + host: _PIN} if host is not None else None,
        ).remote(self.path, index, count, host, self.options)

    def close(self) -> None:
        """Detach: the shard actors keep running for other clients (`shutdown` stops them)."""
        self._closed = True
        self._actors = []
        self._membranes.clear()
        compiled, self._compiled = self._compiled, None
        if compiled is not None:
            compiled.close()

    def shutdown(self) -> None:
        """Stop every shard actor (each closes its files), then detach."""
        self._require_open()
        actors = self._actors
        if self._compiled is not None:  # before the actors go: its loops run on them
            self._compiled.close()
        for actor, ref in [(a, a.stop.remote()) for a in actors]:
            try:
                ray.get(ref, timeout=self._timeout)
            except (RayActorError, GetTimeoutError):
                pass  # gone already: its WAL holds every acknowledged write
            ray.kill(actor, no_restart=True)
        self.close()

    def __enter__(self) -> RayDB:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return f"RayDB({self.path!r}, shards={len(self._actors) or self.options.shards}, {state})"

    @property
    def shard_count(self) -> int:
        """How many shards (actors) the database has."""
        self._require_open()
        return len(self._actors)

    def _running_count(self) -> int:
        names = ray.util.list_named_actors(all_namespaces=True)
        return sum(1 for n in names if n["namespace"] == self._namespace)

    def _shards_on_disk(self) -> dict[str | None, list[tuple[int, int]]]:
        """Per host (None: no hosts), the shards whose files its node holds (ray_shard.py)."""
        hosts = sorted({key[len(HOST_RESOURCE):] for node in ray.nodes() if node["Alive"]
                        for key in node["Resources"] if key.startswith(HOST_RESOURCE)})
        if not hosts:
            return {None: shards_on_disk(self.path, None)}
        probes = [ray.remote(shards_on_disk).options(
            num_cpus=0, resources={HOST_RESOURCE + host: _PIN}).remote(self.path, host)
            for host in hosts]
        try:
            return dict(zip(hosts, ray.get(probes, timeout=self._timeout)))
        except (GetTimeoutError, RayActorError):
            raise UnavailableError(
                f"the PomaiDB hosts {hosts} of the Ray cluster did not all say within "
                f"{self._timeout:g} s which shards of {self.path} they hold: a node is gone "
                "or overloaded; retry, or raise ray_timeout_seconds") from None

    def _reconcile_catalog(self) -> None:
        """Every shard holds shard 0's membranes, with its ids (a create or drop cut short)."""
        catalog = self._catalog()
        others = self._broadcast_each("catalog")[1:]
        for shard, theirs in enumerate(others, start=1):
            for name, meta in theirs.items():
                if catalog.get(name) != meta:
                    self._ask(shard, "drop_membrane", name)
            for meta in catalog.values():
                if theirs.get(meta.name) != meta:
                    self._ask(shard, "adopt_membrane", meta)

    # ------------------------------------------------------------------ membranes

    def create_membrane(self, name: str, dim: int, metric: str = "cosine",
                        index: IndexParams | None = None) -> Membrane:
        """As `DB.create_membrane`: shard 0 assigns the id, every other shard adopts it."""
        local_db._check_name(name)
        local_db._check_dim_metric(dim, metric)
        if index is not None and not isinstance(index, IndexParams):
            raise InvalidArgumentError("index must be a pomaidb_core.IndexParams")
        self._require_open()
        meta = self._ask(0, "create_membrane", name, dim, metric, index or self.options.index)
        for shard in range(1, self.shard_count):
            self._ask(shard, "adopt_membrane", meta)
        return self._membrane_for(meta)

    def membrane(self, name: str) -> Membrane:
        """The membrane called `name`; `NotFoundError` if there is none."""
        self._require_open()
        meta = self._catalog().get(name) if isinstance(name, str) else None
        if meta is None:
            raise NotFoundError(f"no membrane named {name!r}; create it with create_membrane")
        return self._membrane_for(meta)

    def get_or_create_membrane(self, name: str, dim: int, metric: str = "cosine",
                               index: IndexParams | None = None) -> Membrane:
        """As `DB.get_or_create_membrane`."""
        self._require_open()
        meta = self._catalog().get(name) if isinstance(name, str) else None
        if meta is None:
            return self.create_membrane(name, dim, metric, index)
        if meta.dim != dim or meta.metric != metric:
            raise InvalidArgumentError(
                f"membrane {name!r} exists with dim={meta.dim}, metric={meta.metric!r}; "
                f"asked for dim={dim}, metric={metric!r}")
        return self._membrane_for(meta)

    def membranes(self) -> list[str]:
        """The names of every membrane, sorted."""
        self._require_open()
        return sorted(self._catalog())

    def drop_membrane(self, name: str) -> None:
        """As `DB.drop_membrane`: shard 0, which holds the catalog, forgets it last."""
        self._require_open()
        if not isinstance(name, str) or name not in self._catalog():
            raise NotFoundError(f"no membrane named {name!r}")
        for shard in [*range(1, self.shard_count), 0]:
            self._ask(shard, "drop_membrane", name)
        self._membranes.pop(name, None)

    def _catalog(self) -> dict[str, MembraneMeta]:
        return self._ask(0, "catalog")

    def _membrane_for(self, meta: MembraneMeta) -> Membrane:
        cached = self._membranes.get(meta.name)
        if cached is None or cached.meta.membrane_id != meta.membrane_id:
            cached = _RayMembrane(self, meta)  # type: ignore[arg-type]
            self._membranes[meta.name] = cached
        return cached

    # ------------------------------------------------------------------ maintenance

    def freeze(self) -> None:
        """Every shard's memtables -> segments; waits."""
        self._require_open()
        self._broadcast_each("maintain", "freeze")

    def compact(self) -> None:
        """Every shard compacts its membranes; waits."""
        self._require_open()
        self._broadcast_each("maintain", "compact")

    def stats(self) -> dict:
        """As `DB.stats()`, gathered from every shard actor."""
        self._require_open()
        return local_db.combined_stats(self.path, self._catalog(), self._broadcast_each("stats"))

    def verify(self) -> None:
        """Every shard reads its files and checks every checksum."""
        self._require_open()
        self._broadcast_each("verify")

    # ------------------------------------------------------------------ plumbing for Membrane

    def _require_open(self) -> None:
        if self._closed or not self._opened:
            raise ClosedError(f"the Ray database at {self.path} is not open; call open()")

    def _require_writable(self) -> None:
        self._require_open()  # read_only is refused when a RayDB is made

    def _tell_shards(self, *_: Any) -> None:
        """Membrane's in-process batch messages: unused, `_put_parts` runs the two phases itself
        and each shard actor confirms its own COMMIT."""

    def _request(self, shard: int, kind: str, *args: Any) -> Callable[[], Any]:
        """A function that (re)sends one command to a shard: the same request id every time."""
        actor = self._actor(shard)
        if kind in WRITE_KINDS:
            request_id = uuid.uuid4().hex
            if kind == "put":  # (batch, payload): the payload alone holds it (ray_shard.py)
                args = args[1:2]
            return lambda: actor.write.remote(request_id, kind, args)
        return lambda: actor.read.remote(kind, args)

    def _actor(self, shard: int) -> Any:
        self._require_open()
        actors = self._actors
        if shard >= len(actors):
            raise ClosedError(f"the Ray database at {self.path} was closed meanwhile")
        return actors[shard]

    def _call(self, shard: int, kind: str, *args: Any) -> Any:
        return self._gather([(shard, self._request(shard, kind, *args))])[0]

    def _submit(self, shard: int, kind: str, *args: Any) -> _Pending:
        send = self._request(shard, kind, *args)
        return _Pending(self, shard, send, send())

    def _broadcast(self, kind: str, *args: Any) -> list:
        return self._gather([(i, self._request(i, kind, *args)) for i in range(self.shard_count)])

    _read = _call

    def _read_all(self, kind: str, *args: Any) -> list:
        return self._broadcast(kind, *args)

    def _search_all(self, membrane_id: int, queries: Any, params: Any) -> list:
        """Every shard's hits for `queries`: through the compiled graph when there is one and
        it answers, else with plain calls (which retry, and name the shards that are missing)."""
        compiled = self._compiled
        if compiled is not None and queries.nbytes <= _COMPILED_MAX_QUERY_BYTES:
            outcomes = compiled.run((membrane_id, queries, params))
            if outcomes is not None:
                return [_unwrap(outcome) for outcome in outcomes]
        return self._read_all("search", membrane_id, queries, params)

    def _ask(self, shard: int, method: str, *args: Any) -> Any:
        """A catalog or maintenance call to one shard actor."""
        actor = self._actor(shard)
        return self._gather([(shard, lambda: getattr(actor, method).remote(*args))])[0]

    def _broadcast_each(self, method: str, *args: Any) -> list:
        calls = [(i, _sender(self._actor(i), method, args)) for i in range(self.shard_count)]
        return self._gather(calls)

    def _gather(self, calls: list[tuple[int, Callable[[], Any]]], sent: list | None = None) -> list:
        """Every call's answer; raises the first failure (shard order)."""
        return [_unwrap(outcome) for outcome in self._outcomes(calls, sent)]

    def _outcomes(self, calls: list[tuple[int, Callable[[], Any]]],
                  sent: list | None = None) -> list[tuple[bool, Any]]:
        """Every call's (ok, value), with one `ray.get` when all goes well.

        A call to a restarting actor is sent again; shards silent until the deadline
        answer (False, UnavailableError naming all of them).
        """
        deadline = time.monotonic() + self._timeout
        refs = sent if sent is not None else [send() for _, send in calls]
        try:
            return ray.get(refs, timeout=self._timeout)
        except (RayActorError, GetTimeoutError):
            pass
        outcomes: list = []
        missing = []
        for (shard, send), ref in zip(calls, refs):
            try:
                outcomes.append(self._settle(send, ref, deadline))
            except _Missing:
                missing.append(shard)
                outcomes.append(None)
        error = self._unavailable(missing)
        return [outcome or (False, error) for outcome in outcomes]

    def _settle(self, send: Callable[[], Any], ref: Any, deadline: float) -> Any:
        while True:
            try:
                return ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except GetTimeoutError:
                raise _Missing from None
            except RayActorError:  # restarting (or gone): the same request again
                if time.monotonic() >= deadline:
                    raise _Missing from None
                time.sleep(_RETRY_SECONDS)
                ref = send()

    def _unavailable(self, shards: list[int]) -> UnavailableError:
        return UnavailableError(
            f"shards {shards} of the Ray database at {self.path} did not answer within "
            f"{self._timeout:g} s: their node is gone (or overloaded, or the database was shut "
            "down); restart the node with its pomaidb_host resource, or raise ray_timeout_seconds")

    def _put_parts(self, commands: list[tuple[int, tuple]], cross: Any) -> None:
        if cross is None:
            self._gather([(shard, self._request(shard, "put", *args)) for shard, args in commands])
            return
        deadline = time.monotonic() + self._timeout
        while not self._two_phase(commands):  # a restart lost a committed part: the batch again
            if time.monotonic() >= deadline:  # reported, never acknowledged
                raise self._unavailable([shard for shard, _ in commands])

    def _two_phase(self, commands: list[tuple[int, tuple]]) -> bool:
        """Prepare on every shard, then decide; False if a restart lost a committed part."""
        batch_id, shards = uuid.uuid4().hex, [shard for shard, _ in commands]
        votes = self._gather_errors([(shard, _sender(self._actor(shard), "prepare",
                                                     (batch_id, args[1])))
                                     for shard, args in commands])
        error = next((e for e in votes if e is not None), None)
        outcomes = self._outcomes([(shard, _sender(self._actor(shard), "decide",
                                                   (batch_id, error is None, error)))
                                   for shard in shards])
        error = error or next((value for ok, value in outcomes if not ok), None)
        if error is not None:
            raise error
        return all(value != UNKNOWN for _, value in outcomes)

    def _gather_errors(self, calls: list[tuple[int, Callable[[], Any]]]) -> list:
        """Per call: None if it worked, else its error (UnavailableError for a missing shard)."""
        return [None if ok else value for ok, value in self._outcomes(calls)]

    def _scan_shards(self, membrane_id: int, flt: Any) -> Iterator:
        for shard in range(self.shard_count):
            send = _sender(self._actor(shard), "scan", (membrane_id, flt))
            yield from self._gather([(shard, send)])[0]

    # ------------------------------------------------------------------ async plumbing

    async def _acall(self, shard: int, kind: str, *args: Any) -> Any:
        return await self._await(shard, self._request(shard, kind, *args))

    async def _abroadcast(self, kind: str, *args: Any) -> list:
        return list(await asyncio.gather(
            *(self._acall(i, kind, *args) for i in range(self.shard_count))))

    async def _await(self, shard: int, send: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                outcome = await asyncio.wait_for(_awaited(send()), deadline - time.monotonic())
            except asyncio.TimeoutError:
                raise self._unavailable([shard]) from None
            except RayActorError:
                if time.monotonic() >= deadline:
                    raise self._unavailable([shard]) from None
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            return _unwrap(outcome)

    async def _aput_parts(self, commands: list[tuple[int, tuple]], cross: Any) -> None:
        if cross is None:
            await asyncio.gather(*(self._acall(shard, "put", *args) for shard, args in commands))
            return
        batch_id = uuid.uuid4().hex
        decided = False
        try:
            votes = await asyncio.gather(
                *(self._await(shard, _sender(self._actor(shard), "prepare", (batch_id, args[1])))
                  for shard, args in commands), return_exceptions=True)
            error = next((v for v in votes if isinstance(v, BaseException)), None)
            decided = True
            answers = await asyncio.gather(
                *(self._await(shard, _sender(self._actor(shard), "decide",
                                             (batch_id, error is None, error)))
                  for shard, _ in commands), return_exceptions=True)
            error = error or next((a for a in answers if isinstance(a, BaseException)), None)
            if error is not None:
                raise error
            if UNKNOWN in answers:  # a restart lost a committed part: the whole batch again
                await self._aput_parts(commands, cross)
        except asyncio.CancelledError:
            if not decided:  # the caller gave up before deciding: abort, without waiting
                abort = PomaiError("the batch's caller gave up on it")
                for shard, _ in commands:
                    self._actor(shard).decide.remote(batch_id, False, abort)
            raise


def _count_on_disk(found: dict[str | None, list[tuple[int, int]]]) -> int | None:
    counts = {count for shards in found.values() for _, count in shards}
    if len(counts) > 1:
        raise InvalidArgumentError(f"shards made with different shard counts {sorted(counts)} "
                                   "share this path; give shards= explicitly")
    return counts.pop() if counts else None


def _placement(found: dict[str | None, list[tuple[int, int]]], count: int) -> list[str | None]:
    """The host of each shard: where its files are, else the host with the fewest shards."""
    if None in found:
        return [None] * count
    placed: list[str | None] = [None] * count
    for host, shards in found.items():
        for index, made_with in shards:
            if made_with == count and placed[index] is None:
                placed[index] = host
    for index in range(count):
        if placed[index] is None:
            placed[index] = min(found, key=lambda h: (placed.count(h), h or ""))
    return placed


class _RayMembrane(Membrane):
    """`Membrane` whose vector search asks every shard at once: one round trip, one `ray.get`.

    In process, `Membrane._vector_hits` leaves segment hits undecoded until the shards'
    hits are merged. Across processes a hit cannot point into a shard's segment, so here
    every shard decodes its own k best and the client merges: the same hits.
    """

    def _vector_hits(self, queries: Any, params: Any) -> list:
        return merge_hits(self._db._search_all(self.meta.membrane_id, queries, params), params.k)


class _CompiledSearch:
    """Vector searches through a Ray Compiled Graph (`ray.dag`), opted into with
    `ray_compiled_search=True`: the query goes to every shard actor's `read("search", ...)`
    over shared-memory channels instead of one scheduled task per actor.

    Only a fast path: `run` answers None whenever it cannot answer at once (another thread
    is searching through the graph, the graph is not compiled yet or broke recently, or it
    failed just now), and the caller sends plain calls, which retry restarting actors and
    name the shards that stay silent. Ray's limits shape the rest:

    - an actor runs one compiled graph at a time, and compiling a second one waits forever:
      the client first claims every actor (`ShardActor.claim_graph`); a client that finds
      one claimed by another keeps plain calls for good (a claim ends when its client
      closes, or when the actor restarts). The graph is compiled on a daemon thread (about
      1.5 s; the searches meanwhile take plain calls);
    - one execution at a time: a lock that other threads never wait for;
    - an actor that dies shuts the graph down; it is torn down on a daemon thread (teardown
      waits for every actor, up to Ray's teardown timeout) and compiled again at the first
      search `_RECOMPILE_AFTER_SECONDS` later, once every shard answers a plain ping;
    - Ray tears down the graphs left at exit with `kill_actors=True`, which would stop the
      shard actors (detached, shared with other clients): `close()` tears it down first,
      and so does an exit hook;
    - a compile or teardown that is still talking to the actors when they are killed
      (`shutdown()`) or recompiled can abort the whole client process (a failed check in
      Ray's core worker, seen while compiling): `close()` waits for the compile and
      teardown threads it started (bounded by the client's timeout), a compile first waits
      for the teardowns before it, and a graph compiled after `close()` is torn down
      before its thread ends.
    """

    def __init__(self, db: RayDB, actors: list) -> None:
        self._db, self._actors = db, actors
        self._lock = threading.Lock()  # one execution at a time; guards _graph
        self._graph: Any = None
        self._compiling = False  # a compile thread runs, or another client holds the actors
        self._token = uuid.uuid4().hex  # this client's claim on the actors
        self._broken_at = -float("inf")
        self._threads: list[threading.Thread] = []  # compiles and teardowns started here
        with _compiling_lock:  # a second client in this process on the same actors: plain calls
            self._closed = db._namespace in _compiling_namespaces
            _compiling_namespaces.add(db._namespace)
        self._owner = not self._closed
        atexit.register(self.close)  # after ray.init's hook: runs before it

    def run(self, inputs: tuple) -> list | None:
        """Every shard's outcome, or None: use plain calls."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            graph = self._graph
            if graph is None:
                self._start_compiling()
                return None
            try:
                wait = min(self._db._timeout, _COMPILED_WAIT_SECONDS)
                return ray.get(graph.execute(inputs), timeout=wait)
            except Exception:  # a dead actor, a closed channel, a timeout: drop the graph
                self._discard()
                return None
        finally:
            self._lock.release()

    def close(self) -> None:
        """Tear the graph down (the actors stay); later searches take plain calls."""
        atexit.unregister(self.close)
        with self._lock:
            self._closed = True
            graph, self._graph = self._graph, None
            if graph is not None:  # waits for every actor: bounded, the rest in the background
                self._start(graph.teardown, "pomaidb-ray-teardown")
            threads = list(self._threads)
        deadline = time.monotonic() + self._db._timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._release_claims()
        with _compiling_lock:
            if self._owner:
                _compiling_namespaces.discard(self._db._namespace)
                self._owner = False

    def _start_compiling(self) -> None:
        """Runs under the lock."""
        if (self._closed or self._compiling
                or time.monotonic() - self._broken_at < _RECOMPILE_AFTER_SECONDS):
            return
        self._compiling = True
        self._start(self._compile, "pomaidb-ray-compile")

    def _start(self, target: Callable[[], Any], name: str) -> None:
        """Runs under the lock: a daemon thread that close() waits for."""
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _compile(self) -> None:
        from ray.dag import InputNode, MultiOutputNode

        with self._lock:
            teardowns = [t for t in self._threads if t.name == "pomaidb-ray-teardown"]
        deadline = time.monotonic() + self._db._timeout
        for thread in teardowns:  # a graph still shutting down on the actors: let it finish
            thread.join(max(0.0, deadline - time.monotonic()))
        try:
            if any(t.is_alive() for t in teardowns):
                raise TimeoutError("a previous graph is still being torn down")
            claims = self._db._broadcast_each("claim_graph", self._token)  # every actor up too
            if not all(claims):  # another client's graph runs there: plain calls for good
                self._release_claims()
                return
            with InputNode() as query:
                dag = MultiOutputNode([actor.read.bind("search", query)
                                       for actor in self._actors])
            graph = dag.experimental_compile()
        except Exception:  # an actor gone meanwhile, or Ray refused: plain calls for now
            with self._lock:
                self._compiling = False
                self._broken_at = time.monotonic()
            return
        with self._lock:
            self._compiling = False
            if not self._closed:
                self._graph = graph
                return
        try:  # closed meanwhile: torn down before close(), which waits for this thread, returns
            graph.teardown()
        except Exception:  # the actors are being stopped or left: nothing to keep
            pass

    def _release_claims(self) -> None:
        for actor in self._actors:  # no answer awaited: a gone actor has no claim left
            actor.release_graph.remote(self._token)

    def _discard(self) -> None:
        """Runs under the lock."""
        graph, self._graph = self._graph, None
        self._broken_at = time.monotonic()
        self._start(graph.teardown, "pomaidb-ray-teardown")


class _Pending:
    """A sent command's answer, for `Membrane.delete_batch` (which sends to all, then waits)."""

    def __init__(self, db: RayDB, shard: int, send: Callable[[], Any], ref: Any) -> None:
        self._db, self._call, self._ref = db, (shard, send), ref

    def result(self) -> Any:
        return self._db._gather([self._call], [self._ref])[0]


class _Missing(Exception):
    """A shard did not answer before the deadline."""


def _sender(actor: Any, method: str, args: tuple) -> Callable[[], Any]:
    return lambda: getattr(actor, method).remote(*args)


async def _awaited(ref: Any) -> Any:
    return await ref


def _unwrap(outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if not ok:
        raise value
    return value
