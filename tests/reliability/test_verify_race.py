"""db.verify() while freezes and compactions commit new manifests: never a false alarm."""

from __future__ import annotations

import threading
import time

import numpy as np

import pomaidb_core as pdb


def test_verify_during_background_commits_reports_nothing_false(tmp_path):
    errors: list[BaseException] = []
    with pdb.open(tmp_path / "db", shards=2, memtable_limit=50, compaction_trigger=2) as db:
        m = db.create_membrane("m", dim=4)
        deadline = time.monotonic() + 2.5

        def writer() -> None:
            key = 0
            while time.monotonic() < deadline:
                m.put_batch(range(key, key + 20), np.ones((20, 4)))
                key += 20

        thread = threading.Thread(target=writer)
        thread.start()
        checks = 0
        while time.monotonic() < deadline:
            try:
                db.verify()
            except pdb.PomaiError as exc:
                errors.append(exc)
            checks += 1
        thread.join()
        assert checks > 10
    assert not errors, errors[:3]
