"""How a LangChain Document is kept in one engine record.

The record's vector is the Document's embedding and the record's `text` is its page_content
(stored once, and indexed for keyword and hybrid retrieval). The record's metadata is a copy of
the Document's metadata with one reserved key added:

    ID_KEY   = "_lc_id"     the LangChain id (str), compared on every access (see ids.py)

Records written before texts existed (and stores imported from Chroma) hold the page_content
in the metadata instead, under TEXT_KEY = "_lc_text"; they are still read, with that key
as the page_content when the record has no text. Both names are on disk: frozen, never rename
them. A Document's own metadata may not use them (InvalidArgumentError). Because user keys sit at the top level,
filters in the API.md language address them directly, and fields of nested objects by dotted
keys ("author.name"). Values are copied in both directions (nested lists and objects included),
so neither the caller's Documents nor the engine's state are ever aliased.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from langchain_core.documents import Document

import pomaidb_core as pdb

from .ids import IdCollisionError

TEXT_KEY = "_lc_text"
ID_KEY = "_lc_id"
RESERVED_KEYS = (TEXT_KEY, ID_KEY)


@dataclass(frozen=True)
class Item:
    """One document on its way in: its final string id, text and (caller-owned) metadata."""

    doc_id: str
    text: str
    metadata: dict[str, Any]


def items_from_texts(
    texts: Iterable[str],
    metadatas: Sequence[dict[str, Any] | None] | None = None,
    ids: Sequence[str | None] | None = None,
) -> Iterator[Item]:
    """Items of add_texts' columns; lengths are checked before the first item when `texts` is
    sized, and otherwise as the stream ends (ValueError)."""
    columns = {"metadatas": metadatas, "ids": ids}
    given = {name: column for name, column in columns.items() if column is not None}
    if isinstance(texts, Sized):
        for name, column in given.items():
            if len(column) != len(texts):
                raise pdb.InvalidArgumentError(f"got {len(column)} {name} for {len(texts)} texts")
    for text, *values in zip(texts, *given.values(), strict=True):
        row = dict(zip(given, values))
        yield make_item(row.get("ids"), text, row.get("metadatas"))


def items_from_documents(
    documents: Sequence[Document], ids: Sequence[str | None] | None = None
) -> Iterator[Item]:
    """Items of add_documents: `ids`, when given, take precedence over each Document.id."""
    if ids is not None and len(ids) != len(documents):
        raise pdb.InvalidArgumentError(f"got {len(ids)} ids for {len(documents)} documents")
    for index, document in enumerate(documents):
        doc_id = ids[index] if ids is not None else document.id
        yield make_item(doc_id, document.page_content, document.metadata)


def make_item(doc_id: str | None, text: Any, metadata: Any) -> Item:
    """Validate one document; a missing (or empty) id gets a fresh UUID4, as LangChain does."""
    if not isinstance(text, str):
        raise pdb.InvalidArgumentError(f"page_content must be a str, got {type(text).__name__}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise pdb.InvalidArgumentError(f"metadata must be a dict, got {type(metadata).__name__}")
    clash = [key for key in RESERVED_KEYS if key in metadata]
    if clash:
        raise pdb.InvalidArgumentError(
            f"metadata keys {clash} are reserved by langchain_pomaidb; rename them"
        )
    if not doc_id:
        doc_id = _uuid4()
    if not isinstance(doc_id, str):
        raise pdb.InvalidArgumentError(
            f"LangChain ids are strings, got {type(doc_id).__name__} {doc_id!r}"
        )
    return Item(doc_id, text, metadata)


def stored_metadata(item: Item) -> dict[str, Any]:
    """The engine record's metadata for an item (a fresh dict; the item is not touched; the
    engine keeps its own deep copy)."""
    return {**item.metadata, ID_KEY: item.doc_id}


def _uuid4() -> str:
    """str(uuid.uuid4()) at half its cost (a 100k-document add_texts makes 100k of them)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stored_id(metadata: dict[str, Any] | None) -> str | None:
    """The LangChain id a record holds (None for a record not written through LangChain)."""
    return (metadata or {}).get(ID_KEY)


def to_document(metadata: dict[str, Any] | None, text: str | None) -> Document:
    """The Document a record (or a search hit) holds, without the reserved keys."""
    metadata = metadata or {}
    user = _copy({key: value for key, value in metadata.items() if key not in RESERVED_KEYS})
    content = text if text is not None else metadata.get(TEXT_KEY, "")
    return Document(id=metadata.get(ID_KEY), page_content=content, metadata=user)


def documents_for(doc_ids: Sequence[str], records: Sequence[Any]) -> list[Document]:
    """The Documents among `records` (engine Records or None, aligned with `doc_ids`) that
    really hold the asked-for id; a record holding a colliding id is not returned."""
    return [
        to_document(record.metadata, record.text)
        for doc_id, record in zip(doc_ids, records, strict=True)
        if record is not None and stored_id(record.metadata) == doc_id
    ]


def check_no_collision(items: Sequence[Item], records: Sequence[Any]) -> None:
    """Raise IdCollisionError if an item's engine id holds a record of another document."""
    for item, record in zip(items, records, strict=True):
        if record is not None and stored_id(record.metadata) != item.doc_id:
            raise IdCollisionError(item.doc_id, stored_id(record.metadata), record.id)


def _copy(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: _copy_value(value) for key, value in metadata.items()}


def _copy_value(value: Any) -> Any:
    # Metadata is JSON (API.md): nested objects and lists are copied, scalars are immutable.
    if isinstance(value, dict):
        return _copy(value)
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    return value
