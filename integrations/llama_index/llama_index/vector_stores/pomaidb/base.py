"""PomaiDBVectorStore: a LlamaIndex vector store on one PomaiDB membrane.

Each node is one engine record (layout in codec.py): its embedding is the
vector, its text is the record's text (BM25-indexed), its metadata and every
other field ride in the record's metadata, so `stores_text=True` and nodes
come back exactly as added.

Query modes: DEFAULT and MMR (vector), TEXT_SEARCH and SPARSE (BM25 over the
node texts, top `sparse_top_k` or else `similarity_top_k`), HYBRID (both
lists fused: reciprocal rank fusion when `alpha` is None, else weighted with
`alpha` as LlamaIndex defines it, 1.0 = vector only; top `hybrid_top_k` or
else `similarity_top_k`). A query without `query_embedding` in DEFAULT mode
but with filters, doc_ids or node_ids returns up to `similarity_top_k`
matching nodes (in engine order, similarity 1.0), as Chroma and Qdrant do.

Similarities in query results are the engine's scores, higher is better:
cosine similarity for metric="cosine" (in [-1, 1]), the inner product for
"ip", and the negated squared Euclidean distance for "l2" (<= 0).

The async methods await the engine's own coroutines (asearch fans a query
out to every shard concurrently), so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from tqdm import tqdm
from typing_extensions import Self

import pomaidb_core as pdb
from pomaidb_core import InvalidArgumentError
from pomaidb_core.stores import warn_if_membrane_elsewhere

from .codec import (
    NODE_ID_KEY,
    REF_DOC_ID_KEY,
    check_no_collisions,
    decode_node,
    encode_metadata,
    engine_id,
    id_byteorder,
    record_text,
    stored_node_id,
    unique_nodes,
)
from .filters import EngineFilter, all_of, to_engine_filter
from .mmr import DEFAULT_MMR_THRESHOLD, mmr_order

METRICS = ("cosine", "ip", "l2")  # API.md: the engine's metrics
DEFAULT_MEMBRANE = "llamaindex"  # the membrane a store uses unless given membrane=
DEFAULT_MMR_PREFETCH_FACTOR = 4  # MMR re-ranks this many times similarity_top_k candidates
# The keyword arguments query()/aquery() read (VectorIndexRetriever passes its
# vector_store_kwargs); any other is reported by a warning, never silently dropped.
QUERY_KWARGS = ("exact", "mmr_threshold", "mmr_prefetch_factor", "mmr_prefetch_k", "pomaidb_filter")
PROGRESS_BATCH_SIZE = 256  # nodes per engine batch when add() shows progress


class PomaiDBVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store backed by a PomaiDB membrane.

    Args:
        path: directory of the database; opened (created if missing) here and
            closed by close(). Leave None when passing `db`.
        membrane: name of the membrane holding the nodes (default "llamaindex").
            Opening a database whose membranes do not include it, while others
            exist, warns (UserWarning) naming them: a store reopened without
            its original membrane= would otherwise just find nothing.
        metric: "cosine", "ip" or "l2"; fixed when the membrane is created.
        dim: embedding dimension; None infers it from the first node added.
        db: an already open `pomaidb_core.DB` to use instead of `path`; the
            caller keeps ownership (close() leaves it open).
        exact: score every record instead of the WSBR index (slower, exact).
        **db_options: `pomaidb_core.Options` fields (shards=, sync=, ...).

    Query semantics: `node_ids` restricts the search when it is a non-empty
    list (an empty list restricts nothing: VectorIndexRetriever sends one);
    `doc_ids` restricts it whenever given, so `doc_ids=[]` finds nothing;
    `filters` take every FilterOperator and FilterCondition, nested groups
    included, and dotted keys ("author.name") read nested metadata; mode=MMR
    re-ranks candidates (see mmr.py) with `mmr_threshold` from the query or
    a keyword argument. Keyword arguments (QUERY_KWARGS): `exact`,
    `mmr_threshold`, `mmr_prefetch_factor` or `mmr_prefetch_k` (not both),
    and `pomaidb_filter`, a filter in the engine's own language ANDed with
    the rest, for what MetadataFilters cannot say ($between, $like, $ilike,
    ...). Any other keyword warns.
    """

    stores_text: bool = True
    flat_metadata: bool = False

    path: str | None = None
    membrane: str = DEFAULT_MEMBRANE
    metric: str = "cosine"
    dim: int | None = None
    exact: bool = False

    _db: Any = PrivateAttr(default=None)
    _owns_db: bool = PrivateAttr(default=False)
    _collection: Any = PrivateAttr(default=None)
    _id_order: str = PrivateAttr(default="big")  # codec.id_byteorder of the membrane

    def __init__(
        self,
        path: str | None = None,
        membrane: str = DEFAULT_MEMBRANE,
        metric: str = "cosine",
        dim: int | None = None,
        *,
        db: pdb.DB | None = None,
        exact: bool = False,
        **db_options: Any,
    ) -> None:
        _validate_settings(path, db, metric, dim, db_options)
        super().__init__(
            path=None if path is None else str(path),
            membrane=membrane,
            metric=metric,
            dim=dim,
            exact=exact,
        )
        self._owns_db = db is None
        self._db = pdb.open(str(path), **db_options) if db is None else db
        try:
            self._collection = self._open_existing_membrane()
        except BaseException:
            self.close()
            raise

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this store under."""
        return "PomaiDBVectorStore"

    @property
    def client(self) -> Any:
        """The `pomaidb_core.DB` underneath."""
        return self._db

    def close(self) -> None:
        """Close the database if this store opened it. Idempotent."""
        if self._owns_db and self._db is not None:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------

    def add(
        self, nodes: Sequence[BaseNode], *, show_progress: bool = False, **add_kwargs: Any
    ) -> list[str]:
        """Upsert `nodes` (each needs an embedding); returns their ids in order.

        Every node is checked before anything is written. `show_progress=True` draws a tqdm
        bar and writes PROGRESS_BATCH_SIZE nodes per engine batch (otherwise one batch).
        """
        batch = unique_nodes(nodes)
        if not batch:
            return []
        ids, vectors, metadatas, texts = _to_columns(batch, self._id_order)
        membrane = self._membrane_for(vectors.shape[1])
        check_no_collisions([n.node_id for n in batch], membrane.get_batch(ids))
        with _progress_bar(len(ids), show_progress) as bar:
            for part in _slices(len(ids), show_progress):
                membrane.put_batch(ids[part], vectors[part], metadatas[part], texts=texts[part])
                bar.update(part.stop - part.start)
        return [node.node_id for node in nodes]

    async def async_add(
        self, nodes: Sequence[BaseNode], *, show_progress: bool = False, **kwargs: Any
    ) -> list[str]:
        """Like add(), awaiting the engine's coroutines."""
        batch = unique_nodes(nodes)
        if not batch:
            return []
        ids, vectors, metadatas, texts = _to_columns(batch, self._id_order)
        membrane = self._collection
        if membrane is None:
            # Creating the membrane commits the manifest (fsyncs): off the event loop, once.
            membrane = await asyncio.to_thread(self._membrane_for, vectors.shape[1])
        check_no_collisions([n.node_id for n in batch], await membrane.aget_batch(ids))
        with _progress_bar(len(ids), show_progress) as bar:
            for part in _slices(len(ids), show_progress):
                await membrane.aput_batch(ids[part], vectors[part], metadatas[part],
                                          texts=texts[part])
                bar.update(part.stop - part.start)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose source document is `ref_doc_id`."""
        if self._collection is not None:
            self._collection.delete_where({REF_DOC_ID_KEY: ref_doc_id})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async twin of `delete`."""
        if self._collection is not None:
            await self._collection.adelete_where({REF_DOC_ID_KEY: ref_doc_id})

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes named by `node_ids` that also match `filters`.

        Unlike a query, this never widens to "everything": with neither node
        ids nor a restricting filter it deletes nothing (use clear() for that).
        """
        membrane, where = self._collection, to_engine_filter(filters)
        if membrane is None or not _deletes_anything(node_ids, where):
            return
        if where is None:
            ids = _ids_holding(node_ids, membrane.get_batch(_engine_ids(node_ids, self._id_order)))
            membrane.delete_batch(ids)
        else:
            membrane.delete_where(all_of(_node_id_filter(node_ids), where))

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Async twin of `delete_nodes`."""
        membrane, where = self._collection, to_engine_filter(filters)
        if membrane is None or not _deletes_anything(node_ids, where):
            return
        if where is None:
            stored = await membrane.aget_batch(_engine_ids(node_ids, self._id_order))
            await membrane.adelete_batch(_ids_holding(node_ids, stored))
        else:
            await membrane.adelete_where(all_of(_node_id_filter(node_ids), where))

    def clear(self) -> None:
        """Delete every node; the membrane (and its dimension) stays."""
        if self._collection is not None:
            self._collection.clear()

    async def aclear(self) -> None:
        """Async twin of `clear`."""
        if self._collection is not None:
            await self._collection.aclear()

    # -- reads ----------------------------------------------------------------

    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Stored nodes, with their embeddings.

        `node_ids` (in that order, missing ones skipped) when given, else every
        node; either way only those matching `filters`. An empty `node_ids`
        list names no node.
        """
        membrane, where = self._collection, to_engine_filter(filters)
        if membrane is None or node_ids == []:
            return []
        if node_ids is not None and where is None:
            return _nodes_holding(node_ids, membrane.get_batch(_engine_ids(node_ids, self._id_order)))
        records = membrane.scan(all_of(_node_id_filter(node_ids), where))
        return [decode_node(r.metadata, r.vector, r.text) for r in records]

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Async twin of `get_nodes`."""
        membrane, where = self._collection, to_engine_filter(filters)
        if membrane is None or node_ids == []:
            return []
        if node_ids is not None and where is None:
            stored = await membrane.aget_batch(_engine_ids(node_ids, self._id_order))
            return _nodes_holding(node_ids, stored)
        # The engine has no async scan yet: a worker thread keeps the event loop free.
        where = all_of(_node_id_filter(node_ids), where)
        records = await asyncio.to_thread(lambda: list(membrane.scan(where)))
        return [decode_node(r.metadata, r.vector, r.text) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The best nodes for `query` in its mode (see the module docstring)."""
        plan = _QueryPlan(query, kwargs, self.exact)
        membrane = self._collection
        if membrane is None:
            return _result([])
        if plan.listing:
            return _result(_first(membrane.scan(plan.where), plan.k))
        hits = membrane.search(plan.vector, plan.fetch_k, plan.where, **plan.search_options)
        if plan.mmr_threshold is None:
            return _result(hits)
        stored = membrane.get_batch([hit.id for hit in hits])
        return _result(plan.mmr_pick(hits, stored))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async twin of `query`: the search fans out to every shard concurrently."""
        plan = _QueryPlan(query, kwargs, self.exact)
        membrane = self._collection
        if membrane is None:
            return _result([])
        if plan.listing:  # the engine has no async scan yet: a worker thread
            records = await asyncio.to_thread(lambda: _first(membrane.scan(plan.where), plan.k))
            return _result(records)
        hits = await membrane.asearch(plan.vector, plan.fetch_k, plan.where,
                                      **plan.search_options)
        if plan.mmr_threshold is None:
            return _result(hits)
        stored = await membrane.aget_batch([hit.id for hit in hits])
        return _result(plan.mmr_pick(hits, stored))

    # -- membrane lifecycle ---------------------------------------------------

    def _open_existing_membrane(self) -> Any:
        """The membrane if it exists or `dim` is known; None until the first add."""
        warn_if_membrane_elsewhere(self._db, self.membrane, stacklevel=4)
        if self.dim is not None:
            membrane = self._db.get_or_create_membrane(
                self.membrane, dim=self.dim, metric=self.metric)
        elif self.membrane not in self._db.membranes():
            return None
        else:
            membrane = self._db.membrane(self.membrane)
            if membrane.metric != self.metric:
                raise InvalidArgumentError(
                    f"membrane {self.membrane!r} exists with metric {membrane.metric!r}, "
                    f"not {self.metric!r}"
                )
            self.dim = membrane.dim
        self._id_order = id_byteorder(next(iter(membrane.scan()), None))
        return membrane

    def _membrane_for(self, dim: int) -> Any:
        """The membrane, created with dimension `dim` on the first add."""
        if self._collection is None:
            self._collection = self._db.get_or_create_membrane(
                self.membrane, dim=dim, metric=self.metric
            )
            self.dim = dim
        return self._collection


class _QueryPlan:
    """What one VectorStoreQuery asks of the engine, validated once for sync and async."""

    def __init__(self, query: VectorStoreQuery, kwargs: dict[str, Any], exact: bool) -> None:
        _warn_unknown_kwargs(kwargs)
        mode = query.mode
        if mode not in _MODES:
            raise InvalidArgumentError(
                f"PomaiDBVectorStore supports query modes {[m.value for m in _MODES]}, "
                f"not {mode.value!r}")
        self.where = all_of(
            to_engine_filter(query.filters),
            _native_filter(kwargs.get("pomaidb_filter")),
            _only(REF_DOC_ID_KEY, query.doc_ids),
            _in_filter(NODE_ID_KEY, query.node_ids),
        )
        self.k = _top_k(query)
        uses_vector = mode in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR,
                               VectorStoreQueryMode.HYBRID)
        self.listing = (mode == VectorStoreQueryMode.DEFAULT and query.query_embedding is None
                        and self.where is not None)
        if uses_vector and query.query_embedding is None and not self.listing:
            raise InvalidArgumentError(
                f"query mode {mode.value!r} needs query.query_embedding (or, in the default "
                "mode, filters, doc_ids or node_ids to list the matching nodes)")
        self.vector = (np.asarray(query.query_embedding, dtype=np.float32)
                       if uses_vector and not self.listing else None)
        self.search_options: dict[str, Any] = {"exact": bool(kwargs.get("exact", exact))}
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            if not isinstance(query.query_str, str):
                raise InvalidArgumentError(f"query mode {mode.value!r} needs query.query_str")
            self.search_options["text"] = query.query_str
        if mode == VectorStoreQueryMode.HYBRID and query.alpha is not None:
            self.search_options.update(fusion="weighted", alpha=float(query.alpha))
        self.mmr_threshold = _mmr_threshold(query, kwargs)
        self.fetch_k = self.k
        prefetch_k, factor = kwargs.get("mmr_prefetch_k"), kwargs.get("mmr_prefetch_factor")
        if prefetch_k is not None and factor is not None:
            # Chroma's and Qdrant's stores refuse the pair too: which one wins is anyone's guess.
            raise InvalidArgumentError("give mmr_prefetch_k or mmr_prefetch_factor, not both")
        if self.mmr_threshold is not None:
            factor = DEFAULT_MMR_PREFETCH_FACTOR if factor is None else factor
            self.fetch_k = int(self.k * factor if prefetch_k is None else prefetch_k)
            if self.fetch_k < self.k:
                raise InvalidArgumentError(
                    f"mmr_prefetch_k ({self.fetch_k}) must be >= similarity_top_k ({self.k})"
                )

    def mmr_pick(self, hits: Sequence[Any], stored: Sequence[Any]) -> list[Any]:
        """The hits MMR keeps, in pick order (records deleted meanwhile drop out)."""
        present = [(hit, rec) for hit, rec in zip(hits, stored) if rec is not None]
        if not present:
            return []
        vectors = np.stack([rec.vector for _, rec in present])
        assert self.mmr_threshold is not None
        order = mmr_order(self.vector, vectors, self.k, self.mmr_threshold)
        return [present[i][0] for i in order]


