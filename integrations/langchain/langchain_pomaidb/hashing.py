"""HashingEmbeddings: a deterministic, offline embedding by feature hashing.

Each feature of a text adds +weight or -weight (the sign chosen by a hash) to one of `dim`
coordinates (chosen by the same hash), and the sum is scaled to unit length. The features are
the lower-cased words and pairs of adjacent words (weight 1), and the character trigrams of
each word with its boundaries, " testing " -> " te", "tes", ... (weight 1/2), so that
"test" and "testing" are close too. There is no model and no network, so it suits tests, demos
and CI; it is lexical, not semantic.
"""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np
from langchain_core.embeddings import Embeddings

import pomaidb_core as pdb

_WORD = re.compile(r"\w+")
_EMPTY_FEATURE = "\x00empty"  # what a text without words (or whose hashes cancel) embeds as


class HashingEmbeddings(Embeddings):
    """Deterministic, offline, lexical embeddings of `dim` floats (see the module docstring)."""

    def __init__(self, dim: int = 256) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise pdb.InvalidArgumentError(f"dim must be an int >= 2, got {dim!r}")
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One unit-length vector per text."""
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """The unit-length vector of one text."""
        words = _WORD.findall(text.lower())
        features = [(word, 1.0) for word in words]
        features += [(f"{a} {b}", 1.0) for a, b in itertools.pairwise(words)]
        features += [(trigram, 0.5) for word in words for trigram in _trigrams(word)]
        vector = self._hashed(features)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector = self._hashed([(_EMPTY_FEATURE, 1.0)])
            norm = 1.0
        return (vector / norm).tolist()

    # Hashing is a few microseconds of CPU per text: computing it in the coroutine keeps the
    # async path free of thread hops.
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async twin of `embed_documents` (computed inline: no thread hop)."""
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async twin of `embed_query` (computed inline: no thread hop)."""
        return self.embed_query(text)

    def _hashed(self, features: list[tuple[str, float]]) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float64)
        for feature, weight in features:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "big") % self.dim
            vector[slot] += weight if digest[4] & 1 else -weight
        return vector


def _trigrams(word: str) -> list[str]:
    padded = f" {word} "
    return [padded[i : i + 3] for i in range(len(padded) - 2)]
