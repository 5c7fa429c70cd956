"""DB lifecycle: close() then open() on the same object, and what the errors say about it."""

from __future__ import annotations

import numpy as np
import pytest

import pomaidb_core as pdb


def test_a_closed_db_reopens_with_its_data(tmp_path):
    path = tmp_path / "db"
    vectors = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    db = pdb.open(path, shards=2)
    m = db.create_membrane("m", dim=4)
    m.put_batch(range(40), vectors, [{"i": i} for i in range(40)])
    before = m.search(vectors[3], k=5, exact=True)
    db.close()

    assert db.open() is db
    try:
        assert db.membranes() == ["m"]
        again = db.membrane("m")
        assert again.count() == 40
        assert again.search(vectors[3], k=5, exact=True) == before
        assert m.get(7).metadata == {"i": 7}  # a handle from before the close works again
        again.put(40, vectors[0])  # writable: the LOCK was taken again
        with pytest.raises(pdb.LockedError):
            pdb.open(path)
    finally:
        db.close()
    with pdb.open(path) as check:  # ... and released again by the second close
        assert check.membrane("m").count() == 41


def test_closed_calls_and_open_agree(tmp_path):
    db = pdb.open(tmp_path / "db")
    m = db.create_membrane("m", dim=2)
    db.close()
    with pytest.raises(pdb.ClosedError, match=r"closed; call db\.open\(\) to reopen"):
        m.count()
    db.open()  # does what the message says
    assert m.count() == 0
    db.close()


def test_a_db_never_opened_says_to_open_it(tmp_path):
    db = pdb.DB(tmp_path / "db")
    with pytest.raises(pdb.ClosedError, match=r"not open yet; call db\.open\(\)"):
        db.membranes()


def test_open_is_idempotent_and_close_open_close_cycles(tmp_path):
    db = pdb.DB(tmp_path / "db", shards=1)
    for i in range(3):
        assert db.open() is db
        assert db.open() is db
        db.get_or_create_membrane("m", dim=1).put(i, [1.0])
        db.close()
        db.close()
    with pdb.open(tmp_path / "db") as check:
        assert check.membrane("m").count() == 3


def test_a_read_only_db_reopens_and_sees_newer_writes(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path) as writer:
        writer.create_membrane("m", dim=1).put(1, [1.0])
    reader = pdb.open(path, read_only=True)
    reader.close()
    with pdb.open(path) as writer:
        writer.membrane("m").put(2, [1.0])
    reader.open()
    try:
        assert reader.membrane("m").count() == 2
        with pytest.raises(pdb.ReadOnlyError):
            reader.membrane("m").put(3, [1.0])
    finally:
        reader.close()


def test_context_manager_reenters_after_exit(tmp_path):
    db = pdb.DB(tmp_path / "db")
    with db:
        db.create_membrane("m", dim=1).put(1, [1.0])
    with db:
        assert db.membrane("m").count() == 1
