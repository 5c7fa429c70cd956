"""Write batches cut from a stream of Items, so that an ingest of any size holds at most one
batch of texts, embeddings and metadata in memory at a time.

Within a batch, an id given twice is written once, with its last occurrence (re-adding an id
replaces it, as a later batch does too), and two distinct ids that map to one engine id are
refused before anything of the batch is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from .ids import distinct_engine_ids
from .records import Item


@dataclass(frozen=True)
class Batch:
    ids: list[str]  # every input id of the slice, in order: what add_* returns for it
    items: list[Item]  # one per distinct id: its last occurrence
    engine_ids: np.ndarray  # uint64, aligned with items

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]


def batches(items: Iterable[Item], size: int) -> Iterator[Batch]:
    stream = iter(items)
    while chunk := list(islice(stream, size)):
        latest = {item.doc_id: item for item in chunk}
        unique = list(latest.values())
        yield Batch(
            ids=[item.doc_id for item in chunk],
            items=unique,
            engine_ids=distinct_engine_ids([item.doc_id for item in unique]),
        )


class WriteAhead:
    """Each batch's write runs on one helper thread while the caller embeds the next batch,
    so a write (WAL, fsync, memtables: the engine's shard threads) overlaps the next batch's
    embedding instead of following it. Writes stay one at a time and in order: `submit`
    waits for the previous write first and raises its error, so a batch that fails stops the
    ingest before any later batch is written. Leaving the `with` block waits for the last
    write (raising its error unless another one is already on its way out).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pomaidb-langchain-write")
        self._pending: Future | None = None

    def wait(self) -> None:
        """Block until the write in flight (if any) is done; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def submit(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(write, *args, **kwargs)

    def __enter__(self) -> WriteAhead:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._pool.shutdown(wait=True)
        if exc_type is None:
            self.wait()
