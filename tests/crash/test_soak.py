"""`pytest -m soak`: the crash soak (rounds.soak), deselected from the default run by pyproject's addopts.

POMAIDB_SOAK_ROUNDS (default 1000) and POMAIDB_SOAK_SEED (default random) choose the run;
`python -m tests.crash.soak` is the same from the command line.
"""

from __future__ import annotations

import os
import random

import pytest
from rounds import SYNC_POLICIES, soak


@pytest.mark.soak
def test_soak_loses_no_acknowledged_write(tmp_path):
    rounds = int(os.environ.get("POMAIDB_SOAK_ROUNDS", "1000"))
    seed = int(os.environ.get("POMAIDB_SOAK_SEED") or random.randrange(1 << 32))
    report = soak(rounds, seed, SYNC_POLICIES, str(tmp_path))
    print(f"seed {seed}: {report.summary()}")
    assert report.rounds == rounds and report.lost == 0