def _mmr_threshold(query: VectorStoreQuery, kwargs: dict[str, Any]) -> float | None:
    """lambda for an MMR query (keyword, then the query's field, then 0.5); None otherwise."""
    if query.mode == VectorStoreQueryMode.MMR:
        threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
        return DEFAULT_MMR_THRESHOLD if threshold is None else float(threshold)
    return None


_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR,
          VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE,
          VectorStoreQueryMode.HYBRID)


def _top_k(query: VectorStoreQuery) -> int:
    """The mode's top k: sparse_top_k for keyword modes, hybrid_top_k for HYBRID, when set."""
    k = query.similarity_top_k
    if query.mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE):
        k = query.sparse_top_k or k
    elif query.mode == VectorStoreQueryMode.HYBRID:
        k = query.hybrid_top_k or k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidArgumentError(f"the query's top k must be an int >= 1, got {k!r}")
    return k


def _first(records: Any, k: int) -> list[Any]:
    return [record for _, record in zip(range(k), records)]


def _result(hits: Sequence[Any]) -> VectorStoreQueryResult:
    """Hits (or, when listing, Records: similarity 1.0) as a query result."""
    nodes = [decode_node(hit.metadata, text=hit.text) for hit in hits]
    return VectorStoreQueryResult(
        nodes=nodes,
        similarities=[float(getattr(hit, "score", 1.0)) for hit in hits],
        ids=[node.node_id for node in nodes],
    )


