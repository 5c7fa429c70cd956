"""Which shard owns an id: a fixed hash, so routing never changes for a directory.

splitmix64's finaliser spreads sequential ids evenly; the result modulo the
shard count (fixed when the directory is created) picks the shard.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


def shard_of(key: int, shards: int) -> int:
    z = (key + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % shards


def shards_of(keys: np.ndarray, shards: int) -> np.ndarray:
    """Vectorised `shard_of` over a uint64 array (uint64 arithmetic wraps like the & mask)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def split(keys: np.ndarray, shards: int) -> list[np.ndarray]:
    """Per shard, the positions in `keys` that it owns (in their original order)."""
    owners = shards_of(keys, shards)
    return [np.flatnonzero(owners == s) for s in range(shards)]
