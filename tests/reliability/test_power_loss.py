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

import asyncio
import random
import threading

import numpy as np
import pytest
from oracle import Oracle, assert_same_ranking
from powerloss import PAGE_SIZE, PowerLossDisk, materialize
from workload import DIM, MEMBRANE, History, run, surviving_state, vector_of

import pomaidb_core as pdb
from pomaidb_core import fs
from pomaidb_core.wal import HEADER_SIZE

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


# ---------------------------------------------------------------------------- a cut inside one group commit
#
# One shard; ten acknowledged puts; then a put that the fault hook holds at its WAL write
# while GROUP more puts queue behind it, so the shard drains those into one group commit:
# one write() of ~4 pages, cut before its fsync. The pages of that write reach the disk in
# the order `fates` says. None of the group was acknowledged, so whatever survives of it,
# the database must open with every acknowledged write.

WIDE = 64  # wide vectors: GROUP records of ~330 bytes span four pages
GROUP = 48
BASE = range(10)
HELD = 100  # the put held at its WAL write; acknowledged (and synced) before the group starts


def _wide_vector(key: int) -> np.ndarray:
    return vector_of(key, 0).repeat(WIDE // DIM)


def _is_wal_write(op: str, *paths: str) -> bool:
    return op == "write" and paths[0].endswith(".wal")


async def _submit_together(m, keys, release: threading.Event, one_record: bool) -> None:
    if one_record:
        tasks = [asyncio.ensure_future(m.aput_batch(keys, np.stack([_wide_vector(k) for k in keys])))]
    else:
        tasks = [asyncio.ensure_future(m.aput(key, _wide_vector(key))) for key in keys]
    await asyncio.sleep(0)  # every task has put its command in the mailbox
    release.set()
    await asyncio.gather(*tasks)


def _cut_inside_a_group_commit(world, sync: str, fates, groups: int = 1, one_record: bool = False):
    """The image of a cut inside the first unsynced group commit (all `groups` for "never").

    `one_record`: the group is one put_batch, one WAL record of four pages.
    """
    path = str(world / "db")
    with pdb.open(path, shards=1, sync=sync) as db:
        m = db.create_membrane(MEMBRANE, dim=WIDE, metric="l2")
        for key in BASE:
            m.put(key, _wide_vector(key))
    release, held = threading.Event(), threading.Event()

    def hold_the_first_wal_write(op: str, path: str) -> None:
        if _is_wal_write(op, path) and not release.is_set():
            held.set()
            release.wait(10)

    wal_writes = iter(range(1 << 30))
    with PowerLossDisk(world, tail="pages", fates=fates) as disk:
        if sync != "never":  # the group's write is the second: the held put's comes first
            disk.cut_when(lambda op, *paths: _is_wal_write(op, *paths) and next(wal_writes) == 1)
        with pdb.open(path, shards=1, sync=sync) as db:
            m = db.membrane(MEMBRANE)
            fs.set_fault_hook(hold_the_first_wal_write)
            holder = threading.Thread(target=m.put, args=(HELD, _wide_vector(HELD)))
            holder.start()
            assert held.wait(10), "the put never reached its WAL write"
            keys = range(1000, 1000 + GROUP * groups)
            for group in range(groups):
                asyncio.run(_submit_together(m, keys[group * GROUP : (group + 1) * GROUP], release, one_record))
            holder.join()
            fs.set_fault_hook(None)
            image = disk.cut()
    newest_wal = max(name for name, data in image.entries.items() if name.endswith(".wal") and data)
    assert len(image.entries[newest_wal]) >= GROUP * WIDE * 4, "the cut came before the group was written"
    acknowledged = set(BASE) if sync == "never" else {*BASE, HELD}
    return path, image, acknowledged, {HELD, *keys}


def _reopen_and_check(path, acknowledged: set[int], unacknowledged: set[int]) -> None:
    with pdb.open(path) as db:
        m = db.membrane(MEMBRANE)
        found = {record.id: record for record in m.scan()}
        assert acknowledged <= found.keys(), f"acknowledged puts lost: {sorted(acknowledged - found.keys())}"
        assert found.keys() <= acknowledged | unacknowledged, "a record that was never written appeared"
        for key, record in found.items():
            np.testing.assert_array_equal(record.vector, _wide_vector(key))
        assert m.count() == len(found)
        db.verify()


@pytest.mark.parametrize("fates", [
    ("kept", "kept", "lost"),  # a prefix of the group reached the disk
    ("garbage",),  # none of it did, and its pages hold garbage
    ("lost", "kept"),  # later pages reached the disk, the first did not
    ("kept", "garbage", "kept"),
    ("kept", "lost", "lost", "kept"),
])
def test_a_cut_inside_an_unacknowledged_group_commit_keeps_the_database_openable(tmp_path, fates):
    world = tmp_path / "world"
    world.mkdir()
    path, image, acknowledged, unacknowledged = _cut_inside_a_group_commit(world, "batch", fates)
    materialize(world, image)
    _reopen_and_check(path, acknowledged, unacknowledged)


def test_a_cut_inside_unsynced_groups_under_sync_never_keeps_the_database_openable(tmp_path):
    """sync="never" promises nothing of its acknowledged writes after a power cut, but the database must open.

    Three groups, none fsynced, the first page lost: the later groups are
    intact, yet none was ever synced, so this is a torn tail, not damage. The
    ids (1000 and up) are small integers, as ids usually are: a scan for later
    valid records must not mistake them for sequence numbers.
    """
    world = tmp_path / "world"
    world.mkdir()
    path, image, acknowledged, unacknowledged = _cut_inside_a_group_commit(world, "never", ("lost", "kept"),
                                                                           groups=3)
    materialize(world, image)
    _reopen_and_check(path, acknowledged, unacknowledged)


def test_a_cut_inside_one_unacknowledged_record_spanning_pages_drops_it(tmp_path):
    """sync="always": the unsynced tail is one record; a later page of it kept is still a torn tail."""
    world = tmp_path / "world"
    world.mkdir()
    path, image, acknowledged, _ = _cut_inside_a_group_commit(world, "always", ("lost", "kept"), one_record=True)
    materialize(world, image)
    _reopen_and_check(path, acknowledged, set())


def test_damage_to_an_acknowledged_record_is_still_corruption(tmp_path):
    """A synced record damaged with valid ones after it is a bad disk, not a torn tail: fail closed."""
    world = tmp_path / "world"
    world.mkdir()
    path, image, _, _ = _cut_inside_a_group_commit(world, "batch", ("lost", "kept"))
    first_wal = min(name for name, data in image.entries.items() if name.endswith(".wal") and data)
    damaged = bytearray(image.entries[first_wal])
    damaged[HEADER_SIZE + 8] ^= 0xFF  # inside the payload of the first acknowledged put
    image.entries[first_wal] = bytes(damaged)
    materialize(world, image)
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path).close()
