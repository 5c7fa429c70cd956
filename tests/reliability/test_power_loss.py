"""Power loss: only fsynced bytes and fsynced directory entries survive.

First the model itself (powerloss.py) is checked against the POSIX rules it
encodes; then a database is cut at a random IO step of a random workload, the
surviving image is reopened, and every shard must show a prefix of its own
history at least as long as the sync policy promised:

    "always", "batch": every acknowledged write;
    "never":           everything before the last freeze() that returned
                       (acknowledged writes after it MAY be lost: API.md).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from oracle import Oracle, assert_same_ranking
from powerloss import PAGE_SIZE, PowerLossDisk, materialize
from workload import DIM, MEMBRANE, History, run, surviving_state, vector_of

import pomaidb_core as pdb
from pomaidb_core import fs

SHARDS = 2


# ---------------------------------------------------------------------------- the model


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "world"
    root.mkdir()
    return root


def _write(path, data: bytes, sync: bool):
    handle = fs.open_append(str(path))
    handle.write(data)
    if sync:
        handle.fsync()
    handle.close()


def test_model_drops_bytes_written_after_the_last_fsync(world):
    with PowerLossDisk(world) as disk:
        fs.write_file(str(world / "f"), b"synced")
        fs.fsync_dir(str(world))
        _write(world / "f", b"+lost", sync=False)
        image = disk.cut()
    assert image.entries == {"f": b"synced"}


def test_model_forgets_a_file_whose_directory_was_never_fsynced(world):
    with PowerLossDisk(world) as disk:
        fs.write_file(str(world / "f"), b"data")  # the file is fsynced, its name is not
        image = disk.cut()
    assert image.entries == {}


def test_model_keeps_the_old_name_until_the_directory_is_fsynced(world):
    (world / "old").write_bytes(b"v1")
    with PowerLossDisk(world) as disk:
        fs.write_file(str(world / "new.tmp"), b"v2")
        fs.rename(str(world / "new.tmp"), str(world / "old"))
        fs.unlink(str(world / "missing"))
        before_dir_sync = disk.cut()
    assert before_dir_sync.entries == {"old": b"v1"}
    with PowerLossDisk(world) as disk:
        fs.unlink(str(world / "old"))
        unlinked = disk.cut()
    assert unlinked.entries == {"old": b"v2"}, "an unlink is not durable before fsync_dir"


def test_makedirs_makes_every_directory_it_adds_durable(world):
    with PowerLossDisk(world) as disk:
        deep = str(world / "a" / "b")
        fs.makedirs(deep)
        fs.write_file(deep + "/f", b"x")
        fs.fsync_dir(deep)
        image = disk.cut()
    assert image.entries == {"a": None, "a/b": None, "a/b/f": b"x"}


@pytest.mark.parametrize("tail", ["torn", "zeros"])
def test_model_keeps_at_most_the_unsynced_tail(world, tail):
    for seed in range(20):
        name = f"f{seed}"
        with PowerLossDisk(world, tail=tail, seed=seed) as disk:
            _write(world / name, b"head", sync=True)
            fs.fsync_dir(str(world))
            _write(world / name, b"0123456789", sync=False)
            survived = disk.cut().entries[name]
        assert survived.startswith(b"head") and len(survived) <= 14
        extra = survived[4:]
        assert extra == (b"0123456789"[: len(extra)] if tail == "torn" else bytes(len(extra)))


def _page_fates(survived: bytes, full: bytes, start: int) -> list[str]:
    """The fate of each unsynced page (PAGE_SIZE-aligned pieces of full[start:]) that survived."""
    fates = []
    for page in range(start - start % PAGE_SIZE, len(survived), PAGE_SIZE):
        low, high = max(page, start), min(page + PAGE_SIZE, len(survived))
        piece = survived[low:high]
        fates.append("kept" if piece == full[low:high] else "lost" if not any(piece) else "garbage")
    return fates


def test_model_pages_fall_in_any_order_and_never_touch_synced_bytes(world):
    head, tail = b"h" * 5000, bytes(range(1, 256)) * 50  # the tail: four pages, the first partial
    seen: set[str] = set()
    for seed in range(60):
        name = f"f{seed}"
        with PowerLossDisk(world, tail="pages", seed=seed) as disk:
            _write(world / name, head, sync=True)
            fs.fsync_dir(str(world))
            _write(world / name, tail, sync=False)
            survived = disk.cut().entries[name]
        assert survived[: len(head)] == head and len(survived) <= len(head) + len(tail)
        fates = _page_fates(survived, head + tail, len(head))
        seen.update(fates)
        if "lost" in fates and "kept" in fates[fates.index("lost") + 1 :]:
            seen.add("a later page kept, an earlier one lost")
        if len(survived) < len(head) + len(tail):
            seen.add("shortened")
    assert seen == {"kept", "lost", "garbage", "a later page kept, an earlier one lost", "shortened"}


def test_model_pages_take_the_fates_they_are_given(world):
    head, tail = b"h" * 5000, bytes(range(1, 256)) * 50
    with PowerLossDisk(world, tail="pages", fates=("lost", "kept", "garbage")) as disk:
        _write(world / "f", head, sync=True)
        fs.fsync_dir(str(world))
        _write(world / "f", tail, sync=False)  # bytes 5000..17750: pages 1 (in part), 2, 3, 4
        survived = disk.cut().entries["f"]
    full = head + tail
    assert len(survived) == len(full)
    assert _page_fates(survived, full, len(head)) == ["lost", "kept", "garbage", "garbage"]


def test_model_cuts_inside_the_chosen_io_step(world):
    with PowerLossDisk(world) as disk:
        disk.cut_after(3, note=lambda: "third")
        for i in range(5):
            fs.write_file(str(world / f"f{i}"), b"x")  # create, write, fsync
            fs.fsync_dir(str(world))
    assert disk.image.note == "third" and disk.image.events == 3
    assert disk.image.entries == {}, "f0 was fsynced, but its directory entry was not"


# ---------------------------------------------------------------------------- the database


def _open(path, sync):
    return pdb.open(path, shards=SHARDS, sync=sync, memtable_limit=150, compaction_trigger=3)


def _check_survivors(path, history: History, floor, sync: str) -> dict[int, int]:
    """Reopen the surviving image; every shard must show a long enough prefix of its log."""
    with pdb.open(path, shards=SHARDS) as db:
        if MEMBRANE not in db.membranes():
            assert not floor.membrane, "create_membrane returned, then the membrane vanished"
            assert not history.base
            return {}
        m = db.membrane(MEMBRANE)
        actual = surviving_state(m, SHARDS)
        promised = floor.acked if sync in ("always", "batch") else floor.frozen
        for shard in range(SHARDS):
            k = history.prefix_length(shard, actual[shard], promised[shard])
            assert k is not None, (
                f"shard {shard}: the surviving state is no prefix of its history at least "
                f"{promised[shard]} of {len(history.ops[shard])} ops long")
        merged = {key: v for state in actual for key, v in state.items()}
        _check_search(m, merged)
        db.verify()
        return merged


def _check_search(m, state: dict[int, int]) -> None:
    oracle = Oracle(DIM, "l2")
    for key, version in state.items():
        oracle.put(key, vector_of(key, version))
    query = np.random.default_rng(len(state)).standard_normal(DIM).astype(np.float32)
    assert_same_ranking(m.search(query, k=10, exact=True), oracle.search(query, 10))
    assert m.count() == len(state)


@pytest.mark.parametrize("sync,tail", [
    ("always", "drop"), ("batch", "drop"), ("batch", "torn"), ("batch", "zeros"),
    ("always", "pages"), ("batch", "pages"), ("never", "drop"), ("never", "torn"),
])
def test_power_cut_at_a_random_io_step_keeps_what_the_policy_promised(tmp_path, sync, tail):
    rng = random.Random(f"{sync}-{tail}")
    world = tmp_path / "world"
    world.mkdir()
    path = world / "db"
    state: dict[int, int] = {}
    for round_ in range(12):
        history = History(SHARDS, state)
        with PowerLossDisk(world, tail=tail, seed=round_) as disk:
            disk.cut_after(rng.randint(1, 500), note=history.floor)
            db = _open(path, sync)
            try:
                m = db.get_or_create_membrane(MEMBRANE, dim=DIM, metric="l2")
                history.membrane = True
                run(db, m, history, rng, steps=150, stop=lambda: disk.image is not None)
                image = disk.cut(note=history.floor())
            finally:
                db.close()
        materialize(world, image)
        state = _check_survivors(path, history, image.note, sync)


def test_sync_never_really_loses_unsynced_writes_and_reopens_clean(tmp_path):
    """The contract's other half: without fsync, a power cut may drop acknowledged writes."""
    world = tmp_path / "world"
    world.mkdir()
    path = world / "db"
    with _open(path, "never") as db:
        db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
    with PowerLossDisk(world) as disk:
        db = _open(path, "never")
        m = db.membrane(MEMBRANE)
        m.put_batch(range(50), np.stack([vector_of(k, 1) for k in range(50)]))
        image = disk.cut()
        db.close()
    materialize(world, image)
    with pdb.open(path) as db:
        assert db.membrane(MEMBRANE).count() == 0
        db.verify()


def test_close_makes_sync_never_writes_durable(tmp_path):
    world = tmp_path / "world"
    world.mkdir()
    path = world / "db"
    with PowerLossDisk(world) as disk:
        with _open(path, "never") as db:
            m = db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
            m.put_batch(range(50), np.stack([vector_of(k, 1) for k in range(50)]))
        image = disk.cut()
    materialize(world, image)
    with pdb.open(path) as db:
        assert db.membrane(MEMBRANE).count() == 50


def test_a_fresh_database_survives_a_cut_right_after_its_first_acknowledged_write(tmp_path):
    """Directories made on open must be durable before anything in them is acknowledged."""
    world = tmp_path / "world"
    world.mkdir()
    path = world / "db"
    with PowerLossDisk(world) as disk:
        db = _open(path, "always")
        m = db.create_membrane(MEMBRANE, dim=DIM, metric="l2")
        m.put(7, vector_of(7, 1))
        image = disk.cut()
        db.close()
    materialize(world, image)
    with pdb.open(path) as db:
        assert db.membrane(MEMBRANE).get(7) is not None
