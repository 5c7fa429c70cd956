"""PomaiDBVectorStore: LangChain's VectorStore over one membrane of a PomaiDB database.

Each Document is one engine record (records.py: the text and the string id ride in the
record's metadata beside the Document's own keys). String ids map to engine ids by a frozen
hash (ids.py), and the stored string id is compared on every write, read and delete, so a hash
collision raises IdCollisionError instead of touching another document.

`filter=` is either a dict in the API.md filter language, evaluated by the engine, or a
callable Document -> bool, evaluated here on ever larger engine result sets until k documents
match or the membrane is exhausted. Either way a search returns k matching documents whenever
k exist.

The membrane is created on the first write, with the embedding's dimension; until then the
store is empty. Every a* method awaits the embeddings' aembed_* and the membrane's async calls
(which fan out to the shards on the event loop); none runs a sync method in a thread pool.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from tqdm import tqdm
from typing_extensions import Self

import pomaidb_core as pdb
from pomaidb_core.stores import warn_if_membrane_elsewhere

from . import batching, ids, mmr, records
from .relevance import RELEVANCE_BY_METRIC

DEFAULT_MEMBRANE = "langchain"  # the membrane a store uses unless given membrane=
DEFAULT_BATCH_SIZE = 1024  # documents embedded and written per engine batch
_SEARCH_OPTIONS = ("exact", "top_blocks", "widen_blocks")  # passed through to membrane.search
# "dense": vector search on the query's embedding; "keyword": BM25 over the page contents
# (no embedding computed); "hybrid": both, fused by reciprocal rank (the engine's search).
RETRIEVAL_MODES = ("dense", "keyword", "hybrid")
_FETCH_GROWTH = 4  # a callable filter re-searches with 4x more candidates until k match

Filter = dict[str, Any] | Callable[[Document], bool] | None
Match = tuple[Document, float, int]  # a search result: the Document, its score, its engine id


class PomaiDBVectorStore(VectorStore):
    """A LangChain vector store kept in a PomaiDB membrane.

    Args:
        embedding: the Embeddings used for documents and queries.
        path: directory of the database to open (created if missing); the store owns that
            database and close() closes it. Exactly one of `path` and `db` is given.
        membrane: name of the membrane holding the documents (default "langchain"). Opening a
            database whose membranes do not include it, while others exist, warns
            (UserWarning) naming them: a store reopened without its original membrane= would
            otherwise just find nothing.
        metric: "cosine" (default), "ip" or "l2"; fixed when the membrane is created.
        db: an open pomaidb_core.DB to share; the caller keeps it and closes it.
        dim: create the membrane now with this dimension, instead of at the first write.
        batch_size: documents embedded and written per batch by add_* (default 1024).
        show_progress: default for add_*'s progress bar (tqdm), off unless asked for.
        relevance_score_fn: engine score -> [0, 1]; defaults to relevance.RELEVANCE_BY_METRIC.
        retrieval_mode: how the text-query searches (similarity_search*, and so
            as_retriever()) retrieve: "dense" (default), "keyword" (BM25 over the
            page contents) or "hybrid" (both, reciprocal rank fusion); a call may override it
            with retrieval_mode=. Searches by vector are always dense.
        **db_options: pomaidb_core.Options fields for the database opened at `path`
            (shards=, sync=, ...).
    """

    def __init__(
        self,
        embedding: Embeddings,
        path: str | os.PathLike[str] | None = None,
        membrane: str = DEFAULT_MEMBRANE,
        metric: str = "cosine",
        *,
        db: Any = None,
        dim: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress: bool = False,
        relevance_score_fn: Callable[[float], float] | None = None,
        retrieval_mode: str = "dense",
        **db_options: Any,
    ) -> None:
        if (path is None) == (db is None):
            raise pdb.InvalidArgumentError(
                "give exactly one of path= (open that database) or db= (share an open one)"
            )
        if db is not None and db_options:
            raise pdb.InvalidArgumentError(
                f"database options {sorted(db_options)} apply only with path="
            )
        if metric not in RELEVANCE_BY_METRIC:
            raise pdb.InvalidArgumentError(
                f"metric must be one of {sorted(RELEVANCE_BY_METRIC)}, got {metric!r}"
            )
        _check_positive("batch_size", batch_size)
        self.retrieval_mode = _check_mode(retrieval_mode)
        self.embedding = embedding
        self.metric = metric
        self.membrane_name = membrane
        self._batch_size = batch_size
        self._show_progress = show_progress
        self._relevance_score_fn = relevance_score_fn or RELEVANCE_BY_METRIC[metric]
        self._owns_db = db is None
        self._db = db if db is not None else _open_db(path, db_options)
        self._membrane: Any = None
        try:
            warn_if_membrane_elsewhere(self._db, membrane, stacklevel=3)
            if dim is not None:
                self._open_membrane(dim=dim, create=True)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        """The Embeddings this store was built with."""
        return self.embedding

    @property
    def db(self) -> Any:
        """The pomaidb_core.DB underneath (for freeze(), compact(), stats(), ...)."""
        return self._db

    def close(self) -> None:
        """Close the database if this store opened it; idempotent."""
        self._membrane = None
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open_membrane(self, dim: int | None = None, create: bool = False) -> Any:
        """The membrane, or None while it does not exist and `create` is false.

        Only a handle obtained with a dimension is kept: get_or_create_membrane checks the
        dimension and metric of an existing membrane, so a store reopened with another
        metric fails loudly at its first search or write instead of scoring wrongly.
        """
        if self._membrane is not None:
            return self._membrane
        if not create and self.membrane_name not in self._db.membranes():
            return None
        if dim is None:
            return self._db.membrane(self.membrane_name)
        self._membrane = self._db.get_or_create_membrane(
            self.membrane_name, dim=dim, metric=self.metric
        )
        return self._membrane

    # -- writes ----------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store built by the constructor's keywords (path=, membrane=, ...) holding `texts`."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async twin of `from_texts`."""
        store = cls(embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Embed and upsert texts in batches; returns their ids (generated where missing).

        `texts` may be any iterable, a generator included: at most `batch_size` documents are
        held at a time. Re-adding an id replaces its document. Batches are written one after
        another, so an error in a later batch leaves the earlier ones written.
        """
        items = records.items_from_texts(texts, metadatas, ids)
        return self._ingest(items, _length(texts), batch_size, show_progress)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Embed and upsert Documents; `ids=` takes precedence over each Document.id.

        Accepts add_texts' batch_size= and show_progress=. The Documents are not modified.
        """
        items = records.items_from_documents(documents, kwargs.pop("ids", None))
        return self._ingest(items, len(documents), **_ingest_options(kwargs))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Async twin of `add_texts`: embeds with `aembed_documents`, writes with the engine's coroutines."""
        items = records.items_from_texts(texts, metadatas, ids)
        return await self._aingest(items, _length(texts), batch_size, show_progress)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async twin of `add_documents`."""
        items = records.items_from_documents(documents, kwargs.pop("ids", None))
        return await self._aingest(items, len(documents), **_ingest_options(kwargs))

    def _ingest(
        self,
        items: Iterable[records.Item],
        total: int | None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        written: list[str] = []
        with batching.WriteAhead() as writer:
            for batch in self._batches(items, total, batch_size, show_progress, written):
                vectors = _as_matrix(self.embedding.embed_documents(batch.texts))
                writer.wait()  # the collision check must see the previous batch
                membrane = self._open_membrane()
                if membrane is not None:
                    records.check_no_collision(batch.items, membrane.get_batch(batch.engine_ids))
                membrane = self._open_membrane(dim=vectors.shape[1], create=True)
                writer.submit(membrane.put_batch, batch.engine_ids, vectors, _stored(batch),
                              texts=batch.texts)
        return written

    async def _aingest(
        self,
        items: Iterable[records.Item],
        total: int | None,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[str]:
        written: list[str] = []
        for batch in self._batches(items, total, batch_size, show_progress, written):
            membrane = self._open_membrane()
            if membrane is not None:
                records.check_no_collision(batch.items, await membrane.aget_batch(batch.engine_ids))
            vectors = _as_matrix(await self.embedding.aembed_documents(batch.texts))
            membrane = self._open_membrane(dim=vectors.shape[1], create=True)
            await membrane.aput_batch(batch.engine_ids, vectors, _stored(batch), texts=batch.texts)
        return written

    def _batches(
        self,
        items: Iterable[records.Item],
        total: int | None,
        batch_size: int | None,
        show_progress: bool | None,
        written: list[str],
    ) -> Iterator[batching.Batch]:
        """The write batches of an ingest; a batch counts as `written` (and on the progress
        bar) once the loop that writes it asks for the next one."""
        with self._progress_bar(total, show_progress) as bar:
            for batch in batching.batches(items, self._chosen_batch_size(batch_size)):
                yield batch
                written.extend(batch.ids)
                bar.update(len(batch.ids))

    def _chosen_batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self._batch_size
        _check_positive("batch_size", batch_size)
        return batch_size

    def _progress_bar(self, total: int | None, show_progress: bool | None) -> Any:
        shown = self._show_progress if show_progress is None else show_progress
        return tqdm(total=total, disable=not shown, desc="Adding documents", unit="doc")

    # -- deletes ---------------------------------------------------------------------------

    def delete(
        self,
        ids: list[str] | None = None,
        *,
        filter: dict[str, Any] | None = None,
        delete_all: bool = False,
    ) -> bool:
        """Delete by ids, by a filter (API.md language), or everything; returns whether it ran.

        - delete(ids): deletes those documents; ids that are missing are skipped (no error).
        - delete(filter={...}): deletes every document whose metadata matches.
        - delete(delete_all=True): deletes every document of the membrane.
        - delete() / delete(None): deletes NOTHING and returns False. Unlike LangChain's
          default ("None deletes all"), emptying a store must be asked for explicitly.
        """
        mode = _delete_mode(ids, filter, delete_all)
        if mode == "nothing":
            return False
        membrane = self._open_membrane()
        if membrane is None:
            return True
        if mode == "ids":
            wanted = _distinct(ids or [])
            if not wanted:
                return True
            held = membrane.get_batch(_engine_ids(wanted))
            membrane.delete_batch(_held_engine_ids(wanted, held))
        elif mode == "filter":
            membrane.delete_where(filter)
        else:
            membrane.clear()
        return True

    async def adelete(
        self,
        ids: list[str] | None = None,
        *,
        filter: dict[str, Any] | None = None,
        delete_all: bool = False,
    ) -> bool:
        """The async delete(); same arguments and the same delete(None) rule."""
        mode = _delete_mode(ids, filter, delete_all)
        if mode == "nothing":
            return False
        membrane = self._open_membrane()
        if membrane is None:
            return True
        if mode == "ids":
            wanted = _distinct(ids or [])
            if not wanted:
                return True
            held = await membrane.aget_batch(_engine_ids(wanted))
            await membrane.adelete_batch(_held_engine_ids(wanted, held))
        elif mode == "filter":
            await membrane.adelete_where(filter)
        else:
            await membrane.aclear()
        return True

    # -- reads -----------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored Documents among `ids`, in the order asked, each once; missing ids are
        skipped."""
        wanted = _distinct(ids)
        membrane = self._open_membrane()
        if membrane is None or not wanted:
            return []
        return records.documents_for(wanted, membrane.get_batch(_engine_ids(wanted)))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async twin of `get_by_ids`."""
        wanted = _distinct(ids)
        membrane = self._open_membrane()
        if membrane is None or not wanted:
            return []
        return records.documents_for(wanted, await membrane.aget_batch(_engine_ids(wanted)))

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        """The k documents most similar to `query` (that match `filter`).

        Keywords exact=, top_blocks=, widen_blocks= go to the engine's search; retrieval_mode=
        overrides the store's."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(Document, engine score) pairs, best first; higher scores are more similar
        (dense: cosine similarity, inner product, or negated squared L2 distance; keyword: BM25;
        hybrid: the reciprocal-rank-fused score)."""
        mode = _check_mode(kwargs.pop("retrieval_mode", self.retrieval_mode))
        vector = None if mode == "keyword" else self.embedding.embed_query(query)
        return self._search(vector, None if mode == "dense" else query, k, filter, kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        """The k Documents nearest to `embedding` that match `filter`, best first."""
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(Document, score) pairs nearest to `embedding`, best first.

        The score is the engine's: higher is more similar (see relevance.py for [0, 1] maps).
        """
        _refuse_text_mode(kwargs)
        return self._search(embedding, None, k, filter, kwargs)

    def _search(self, embedding: Sequence[float] | None, text: str | None, k: int,
                filter: Filter, kwargs: dict[str, Any]) -> list[tuple[Document, float]]:
        _check_positive("k", k)
        options = _search_options(kwargs, text)
        membrane = self._open_membrane(dim=None if embedding is None else len(embedding))
        if membrane is None:
            return []
        vector = None if embedding is None else _as_vector(embedding)
        matches = self._matching(membrane, vector, k, filter, options)
        return [(doc, score) for doc, score, _ in matches]

    def _matching(
        self, membrane: Any, vector: np.ndarray | None, k: int, filter: Filter, options: dict[str, Any]
    ) -> list[Match]:
        engine_filter, predicate = _split_filter(filter)
        if predicate is None:
            return _matches(membrane.search(vector, k=k, filter=engine_filter, **options))
        fetch = _FETCH_GROWTH * k
        while True:
            hits = membrane.search(vector, k=fetch, **options)
            matching = [match for match in _matches(hits) if predicate(match[0])][:k]
            if len(matching) == k or len(hits) < fetch:
                return matching
            fetch *= _FETCH_GROWTH

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        """Async twin of `similarity_search`."""
        pairs = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async twin of `similarity_search_with_score`."""
        mode = _check_mode(kwargs.pop("retrieval_mode", self.retrieval_mode))
        vector = None if mode == "keyword" else await self.embedding.aembed_query(query)
        return await self._asearch(vector, None if mode == "dense" else query, k, filter, kwargs)

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        """Async twin of `similarity_search_by_vector`."""
        pairs = await self.asimilarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async twin of `similarity_search_with_score_by_vector`."""
        _refuse_text_mode(kwargs)
        return await self._asearch(embedding, None, k, filter, kwargs)

    async def _asearch(self, embedding: Sequence[float] | None, text: str | None, k: int,
                       filter: Filter, kwargs: dict[str, Any]) -> list[tuple[Document, float]]:
        _check_positive("k", k)
        options = _search_options(kwargs, text)
        membrane = self._open_membrane(dim=None if embedding is None else len(embedding))
        if membrane is None:
            return []
        vector = None if embedding is None else _as_vector(embedding)
        matches = await self._amatching(membrane, vector, k, filter, options)
        return [(doc, score) for doc, score, _ in matches]

    async def _amatching(
        self, membrane: Any, vector: np.ndarray | None, k: int, filter: Filter, options: dict[str, Any]
    ) -> list[Match]:
        engine_filter, predicate = _split_filter(filter)
        if predicate is None:
            return _matches(await membrane.asearch(vector, k=k, filter=engine_filter, **options))
        fetch = _FETCH_GROWTH * k
        while True:
            hits = await membrane.asearch(vector, k=fetch, **options)
            matching = [match for match in _matches(hits) if predicate(match[0])][:k]
            if len(matching) == k or len(hits) < fetch:
                return matching
            fetch *= _FETCH_GROWTH

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return self._relevance_score_fn

    # -- maximal marginal relevance --------------------------------------------------------

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """k documents in MMR order, chosen among the fetch_k most similar that match
        `filter` (mmr.py: cosine similarity, lambda_mult 1 = relevance only, 0 = diversity)."""
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the `fetch_k` Documents nearest to `embedding`: k of them, best first.

        `lambda_mult` balances similarity (1) against diversity (0).
        """
        _check_mmr_arguments(k, fetch_k, lambda_mult)
        options = _search_options(kwargs)
        membrane = self._open_membrane(dim=len(embedding))
        if membrane is None:
            return []
        vector = _as_vector(embedding)
        candidates = self._matching(membrane, vector, fetch_k, filter, options)
        stored = membrane.get_batch([engine_id for _, _, engine_id in candidates])
        return _mmr_order(vector, candidates, stored, k, lambda_mult)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async twin of `max_marginal_relevance_search`."""
        vector = await self.embedding.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **kwargs
        )

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async twin of `max_marginal_relevance_search_by_vector`."""
        _check_mmr_arguments(k, fetch_k, lambda_mult)
        options = _search_options(kwargs)
        membrane = self._open_membrane(dim=len(embedding))
        if membrane is None:
            return []
        vector = _as_vector(embedding)
        candidates = await self._amatching(membrane, vector, fetch_k, filter, options)
        stored = await membrane.aget_batch([engine_id for _, _, engine_id in candidates])
        return _mmr_order(vector, candidates, stored, k, lambda_mult)


def _open_db(path: str | os.PathLike[str], options: dict[str, Any]) -> Any:
    db = pdb.DB(os.fspath(path), **options)
    db.open()
    return db


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise pdb.InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")


def _check_mmr_arguments(k: int, fetch_k: int, lambda_mult: float) -> None:
    _check_positive("k", k)
    _check_positive("fetch_k", fetch_k)
    mmr.check_lambda_mult(lambda_mult)


def _length(texts: Iterable[str]) -> int | None:
    return len(texts) if isinstance(texts, Sized) else None


def _ingest_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - {"batch_size", "show_progress"})
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}")
    return kwargs


def _search_options(kwargs: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_SEARCH_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}; search accepts filter=, "
            f"retrieval_mode= and the engine's {list(_SEARCH_OPTIONS)}"
        )
    return kwargs if text is None else {**kwargs, "text": text}


def _check_mode(mode: Any) -> str:
    if mode not in RETRIEVAL_MODES:
        raise pdb.InvalidArgumentError(
            f"retrieval_mode must be one of {RETRIEVAL_MODES}, got {mode!r}")
    return mode


def _refuse_text_mode(kwargs: dict[str, Any]) -> None:
    """A search by vector has no query text: only a dense retrieval_mode makes sense."""
    if _check_mode(kwargs.pop("retrieval_mode", "dense")) != "dense":
        raise pdb.InvalidArgumentError(
            "keyword and hybrid retrieval need the query text: call similarity_search(query, "
            "retrieval_mode=...) instead of a search by vector")


def _split_filter(
    filter: Filter,
) -> tuple[dict[str, Any] | None, Callable[[Document], bool] | None]:
    """(engine filter, predicate): a dict goes to the engine, a callable is applied here."""
    if filter is None or isinstance(filter, dict):
        return (filter or None), None
    if callable(filter):
        return None, filter
    raise pdb.InvalidArgumentError(
        f"filter must be a dict (API.md filter language) or a callable Document -> bool, "
        f"got {type(filter).__name__}"
    )


def _delete_mode(ids: list[str] | None, filter: Any, delete_all: bool) -> str:
    given = [name for name, value in (("ids", ids), ("filter", filter)) if value is not None]
    if delete_all:
        given.append("delete_all")
    if len(given) > 1:
        raise pdb.InvalidArgumentError(f"give one of ids, filter and delete_all, not {given}")
    if filter is not None and not (isinstance(filter, dict) and filter):
        raise pdb.InvalidArgumentError(
            "delete's filter must be a non-empty dict in the API.md language "
            "(to delete every document, pass delete_all=True)"
        )
    return given[0] if given else "nothing"


def _distinct(doc_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


def _engine_ids(doc_ids: Sequence[str]) -> list[int]:
    return [ids.engine_id(doc_id) for doc_id in doc_ids]


def _held_engine_ids(doc_ids: Sequence[str], held: Sequence[Any]) -> list[int]:
    """Engine ids of the records that really hold `doc_ids` (not a colliding document)."""
    return [
        record.id
        for doc_id, record in zip(doc_ids, held, strict=True)
        if record is not None and records.stored_id(record.metadata) == doc_id
    ]


def _as_matrix(vectors: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise pdb.InvalidArgumentError(
            f"the embeddings returned an array of shape {matrix.shape}, not (texts, dim)"
        )
    return matrix


def _as_vector(embedding: Sequence[float]) -> np.ndarray:
    return np.asarray(embedding, dtype=np.float32)


def _stored(batch: batching.Batch) -> list[dict[str, Any]]:
    return [records.stored_metadata(item) for item in batch.items]


def _matches(hits: Iterable[Any]) -> list[Match]:
    return [(records.to_document(hit.metadata, hit.text), float(hit.score), hit.id) for hit in hits]


def _mmr_order(
    query: np.ndarray,
    candidates: list[Match],
    stored: Sequence[Any],
    k: int,
    lambda_mult: float,
) -> list[Document]:
    # A candidate deleted between the search and the read drops out instead of failing.
    kept = [
        (doc, record.vector)
        for (doc, _, _), record in zip(candidates, stored, strict=True)
        if record is not None
    ]
    if not kept:
        return []
    order = mmr.select(query, np.stack([vector for _, vector in kept]), k, lambda_mult)
    return [kept[i][0] for i in order]
