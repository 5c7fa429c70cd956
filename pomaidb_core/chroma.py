"""`pomaidb import-chroma`: copy every collection of a Chroma database into membranes.

Each collection becomes a membrane of the same name, with Chroma's distance ("hnsw:space":
"l2" by default, "ip", "cosine") as its metric; PomaiDB's "l2" score is the negated squared
distance Chroma reports, so rankings agree. Records are laid out as the LangChain integration
stores documents, so `langchain_pomaidb.PomaiDBVectorStore(embeddings, path=DB, membrane=NAME)`
serves an imported collection as it is:

    engine id   the first 8 bytes of BLAKE2b-64 over the UTF-8 Chroma id, read big-endian
                (langchain_pomaidb/ids.py; frozen)
    metadata    the Chroma metadata, plus "_lc_id": the Chroma id, and "_lc_text": the
                document, when the record has one (langchain_pomaidb/records.py)

Nothing is written unless every collection can be imported: a membrane name already taken,
or a distance PomaiDB lacks, is refused first. Two Chroma ids of one collection that share an engine id (odds
about n**2 / 2**65) stop the import with AlreadyExistsError. At the end each membrane's
count is compared with the collection's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from .db import DB
from .errors import AlreadyExistsError, InvalidArgumentError

ID_KEY = "_lc_id"  # langchain_pomaidb.records.ID_KEY
TEXT_KEY = "_lc_text"  # langchain_pomaidb.records.TEXT_KEY
_SPACES = {"l2": "l2", "ip": "ip", "cosine": "cosine"}  # Chroma's hnsw:space -> metric


@dataclass(frozen=True)
class CollectionReport:
    """What happened to one collection: `imported` records, and the membrane's count after."""

    name: str
    chroma_count: int
    imported: int
    membrane_count: int
    metric: str | None
    dim: int | None

    @property
    def ok(self) -> bool:
        return self.chroma_count == self.imported == self.membrane_count


def engine_id(chroma_id: str) -> int:
    """The engine id of a Chroma (or LangChain) string id; frozen, see the module docstring."""
    return int.from_bytes(hashlib.blake2b(chroma_id.encode("utf-8"), digest_size=8).digest(), "big")


def open_client(chroma_dir: str) -> Any:
    """A chromadb client on the directory of a persistent Chroma database."""
    try:
        import chromadb
    except ImportError as exc:
        raise InvalidArgumentError(
            "import-chroma needs the chromadb package: pip install 'pomaidb-core[chroma]'") from exc
    return chromadb.PersistentClient(path=chroma_dir)


def import_chroma(client: Any, db: DB, *, batch_size: int = 1000,
                  progress: bool = False) -> list[CollectionReport]:
    """Copy every collection of `client` into `db`; one report per collection."""
    collections = [client.get_collection(_name(c)) for c in client.list_collections()]
    metrics = [_metric(c) for c in collections]
    taken = set(db.membranes())
    clashes = sorted(c.name for c in collections if c.name in taken)
    if clashes:
        raise AlreadyExistsError(f"membranes {clashes} already exist in {db.path}; "
                                 "import into another database or drop them first")
    return [_import_collection(c, metric, db, batch_size, progress)
            for c, metric in zip(collections, metrics)]


def _name(listed: Any) -> str:
    return listed if isinstance(listed, str) else listed.name  # chromadb 0.6 lists names only


def _metric(collection: Any) -> str:
    space = (collection.metadata or {}).get("hnsw:space")
    configuration = getattr(collection, "configuration", None)
    if space is None and isinstance(configuration, dict):
        space = (configuration.get("hnsw") or {}).get("space")
    space = space or "l2"
    if space not in _SPACES:
        raise InvalidArgumentError(f"collection {collection.name!r} uses distance {space!r}, "
                                   f"which PomaiDB does not have (it has {sorted(_SPACES)})")
    return _SPACES[space]


def _import_collection(collection: Any, metric: str, db: DB, batch_size: int,
                       progress: bool) -> CollectionReport:
    total = collection.count()
    membrane = None
    seen: dict[int, str] = {}
    imported = 0
    with tqdm(total=total, disable=not progress, unit="rec", desc=collection.name) as bar:
        for ids, vectors, metadatas in _pages(collection, batch_size):
            if membrane is None:
                membrane = db.create_membrane(collection.name, dim=vectors.shape[1], metric=metric)
            membrane.put_batch(_engine_ids(ids, seen, collection.name), vectors, metadatas)
            imported += len(ids)
            bar.update(len(ids))
    return CollectionReport(collection.name, total, imported,
                            membrane.count() if membrane is not None else 0, metric,
                            membrane.dim if membrane is not None else None)


def _pages(collection: Any, batch_size: int) -> Iterator[tuple[list[str], np.ndarray, list[dict]]]:
    offset = 0
    while True:
        page = collection.get(include=["embeddings", "documents", "metadatas"], limit=batch_size,
                              offset=offset)
        ids = list(page["ids"])
        if not ids:
            return
        documents = page.get("documents") or [None] * len(ids)
        metadatas = page.get("metadatas") or [None] * len(ids)
        records = [_record_metadata(i, d, m) for i, d, m in zip(ids, documents, metadatas)]
        yield ids, np.asarray(page["embeddings"], dtype=np.float32), records
        offset += len(ids)


def _record_metadata(chroma_id: str, document: str | None, metadata: dict | None) -> dict:
    record = dict(metadata or {})
    record[ID_KEY] = chroma_id
    if document is not None:
        record[TEXT_KEY] = document
    return record


def _engine_ids(ids: list[str], seen: dict[int, str], collection: str) -> list[int]:
    keys = []
    for chroma_id in ids:
        key = engine_id(chroma_id)
        holder = seen.setdefault(key, chroma_id)
        if holder != chroma_id:
            raise AlreadyExistsError(f"collection {collection!r}: ids {holder!r} and {chroma_id!r} "
                                     f"map to one engine id ({key}); rename one of them")
        keys.append(key)
    return keys
