"""A membrane: a named collection with its own dim, metric and index knobs.

Input is validated here, in the caller's thread, before any shard sees it, so
a rejected call changes nothing. A batch is split by id across shards; each
shard's part becomes one WAL record applied all-or-nothing. Reads fan out to
the shards that can hold the answer and merge deterministically: score
descending, then id ascending.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import records, routing, txn, wal
from .errors import InvalidArgumentError
from .filters import Filter, compile_filter
from .layers import SearchParams
from .manifest import MembraneMeta
from .options import IndexParams
from .results import Hit, Record

if TYPE_CHECKING:
    from .db import DB


class Membrane:
    def __init__(self, db: DB, meta: MembraneMeta) -> None:
        self._db = db
        self.meta = meta
        self._params = IndexParams.from_dict(meta.index)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def metric(self) -> str:
        return self.meta.metric

    @property
    def index_params(self) -> IndexParams:
        return self._params

    def __repr__(self) -> str:
        return f"Membrane({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    # ------------------------------------------------------------------ writes

    def _put_commands(self, ids: Any, vectors: Any, metadatas: Any) -> list[tuple[int, tuple[Any, ...]]]:
        self._db._require_writable()
        batch = records.make_put_batch(self.meta.membrane_id, ids, vectors, metadatas, self.dim,
                                       self._db.options.max_metadata_bytes)
        commands: list[tuple[int, tuple[Any, ...]]] = []
        for shard, rows in enumerate(routing.split(batch.ids, self._db.shard_count)):
            if len(rows) == 0:
                continue
            part = batch if len(rows) == len(batch.ids) else records.PutBatch(
                batch.membrane_id, batch.ids[rows], np.ascontiguousarray(batch.vectors[rows]),
                [batch.metadatas[i] for i in rows.tolist()],
                [batch.meta_blobs[i] for i in rows.tolist()])
            commands.append((shard, (part, _encoded(part))))
        if len(commands) > 1:  # all shards or none (txn.py)
            cross = txn.CrossShardBatch(
                len(commands), functools.partial(self._db.decide_batch, [s for s, _ in commands]))
            commands = [(shard, (*args, cross)) for shard, args in commands]
        return commands

    def _single_put(self, id: Any, vector: Any, metadata: Any) -> tuple[int, tuple]:
        """The one-record write path, without the batch machinery (no extra vector copies)."""
        self._db._require_writable()
        key = records.check_id(id)
        matrix = records.check_vectors(vector, self.dim, single=True)[None, :]
        meta, blob = records.check_metadata(metadata, self._db.options.max_metadata_bytes)
        batch = records.PutBatch(self.meta.membrane_id, np.array([key], dtype=np.uint64), matrix,
                                 [meta], [blob])
        return routing.shard_of(key, self._db.shard_count), (batch, _encoded(batch))

    def put(self, id: int, vector: Any, metadata: dict | None = None) -> None:
        """Upsert one record; returns once its WAL append is done (and synced, per `sync`)."""
        shard, args = self._single_put(id, vector, metadata)
        self._db.call(shard, "put", *args)

    def put_batch(self, ids: Any, vectors: Any, metadatas: Any = None) -> None:
        """Upsert many, all or nothing across shards; the last occurrence of a repeated id wins."""
        futures = [self._db.submit(shard, "put", *args)
                   for shard, args in self._put_commands(ids, vectors, metadatas)]
        for future in futures:
            future.result()

    def delete(self, id: int) -> bool:
        """Tombstone one record; True if a live record was hidden."""
        return self.delete_batch([records.check_id(id)]) == 1

    def delete_batch(self, ids: Any) -> int:
        self._db._require_writable()
        unique = records.unique_ids(ids)
        futures = [self._db.submit(shard, "delete", self.meta.membrane_id, unique[rows])
                   for shard, rows in enumerate(routing.split(unique, self._db.shard_count))
                   if len(rows)]
        return sum(f.result() for f in futures)

    def delete_where(self, filter: dict) -> int:
        """Tombstone every live record matching `filter`; returns how many.

        An empty filter ({} or None) raises InvalidArgumentError instead of matching
        everything: a filter assembled from optional parts must never wipe a membrane by
        accident. Emptying one is clear()."""
        self._db._require_writable()
        flt = _restricting_filter(filter, "clear()")
        return sum(self._db.broadcast("delete_where", self.meta.membrane_id, flt))

    def clear(self) -> int:
        """Tombstone every live record; returns how many. The membrane (name, dim, metric,
        index settings) stays; drop_membrane removes it."""
        self._db._require_writable()
        return sum(self._db.broadcast("delete_where", self.meta.membrane_id, None))

    # ------------------------------------------------------------------ reads

    def get(self, id: int) -> Record | None:
        key = records.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return self._db.call(shard, "get", self.meta.membrane_id, [key])[0]

    def get_batch(self, ids: Any) -> list[Record | None]:
        return self._point_reads("get", ids)

    def exists(self, id: int) -> bool:
        key = records.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return self._db.call(shard, "exists", self.meta.membrane_id, [key])[0]

    def _point_reads(self, kind: str, ids: Any) -> list:
        keys = records.check_ids(ids)
        out: list = [None] * len(keys)
        parts = [(rows, self._db.submit(shard, kind, self.meta.membrane_id, keys[rows].tolist()))
                 for shard, rows in enumerate(routing.split(keys, self._db.shard_count))
                 if len(rows)]
        for rows, future in parts:
            for row, value in zip(rows.tolist(), future.result()):
                out[row] = value
        return out

    def count(self) -> int:
        """Live records (tombstoned and overwritten ones excluded)."""
        return sum(self._db.broadcast("count", self.meta.membrane_id))

    def search(self, query: Any, k: int = 10, filter: dict | None = None, *,
               top_blocks: int | None = None, widen_blocks: int | None = None,
               exact: bool = False) -> list[Hit]:
        request = self._search_request(query, True, k, filter, top_blocks, widen_blocks, exact)
        return _merge(self._db.broadcast("search", self.meta.membrane_id, *request), k)[0]

    def search_batch(self, queries: Any, k: int = 10, filter: dict | None = None, *,
                     top_blocks: int | None = None, widen_blocks: int | None = None,
                     exact: bool = False) -> list[list[Hit]]:
        request = self._search_request(queries, False, k, filter, top_blocks, widen_blocks, exact)
        if len(request[0]) == 0:
            return []
        return _merge(self._db.broadcast("search", self.meta.membrane_id, *request), k)

    def _search_request(self, queries: Any, single: bool, k: Any, filter: Any, top_blocks: Any,
                        widen_blocks: Any, exact: Any) -> tuple[np.ndarray, SearchParams]:
        """Validated (queries matrix, SearchParams), before any shard is asked."""
        matrix = records.check_vectors(queries, self.dim, single=single)
        if single:
            matrix = matrix[None, :]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be an int >= 1, got {k!r}")
        for name, value, low in (("top_blocks", top_blocks, 1), ("widen_blocks", widen_blocks, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                raise InvalidArgumentError(f"{name} must be None or an int >= {low}, got {value!r}")
        if not isinstance(exact, bool):
            raise InvalidArgumentError("exact must be a bool")
        flt = compile_filter(filter)
        return matrix, SearchParams(
            k=int(k), flt=flt, exact=exact,
            top_blocks=top_blocks if top_blocks is not None else self._params.wsbr_top_blocks,
            widen_blocks=(widen_blocks if widen_blocks is not None
                          else self._params.wsbr_widen_blocks),
            mode=self._params.wsbr_mode)

    def scan(self, filter: dict | None = None) -> Iterator[Record]:
        """Every live record, newest-wins, shard by shard (each shard a consistent snapshot)."""
        flt = compile_filter(filter)
        self._db._require_open()
        return self._db.scan_shards(self.meta.membrane_id, flt)

    # ------------------------------------------------------------------ async twins

    async def aput(self, id: int, vector: Any, metadata: dict | None = None) -> None:
        shard, args = self._single_put(id, vector, metadata)
        await self._db.acall(shard, "put", *args)

    async def aput_batch(self, ids: Any, vectors: Any, metadatas: Any = None) -> None:
        commands = self._put_commands(ids, vectors, metadatas)
        await asyncio.gather(*(self._db.acall(shard, "put", *args) for shard, args in commands))

    async def adelete(self, id: int) -> bool:
        return await self.adelete_batch([records.check_id(id)]) == 1

    async def adelete_batch(self, ids: Any) -> int:
        self._db._require_writable()
        unique = records.unique_ids(ids)
        parts = [self._db.acall(shard, "delete", self.meta.membrane_id, unique[rows])
                 for shard, rows in enumerate(routing.split(unique, self._db.shard_count))
                 if len(rows)]
        return sum(await asyncio.gather(*parts))

    async def adelete_where(self, filter: dict) -> int:
        """The async delete_where(): an empty filter is refused the same way."""
        self._db._require_writable()
        flt = _restricting_filter(filter, "aclear()")
        return sum(await self._db.abroadcast("delete_where", self.meta.membrane_id, flt))

    async def aclear(self) -> int:
        """The async clear()."""
        self._db._require_writable()
        return sum(await self._db.abroadcast("delete_where", self.meta.membrane_id, None))

    async def aget(self, id: int) -> Record | None:
        key = records.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return (await self._db.acall(shard, "get", self.meta.membrane_id, [key]))[0]

    async def aget_batch(self, ids: Any) -> list[Record | None]:
        keys = records.check_ids(ids)
        out: list = [None] * len(keys)
        split = [(rows, shard) for shard, rows in
                 enumerate(routing.split(keys, self._db.shard_count)) if len(rows)]
        results = await asyncio.gather(*(
            self._db.acall(shard, "get", self.meta.membrane_id, keys[rows].tolist())
            for rows, shard in split))
        for (rows, _), values in zip(split, results):
            for row, value in zip(rows.tolist(), values):
                out[row] = value
        return out

    async def aexists(self, id: int) -> bool:
        key = records.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return (await self._db.acall(shard, "exists", self.meta.membrane_id, [key]))[0]

    async def acount(self) -> int:
        return sum(await self._db.abroadcast("count", self.meta.membrane_id))

    async def asearch(self, query: Any, k: int = 10, filter: dict | None = None, *,
                      top_blocks: int | None = None, widen_blocks: int | None = None,
                      exact: bool = False) -> list[Hit]:
        """Fans the query out to all shards concurrently and merges."""
        request = self._search_request(query, True, k, filter, top_blocks, widen_blocks, exact)
        found = await self._db.abroadcast("search", self.meta.membrane_id, *request)
        return _merge(found, k)[0]

    async def asearch_batch(self, queries: Any, k: int = 10, filter: dict | None = None, *,
                            top_blocks: int | None = None, widen_blocks: int | None = None,
                            exact: bool = False) -> list[list[Hit]]:
        request = self._search_request(queries, False, k, filter, top_blocks, widen_blocks, exact)
        if len(request[0]) == 0:
            return []
        found = await self._db.abroadcast("search", self.meta.membrane_id, *request)
        return _merge(found, k)


def _restricting_filter(spec: Any, clear: str) -> Filter:
    """The compiled filter of a delete, refusing one that matches everything ({} or None)."""
    flt = compile_filter(spec)
    if flt is None:
        raise InvalidArgumentError(
            f"delete_where needs a filter that restricts something, got {spec!r}; "
            f"to delete every record of the membrane call {clear}")
    return flt


def _encoded(batch: records.PutBatch) -> bytes:
    """The WAL payload of one shard's part, refused up front if no log record can hold it."""
    payload = records.encode_put(batch)
    if len(payload) > wal.MAX_RECORD_BYTES:
        raise InvalidArgumentError(
            f"this batch puts {len(payload):,} bytes on one shard; a log record holds at most "
            f"{wal.MAX_RECORD_BYTES:,}: split it into smaller put_batch calls")
    return payload


def _merge(per_shard: list[list[list[tuple]]], k: int) -> list[list[Hit]]:
    """Per query: the k best of every shard's hits, by score descending then id ascending."""
    merged = []
    for per_query in zip(*per_shard):
        candidates = [hit for hits in per_query for hit in hits]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        merged.append([Hit(key, float(score), meta) for score, key, meta in candidates[:k]])
    return merged