def _slices(total: int, in_steps: bool) -> list[slice]:
    step = PROGRESS_BATCH_SIZE if in_steps else total
    return [slice(start, min(start + step, total)) for start in range(0, total, step)]


def _progress_bar(total: int, shown: bool) -> tqdm:
    return tqdm(total=total, disable=not shown, desc="Adding nodes", unit="node")


def _to_columns(nodes: Sequence[BaseNode], id_order: str
                ) -> tuple[list[int], np.ndarray, list[dict[str, Any]], list[str | None]]:
    """Engine ids, an (n, dim) float32 matrix, record metadata and texts for `nodes`."""
    try:
        vectors = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
    except ValueError as exc:
        raise InvalidArgumentError(f"every node needs an embedding of one length: {exc}") from exc
    return (
        [engine_id(node.node_id, id_order) for node in nodes],
        vectors,
        [encode_metadata(node) for node in nodes],
        [record_text(node) for node in nodes],
    )


def _engine_ids(node_ids: Sequence[str], id_order: str) -> list[int]:
    return [engine_id(node_id, id_order) for node_id in node_ids]


def _ids_holding(node_ids: Sequence[str], stored: Sequence[Any]) -> list[int]:
    """Engine ids of the records that really hold the asked-for node (not a hash collision)."""
    return [
        rec.id
        for node_id, rec in zip(node_ids, stored)
        if rec is not None and stored_node_id(rec.metadata) == node_id
    ]


