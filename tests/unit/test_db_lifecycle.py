"""DB lifecycle: close() then open() on the same object, and what the errors say about it."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import fs


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


# --- storage errors that name their likely cause -------------------------------------------


@pytest.mark.parametrize("read_only", [False, True])
def test_a_path_that_is_a_file_says_so(tmp_path, read_only):
    path = tmp_path / "notes.txt"
    path.write_text("not a database")
    with pytest.raises(pdb.StorageError, match=r"notes\.txt is a file, not a directory"):
        pdb.open(path, read_only=read_only)
    assert path.read_text() == "not a database"


def test_a_path_below_a_file_names_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(pdb.StorageError, match=r"notes\.txt, a parent of the path, is a file"):
        pdb.open(tmp_path / "notes.txt" / "db")


def _refuse_writes(code):
    def hook(op, path):
        raise OSError(code, os.strerror(code), path)

    return hook


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_a_writer_refused_by_the_disk_suggests_read_only(tmp_path, code):
    path = tmp_path / "db"
    with pdb.open(path) as db:
        db.create_membrane("m", dim=1).put(1, [1.0])
    fs.set_fault_hook(_refuse_writes(code))
    try:
        with pytest.raises(pdb.StorageError, match=r"open it with read_only=True"):
            pdb.open(path)
    finally:
        fs.set_fault_hook(None)
    with pdb.open(path, read_only=True) as reader:  # the advice works
        assert reader.membrane("m").count() == 1


def test_a_new_database_in_a_refused_place_says_where_to_create_it(tmp_path):
    fs.set_fault_hook(_refuse_writes(errno.EACCES))
    try:
        with pytest.raises(pdb.StorageError, match=r"create the database in a writable directory"):
            pdb.open(tmp_path / "db")
    finally:
        fs.set_fault_hook(None)


def test_other_storage_errors_keep_their_message(tmp_path):
    fs.set_fault_hook(_refuse_writes(errno.ENOSPC))
    try:
        with pytest.raises(pdb.StorageError) as raised:
            pdb.open(tmp_path / "db")
    finally:
        fs.set_fault_hook(None)
    assert "read_only" not in str(raised.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_writer_on_a_read_only_directory_suggests_read_only(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path) as db:
        db.create_membrane("m", dim=1).put(1, [1.0])
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        with pytest.raises(pdb.StorageError, match=r"open it with read_only=True"):
            pdb.open(path)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_dropped_membrane_is_named_by_its_name(tmp_path):
    with pdb.open(tmp_path / "db", shards=3) as db:
        m = db.create_membrane("articles", dim=1)
        m.put(1, [1.0])
        db.drop_membrane("articles")
        for call in (lambda: m.put(2, [1.0]), lambda: m.count(), lambda: m.search([1.0])):
            with pytest.raises(pdb.NotFoundError, match=r"membrane 'articles' was dropped"):
                call()
