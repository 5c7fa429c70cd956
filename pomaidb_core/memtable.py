"""A membrane's in-memory table within one shard: the newest layer of the LSM.

Vectors live in one contiguous, growable float32 array (kernels scan it in
place); an id -> slot dict finds a record; a `live` flag per slot tells a put
from a tombstone. A put to an id already here overwrites its slot, so one id
owns exactly one slot. Tombstones are slots too: they must hide older layers.

Mutated on the shard thread only. Once frozen it is never written again, so
readers on any thread may hold it.
"""

from __future__ import annotations

import threading

import numpy as np

from .filters import MetadataColumns
from .keyword_index import Analyze, MemtableKeywords

ABSENT, LIVE, TOMBSTONE = 0, 1, 2
_INITIAL_CAPACITY = 64


class Memtable:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0  # slots used
        self.ids = np.zeros(_INITIAL_CAPACITY, dtype=np.uint64)
        self.live = np.zeros(_INITIAL_CAPACITY, dtype=bool)
        self.vectors = np.zeros((_INITIAL_CAPACITY, dim), dtype=np.float32)
        self.metadatas: list[dict | None] = []
        self.texts: list[str | None] = []
        self._keywords = MemtableKeywords()
        self._keyword_rows = 0  # like the columns: slots [0, _keyword_rows) are indexed ...
        self._keyword_stale: set[int] = set()  # ... except these, rewritten since
        self._keyword_lock = threading.Lock()
        self._columns = MetadataColumns()
        self._columns_rows = 0  # slots [0, _columns_rows) are in _columns ...
        self._stale_slots: set[int] = set()  # ... except these, overwritten since
        self._columns_lock = threading.Lock()  # concurrent readers bring the columns up to date
        self.slot_of: dict[int, int] = {}
        self.max_seq = 0  # highest WAL sequence applied here
        self.nbytes = 0  # approximate: vectors + metadata JSON
        self.frozen = False

    # ------------------------------------------------------------ writes

    def put_batch(self, ids: np.ndarray, vectors: np.ndarray, metadatas: list, blobs: list,
                  texts: list | None = None) -> None:
        """ids are unique within the batch (validation.make_put_batch guarantees it)."""
        assert not self.frozen
        slots = self._slots_for(ids)
        self.vectors[slots] = vectors
        self.live[slots] = True
        for slot, metadata in zip(slots.tolist(), metadatas):
            self.metadatas[slot] = metadata
            if slot < self._columns_rows:
                self._stale_slots.add(slot)
        self._set_texts(slots.tolist(), texts if texts is not None else [None] * len(ids))
        self.nbytes += vectors.nbytes + sum(len(b) for b in blobs if b is not None)
        self.nbytes += sum(len(t) for t in texts or () if t is not None)

    def _set_texts(self, slots: list[int], texts: list) -> None:
        for slot, text in zip(slots, texts):
            if text is None and self.texts[slot] is None:
                continue
            self.texts[slot] = text
            if slot < self._keyword_rows:
                self._keyword_stale.add(slot)

    def delete_batch(self, ids: np.ndarray) -> None:
        assert not self.frozen
        slots = self._slots_for(ids)
        self.live[slots] = False
        self._set_texts(slots.tolist(), [None] * len(ids))
        for slot in slots.tolist():
            if self.metadatas[slot] is not None:
                self.metadatas[slot] = None
                if slot < self._columns_rows:
                    self._stale_slots.add(slot)

    def _slots_for(self, ids: np.ndarray) -> np.ndarray:
        slots = np.empty(len(ids), dtype=np.int64)
        new_ids: list[int] = []
        for i, key in enumerate(ids.tolist()):
            slot = self.slot_of.get(key)
            if slot is None:
                slot = self.n + len(new_ids)
                self.slot_of[key] = slot
                new_ids.append(key)
            slots[i] = slot
        if new_ids:
            self._grow(self.n + len(new_ids))
            self.ids[self.n : self.n + len(new_ids)] = new_ids
            self.metadatas.extend([None] * len(new_ids))
            self.texts.extend([None] * len(new_ids))
            self.n += len(new_ids)
        return slots

    def _grow(self, needed: int) -> None:
        capacity = len(self.ids)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        self.ids = _resized(self.ids, capacity)
        self.live = _resized(self.live, capacity)
        self.vectors = _resized(self.vectors, capacity)

    # ------------------------------------------------------------ reads

    @property
    def columns(self) -> MetadataColumns:
        """Filter columns, brought up to date on demand: writes never pay for them."""
        with self._columns_lock:
            for slot in self._stale_slots:
                self._columns.set(slot, self.metadatas[slot])
            self._stale_slots.clear()
            for slot in range(self._columns_rows, self.n):
                self._columns.append(self.metadatas[slot])
            self._columns_rows = self.n
            return self._columns

    def keywords(self, analyze: Analyze) -> MemtableKeywords:
        """The keyword index, brought up to date on demand like the columns."""
        with self._keyword_lock:
            fresh = range(self._keyword_rows, self.n)
            if self._keyword_stale or fresh or self._keywords.doc_lengths().shape[0] != self.n:
                slots = [*self._keyword_stale, *fresh]
                self._keywords.refresh(slots, self.texts, self.n, analyze)
                self._keyword_stale.clear()
                self._keyword_rows = self.n
            return self._keywords

    def state(self, key: int) -> tuple[int, int]:
        """(ABSENT | LIVE | TOMBSTONE, slot)."""
        slot = self.slot_of.get(key)
        if slot is None:
            return ABSENT, -1
        return (LIVE if self.live[slot] else TOMBSTONE), slot

    def live_mask(self) -> np.ndarray:
        return self.live[: self.n]

    def view_vectors(self) -> np.ndarray:
        return self.vectors[: self.n]

    def view_ids(self) -> np.ndarray:
        return self.ids[: self.n]

    def memory_bytes(self) -> int:
        """Its arrays at their capacity, plus the metadata's JSON size as an estimate."""
        return (self.ids.nbytes + self.live.nbytes + self.vectors.nbytes
                + max(0, self.nbytes - self.n * self.vectors.shape[1] * 4))

    def live_count(self) -> int:
        return int(np.count_nonzero(self.live[: self.n]))

    def __len__(self) -> int:
        return self.n


def _resized(array: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((capacity,) + array.shape[1:], dtype=array.dtype)
    out[: len(array)] = array
    return out
