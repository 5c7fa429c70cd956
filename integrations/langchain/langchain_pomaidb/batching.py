"""Write batches cut from a stream of Items, so that an ingest of any size holds at most one
batch of texts, embeddings and metadata in memory at a time.

Within a batch, an id given twice is written once, with its last occurrence (re-adding an id
replaces it, as a later batch does too), and two distinct ids that map to one engine id are
refused before anything of the batch is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

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