def _nodes_holding(node_ids: Sequence[str], stored: Sequence[Any]) -> list[BaseNode]:
    seen: set[str] = set()
    nodes = []
    for node_id, rec in zip(node_ids, stored):
        if rec is None or node_id in seen or stored_node_id(rec.metadata) != node_id:
            continue
        seen.add(node_id)
        nodes.append(decode_node(rec.metadata, rec.vector, rec.text))
    return nodes


def _in_filter(key: str, values: list[str] | None) -> EngineFilter | None:
    """Restrict `key` to `values`; None or [] restricts nothing (VectorIndexRetriever sends [])."""
    return {key: {"$in": list(values)}} if values else None


def _only(key: str, values: list[str] | None) -> EngineFilter | None:
    """Restrict `key` to `values` exactly ([] matches nothing); only None restricts nothing."""
    return None if values is None else {key: {"$in": list(values)}}


def _node_id_filter(node_ids: list[str] | None) -> EngineFilter | None:
    return _only(NODE_ID_KEY, node_ids)


def _native_filter(spec: Any) -> EngineFilter | None:
    """The pomaidb_filter keyword: None or a dict in the engine's filter language."""
    if spec is not None and not isinstance(spec, dict):
        raise InvalidArgumentError(
            f"pomaidb_filter must be a dict in the PomaiDB filter language, got {type(spec).__name__}"
        )
    return spec or None


def _warn_unknown_kwargs(kwargs: dict[str, Any]) -> None:
    # A warning, not an error: LlamaIndex stores take **kwargs and ignore what they do not
    # know, so shared retriever settings (vector_store_kwargs) must keep working here.
    unknown = sorted(set(kwargs) - set(QUERY_KWARGS))
    if unknown:
        warnings.warn(
            f"PomaiDBVectorStore.query ignores the keyword argument(s) {unknown}; "
            f"it reads {list(QUERY_KWARGS)}",
            UserWarning,
            stacklevel=4,
        )


def _deletes_anything(node_ids: list[str] | None, where: EngineFilter | None) -> bool:
    if node_ids is not None:
        return len(node_ids) > 0
    return where is not None


def _validate_settings(
    path: str | None,
    db: Any | None,
    metric: str,
    dim: int | None,
    db_options: dict[str, Any],
) -> None:
    if (path is None) == (db is None):
        raise InvalidArgumentError("give exactly one of path= and db=")
    if db is not None and db_options:
        raise InvalidArgumentError(
            f"db= is already open; options {sorted(db_options)} do not apply"
        )
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {METRICS}, got {metric!r}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise InvalidArgumentError(f"dim must be a positive int or None, got {dim!r}")
