"""What reads return: Record (get, scan) and Hit (search)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Record:
    id: int
    vector: np.ndarray  # float32 (dim,), a private copy
    metadata: dict | None
    text: str | None = None  # the record's document, if it was given one

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.id == other.id
            and self.metadata == other.metadata
            and self.text == other.text
            and np.array_equal(self.vector, other.vector)
        )

    def __repr__(self) -> str:
        return (f"Record(id={self.id}, vector=<{self.vector.shape[0]} floats>, "
                f"metadata={self.metadata!r}, text={self.text!r})")


@dataclass(frozen=True)
class Hit:
    id: int
    # Vector search: higher is more similar (cosine, inner product, or -squared L2);
    # keyword search: the BM25 score; hybrid: the fused score.
    score: float
    metadata: dict | None
    text: str | None = None
