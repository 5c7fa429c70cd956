"""LangChain's string ids on the engine's 64-bit integer ids.

engine_id(s) is pomaidb_core.stores.string_id(s) (the first 8 bytes of BLAKE2b-64 over the
UTF-8 bytes of `s`, read big-endian; the LlamaIndex store uses the same): an integer in
[0, 2**64). It decides which record holds a document on disk, so it is frozen.

Two different strings can share an engine id (about n**2 / 2**65 odds among n documents). The
store therefore keeps the string id inside each record (records.ID_KEY) and compares it on every
write, read and delete: a collision raises IdCollisionError and never replaces, returns or
deletes another document.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import pomaidb_core as pdb
from pomaidb_core.stores import string_id


class IdCollisionError(pdb.AlreadyExistsError):
    """Two different LangChain ids map to one engine id; nothing was written."""

    def __init__(self, doc_id: str, holder: str | None, engine_id: int) -> None:
        held_by = repr(holder) if holder is not None else "a record not written by LangChain"
        super().__init__(
            f"document id {doc_id!r} maps to engine id {engine_id}, which already holds "
            f"{held_by}; choose another id for one of them"
        )
        self.doc_id = doc_id
        self.holder = holder
        self.engine_id = engine_id


def engine_id(doc_id: str) -> int:
    """The engine id of a LangChain id (see the module docstring; frozen)."""
    if not isinstance(doc_id, str):
        raise pdb.InvalidArgumentError(
            f"LangChain ids are strings, got {type(doc_id).__name__} {doc_id!r}"
        )
    return string_id(doc_id)


def distinct_engine_ids(doc_ids: Sequence[str]) -> np.ndarray:
    """Engine ids (uint64) of distinct LangChain ids, refusing two that collide with each other."""
    holders: dict[int, str] = {}
    for doc_id in doc_ids:
        eid = engine_id(doc_id)
        holder = holders.setdefault(eid, doc_id)
        if holder != doc_id:
            raise IdCollisionError(doc_id, holder, eid)
    return np.fromiter(holders, dtype=np.uint64, count=len(holders))
