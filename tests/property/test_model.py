"""Model-based test: random operation sequences against a dict + numpy brute-force oracle.

Each seed runs a random walk of put / put_batch / delete / delete_batch /
delete_where / get / count / search (exact and WSBR with every block) /
freeze / compact / close+reopen, over several shard counts and all three
metrics, and checks every answer against the oracle.
"""

from __future__ import annotations

import pytest
from model_walk import random_walk

import pomaidb_core as pdb


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_random_walk_agrees_with_oracle(tmp_path, seed, shards, metric):
    path = tmp_path / "db"
    random_walk(lambda **options: pdb.open(path, **options), seed, shards, metric)
