"""A membrane: a named collection with its own dim, metric and index knobs.

Input is validated here, in the caller's thread, before any shard sees it, so
a rejected call changes nothing. A batch is split by id across shards; each
shard's part becomes one WAL record applied all-or-nothing. Reads fan out to
the shards that can hold the answer and merge deterministically: score
descending, then id ascending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import bm25, records, routing, txn, validation, wal, wsbr
from . import fusion as fusion_
from .errors import InvalidArgumentError
from .filters import Filter, compile_filter
from .layers import SearchParams, read_payloads
from .manifest import MembraneMeta
from .options import IndexParams
from .results import Hit, Record, make_hit, merge_hits

if TYPE_CHECKING:
    from .db import DB


class Membrane:
    """A named collection of records (id, float32 vector, JSON metadata) with one dim and metric.

    Get one from `DB.create_membrane`, `DB.membrane` or `DB.get_or_create_membrane`. Every
    method validates its input in the caller's thread first, so a rejected call raises
    `InvalidArgumentError` and changes nothing. Each method has an `a`-prefixed async twin
    (`aput`, `asearch`, ...) that awaits the shards without blocking the event loop.

    Ids are integers in [0, 2**64). Reads see every acknowledged write at once (newest wins).
    """

    def __init__(self, db: DB, meta: MembraneMeta) -> None:
        self._db = db
        self.meta = meta
        self._params = IndexParams.from_dict(meta.index)

    @property
    def name(self) -> str:
        """The membrane's name."""
        return self.meta.name

    @property
    def dim(self) -> int:
        """The length of every vector."""
        return self.meta.dim

    @property
    def metric(self) -> str:
        """"cosine", "ip" or "l2"."""
        return self.meta.metric

    @property
    def index_params(self) -> IndexParams:
        """The WSBR parameters the membrane was created with."""
        return self._params

    def __repr__(self) -> str:
        return f"Membrane({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    # ------------------------------------------------------------------ writes

    def _put_commands(self, ids: Any, vectors: Any, metadatas: Any, texts: Any
                      ) -> tuple[list[tuple[int, tuple[Any, ...]]], txn.CrossShardBatch | None]:
        """The batch's part per shard, and the vote that ties them if there are several."""
        self._db._require_writable()
        batch = validation.make_put_batch(self.meta.membrane_id, ids, vectors, metadatas, self.dim,
                                       self._db.options.max_metadata_bytes, texts)
        parts = [(shard, batch if len(rows) == len(batch.ids) else batch.subset(rows))
                 for shard, rows in enumerate(routing.split(batch.ids, self._db.shard_count))
                 if len(rows)]
        if len(parts) <= 1:
            return [(shard, (part, _encoded(part))) for shard, part in parts], None
        shards = [shard for shard, _ in parts]  # all shards or none (txn.py)
        cross = txn.CrossShardBatch(shards, self._db._tell_shards)
        return [(shard, (part, records.encode_part(cross.key, shards, _encoded(part)),
                         txn.BatchPart(cross, shard))) for shard, part in parts], cross

    def _single_put(self, id: Any, vector: Any, metadata: Any, text: Any) -> tuple[int, tuple]:
        """The one-record write path, without the batch machinery (no extra vector copies)."""
        self._db._require_writable()
        key = validation.check_id(id)
        matrix = validation.check_vectors(vector, self.dim, single=True)[None, :]
        meta, blob = validation.check_metadata(metadata, self._db.options.max_metadata_bytes)
        checked = validation.check_text(text)
        batch = records.PutBatch(self.meta.membrane_id, np.array([key], dtype=np.uint64), matrix,
                                 [meta], [blob], None if checked is None else [checked])
        return routing.shard_of(key, self._db.shard_count), (batch, _encoded(batch))

    def put(self, id: int, vector: Any, metadata: dict | None = None, *,
            text: str | None = None) -> None:
        """Upsert one record; returns once its WAL append is done (and synced, per `sync`).

        `text` is the record's document: stored with it, returned by reads, and indexed for
        keyword search (see `search(..., text=)`)."""
        shard, args = self._single_put(id, vector, metadata, text)
        self._db._call(shard, "put", *args)

    def put_batch(self, ids: Any, vectors: Any, metadatas: Any = None, *,
                  texts: Any = None) -> None:
        """Upsert many, all or nothing across shards; the last occurrence of a repeated id wins.
        `texts`: one str or None per id (the records' documents), or None."""
        self._db._put_parts(*self._put_commands(ids, vectors, metadatas, texts))

    def delete(self, id: int) -> bool:
        """Tombstone one record; True if a live record was hidden."""
        return self.delete_batch([validation.check_id(id)]) == 1

    def delete_batch(self, ids: Any) -> int:
        """Tombstone many ids; returns how many live records were hidden (repeats count once)."""
        self._db._require_writable()
        unique = validation.unique_ids(ids)
        futures = [self._db._submit(shard, "delete", self.meta.membrane_id, unique[rows])
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
        return sum(self._db._broadcast("delete_where", self.meta.membrane_id, flt))

    def clear(self) -> int:
        """Tombstone every live record; returns how many. The membrane (name, dim, metric,
        index settings) stays; drop_membrane removes it."""
        self._db._require_writable()
        return sum(self._db._broadcast("delete_where", self.meta.membrane_id, None))

    # ------------------------------------------------------------------ reads

    def get(self, id: int) -> Record | None:
        """The live record with this id, or None (never written, or deleted)."""
        key = validation.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return self._db._read(shard, "get", self.meta.membrane_id, [key])[0]

    def get_batch(self, ids: Any) -> list[Record | None]:
        """`get` for many ids at once, in the order given (None where there is no record)."""
        return self._point_reads("get", ids)

    def exists(self, id: int) -> bool:
        """Whether a live record has this id (cheaper than `get`: no vector is copied)."""
        key = validation.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return self._db._read(shard, "exists", self.meta.membrane_id, [key])[0]

    def _point_reads(self, kind: str, ids: Any) -> list:
        keys = validation.check_ids(ids)
        out: list = [None] * len(keys)
        for shard, rows in enumerate(routing.split(keys, self._db.shard_count)):
            if len(rows):
                found = self._db._read(shard, kind, self.meta.membrane_id, keys[rows].tolist())
                for row, value in zip(rows.tolist(), found):
                    out[row] = value
        return out

    def count(self) -> int:
        """Live records (tombstoned and overwritten ones excluded)."""
        return sum(self._db._read_all("count", self.meta.membrane_id))

    def search(self, query: Any, k: int = 10, filter: dict | None = None, *,
               top_blocks: int | None = None, widen_blocks: int | None = None,
               exact: bool = False, text: str | None = None, fusion: str = "rrf",
               alpha: float = 0.5) -> list[Hit]:
        """The k records most similar to `query` and/or best matching `text`, best first.

        Args:
            query: a vector of length `dim` (any float array-like; NaN and inf are refused),
                or None for a keyword-only search (then `text` is required).
            k: how many hits at most; fewer only when fewer live records match.
            filter: a filter dict (see the filter reference), applied before ranking, so
                the k best *matching* records come back (on both sides of a hybrid search).
            top_blocks: WSBR blocks scored exactly per segment (default: the membrane's
                IndexParams, else a per-segment default). More is slower and more exact.
            widen_blocks: extra candidate blocks re-ranked by centroid score.
            exact: score every live record (the exact answer; what recall is measured against).
            text: a keyword query, ranked by BM25 over the records' texts with the statistics
                of the whole membrane (see bm25.py); with `query` too, a hybrid search.
            fusion: how a hybrid search fuses its two lists: "rrf" (reciprocal rank fusion,
                1 / (60 + rank) per list) or "weighted" (min-max normalised scores).
            alpha: the vector side's weight in [0, 1] for fusion="weighted".

        Returns:
            `Hit(id, score, metadata, text)` items sorted by score descending, ties by id
            ascending. Vector scores are "higher is more similar": cosine similarity, inner
            product, or the negated squared Euclidean distance; keyword scores are BM25
            scores; hybrid scores are the fused scores. The memtables are always searched
            exactly; frozen segments through WSBR unless `exact=True`.
        """
        request = self._search_request(query, k, filter, top_blocks, widen_blocks, exact,
                                       None if text is None else [text], fusion, alpha, True)
        return self._run(request)[0]

    def search_batch(self, queries: Any, k: int = 10, filter: dict | None = None, *,
                     top_blocks: int | None = None, widen_blocks: int | None = None,
                     exact: bool = False, texts: Any = None, fusion: str = "rrf",
                     alpha: float = 0.5) -> list[list[Hit]]:
        """`search` for each row of an (n, dim) `queries` matrix (or None) and/or each of
        `texts` (one keyword query per row), in one pass over the shards.

        Returns one hit list per query, in order; the arguments mean what they mean in `search`.
        """
        return self._run(self._search_request(queries, k, filter, top_blocks, widen_blocks,
                                              exact, texts, fusion, alpha, False))

    def _vector_hits(self, queries: np.ndarray, params: SearchParams) -> list[list[tuple]]:
        """Per query: the k best (score, id, metadata, text) of every shard. The shards are
        read on this thread (and idle helpers, fanout.py); metadata and text are decoded
        only for the final k. A read-mostly membrane is searched by its read plan instead
        (read_plan.py): the same answer, without visiting the shards one by one."""
        planned = self._db._search_by_plan(self.meta, queries, params)
        if planned is not None:
            return planned
        outcomes = self._db._read_spread(self.meta.membrane_id, "search_found", queries, params,
                                         discard=_release_found)
        held: set = set()
        errors = []
        for outcome in outcomes:
            if outcome.error is None:
                held |= outcome.value[1]
            else:
                errors.append(outcome.error)
        try:
            if errors:
                raise errors[0]
            return [read_payloads(hits)
                    for hits in merge_hits([outcome.value[0] for outcome in outcomes], params.k)]
        finally:
            for segment in held:
                segment.release()

    def _run(self, request: _Request) -> list[list[Hit]]:
        if request.count == 0:
            return []
        vector = keyword = None
        if request.matrix is not None:
            vector = self._vector_hits(request.matrix, request.params)
        if request.terms is not None:
            keyword = [self._keyword_hits(terms, request) for terms in request.terms]
        return request.answer(vector, keyword)

    def _keyword_hits(self, terms: list[str], request: _Request) -> list[tuple]:
        if not terms:
            return []
        mid = self.meta.membrane_id
        corpus = bm25.CorpusStats.total(self._db._read_all("keyword_stats", mid, terms))
        found = self._db._read_all("keyword_search", mid, terms, corpus, request.params.k,
                                   request.params.flt)
        return merge_hits([[hits] for hits in found], request.params.k)[0]

    async def _akeyword_hits(self, terms: list[str], request: _Request) -> list[tuple]:
        if not terms:
            return []
        mid = self.meta.membrane_id
        corpus = bm25.CorpusStats.total(await self._db._abroadcast("keyword_stats", mid, terms))
        found = await self._db._abroadcast("keyword_search", mid, terms, corpus,
                                           request.params.k, request.params.flt)
        return merge_hits([[hits] for hits in found], request.params.k)[0]

    def _search_request(self, queries: Any, k: Any, filter: Any, top_blocks: Any,
                        widen_blocks: Any, exact: Any, texts: Any, fusion: Any, alpha: Any,
                        single: bool) -> _Request:
        """The validated request, before any shard is asked."""
        if queries is None and texts is None:
            raise InvalidArgumentError("search needs a query vector, a text, or both")
        matrix = None
        if queries is not None:
            matrix = validation.check_vectors(queries, self.dim, single=single)
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
        if fusion not in fusion_.FUSIONS:
            raise InvalidArgumentError(f"fusion must be one of {fusion_.FUSIONS}, got {fusion!r}")
        if (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                or not 0.0 <= alpha <= 1.0):
            raise InvalidArgumentError(f"alpha must be a number in [0, 1], got {alpha!r}")
        terms = None if texts is None else self._query_terms(texts, matrix)
        flt = compile_filter(filter)
        params = SearchParams(
            k=int(k), flt=flt, exact=exact,
            top_blocks=top_blocks if top_blocks is not None else self._params.wsbr_top_blocks,
            widen_blocks=(widen_blocks if widen_blocks is not None
                          else self._params.wsbr_widen_blocks),
            mode=self._params.wsbr_mode,
            routing=None if matrix is None or exact else wsbr.routing_rows(matrix, self.metric),
            shards=self._db.shard_count)
        return _Request(matrix, terms, params, fusion, float(alpha))

    def _query_terms(self, texts: Any, matrix: np.ndarray | None) -> list[list[str]]:
        """Each keyword query's distinct terms, in query order (the membrane's analyzer)."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise InvalidArgumentError("texts must be a list of str (one keyword query per row)")
        if matrix is not None and len(texts) != len(matrix):
            raise InvalidArgumentError(
                f"got {len(matrix)} query vectors but {len(texts)} texts; they must match")
        analyze = self._params.analyzer()
        out = []
        for text in texts:
            if not isinstance(text, str):
                raise InvalidArgumentError(f"text must be a str, got {type(text).__name__}")
            out.append(list(dict.fromkeys(analyze(text))))
        return out

    def scan(self, filter: dict | None = None) -> Iterator[Record]:
        """Every live record, newest-wins, shard by shard (each shard a consistent snapshot)."""
        flt = compile_filter(filter)
        self._db._require_open()
        return self._db._scan_shards(self.meta.membrane_id, flt)

    # ------------------------------------------------------------------ async twins

    async def aput(self, id: int, vector: Any, metadata: dict | None = None, *,
                   text: str | None = None) -> None:
        """Async twin of `put`."""
        shard, args = self._single_put(id, vector, metadata, text)
        await self._db._acall(shard, "put", *args)

    async def aput_batch(self, ids: Any, vectors: Any, metadatas: Any = None, *,
                         texts: Any = None) -> None:
        """Async twin of `put_batch`; the shards' parts are written concurrently."""
        await self._db._aput_parts(*self._put_commands(ids, vectors, metadatas, texts))

    async def adelete(self, id: int) -> bool:
        """Async twin of `delete`."""
        return await self.adelete_batch([validation.check_id(id)]) == 1

    async def adelete_batch(self, ids: Any) -> int:
        """Async twin of `delete_batch`."""
        self._db._require_writable()
        unique = validation.unique_ids(ids)
        parts = [self._db._acall(shard, "delete", self.meta.membrane_id, unique[rows])
                 for shard, rows in enumerate(routing.split(unique, self._db.shard_count))
                 if len(rows)]
        return sum(await asyncio.gather(*parts))

    async def adelete_where(self, filter: dict) -> int:
        """The async delete_where(): an empty filter is refused the same way."""
        self._db._require_writable()
        flt = _restricting_filter(filter, "aclear()")
        return sum(await self._db._abroadcast("delete_where", self.meta.membrane_id, flt))

    async def aclear(self) -> int:
        """The async clear()."""
        self._db._require_writable()
        return sum(await self._db._abroadcast("delete_where", self.meta.membrane_id, None))

    async def aget(self, id: int) -> Record | None:
        """Async twin of `get`."""
        key = validation.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return (await self._db._acall(shard, "get", self.meta.membrane_id, [key]))[0]

    async def aget_batch(self, ids: Any) -> list[Record | None]:
        """Async twin of `get_batch`."""
        keys = validation.check_ids(ids)
        out: list = [None] * len(keys)
        split = [(rows, shard) for shard, rows in
                 enumerate(routing.split(keys, self._db.shard_count)) if len(rows)]
        results = await asyncio.gather(*(
            self._db._acall(shard, "get", self.meta.membrane_id, keys[rows].tolist())
            for rows, shard in split))
        for (rows, _), values in zip(split, results):
            for row, value in zip(rows.tolist(), values):
                out[row] = value
        return out

    async def aexists(self, id: int) -> bool:
        """Async twin of `exists`."""
        key = validation.check_id(id)
        shard = routing.shard_of(key, self._db.shard_count)
        return (await self._db._acall(shard, "exists", self.meta.membrane_id, [key]))[0]

    async def acount(self) -> int:
        """Async twin of `count`."""
        return sum(await self._db._abroadcast("count", self.meta.membrane_id))

    async def asearch(self, query: Any, k: int = 10, filter: dict | None = None, *,
                      top_blocks: int | None = None, widen_blocks: int | None = None,
                      exact: bool = False, text: str | None = None, fusion: str = "rrf",
                      alpha: float = 0.5) -> list[Hit]:
        """Async twin of `search`: fans the query out to all shards concurrently and merges."""
        request = self._search_request(query, k, filter, top_blocks, widen_blocks, exact,
                                       None if text is None else [text], fusion, alpha, True)
        return (await self._arun(request))[0]

    async def asearch_batch(self, queries: Any, k: int = 10, filter: dict | None = None, *,
                            top_blocks: int | None = None, widen_blocks: int | None = None,
                            exact: bool = False, texts: Any = None, fusion: str = "rrf",
                            alpha: float = 0.5) -> list[list[Hit]]:
        """Async twin of `search_batch`."""
        return await self._arun(self._search_request(queries, k, filter, top_blocks,
                                                     widen_blocks, exact, texts, fusion, alpha,
                                                     False))

    async def _arun(self, request: _Request) -> list[list[Hit]]:
        if request.count == 0:
            return []
        vector = keyword = None
        if request.matrix is not None:
            found = await self._db._abroadcast("search", self.meta.membrane_id, request.matrix,
                                               request.params)
            vector = merge_hits(found, request.params.k)
        if request.terms is not None:
            keyword = list(await asyncio.gather(
                *(self._akeyword_hits(terms, request) for terms in request.terms)))
        return request.answer(vector, keyword)


def _release_found(found: tuple[list, set]) -> None:
    """Lets go of the segments a search_found read acquired for hits nobody will read."""
    for segment in found[1]:
        segment.release()


@dataclass(frozen=True)
class _Request:
    """A validated search: vectors and/or keyword terms, one entry per query."""

    matrix: np.ndarray | None
    terms: list[list[str]] | None
    params: SearchParams
    fusion: str
    alpha: float

    @property
    def count(self) -> int:
        return len(self.matrix) if self.matrix is not None else len(self.terms or ())

    def answer(self, vector: list[list[tuple]] | None,
               keyword: list[list[tuple]] | None) -> list[list[Hit]]:
        if vector is None or keyword is None:
            lists = vector if vector is not None else keyword
            assert lists is not None
        else:
            lists = [fusion_.fuse(v, w, self.params.k, self.fusion, self.alpha)
                     for v, w in zip(vector, keyword)]
        return [[make_hit(key, float(score), meta, text) for score, key, meta, text in hits]
                for hits in lists]


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
