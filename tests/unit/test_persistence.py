"""Freeze, manifest, reopen and compaction: the persistence contract of issue 3."""

from __future__ import annotations

import math
import os
import threading
import time

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import filenames


def _fill(m, n, dim, seed=0, start=0):
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    m.put_batch(range(start, start + n), vectors, [{"i": start + i} for i in range(n)])
    return vectors


def _files(path, suffix):
    return sorted(p for p in path.rglob(f"*{suffix}"))


def test_freeze_writes_segments_and_sidecars_and_resets_the_wal(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=2, auto_freeze=False) as db:
        m = db.create_membrane("m", dim=8)
        _fill(m, 500, 8)
        wal_before = sum(p.stat().st_size for p in _files(path, ".wal"))
        db.freeze()
        wal_after = sum(p.stat().st_size for p in _files(path, ".wal"))
        segs, sidecars = _files(path, ".seg"), _files(path, ".wsbr")
        assert len(segs) == 2 and len(sidecars) == 2
        assert wal_after < wal_before / 10
        stats = db.stats()["membranes"]["m"]
        assert stats["segments"] == 2 and stats["memtable_records"] == 0 and stats["records"] == 500
    with pdb.open(path) as db:
        assert db.membrane("m").count() == 500


def test_tombstone_in_newer_segment_hides_older_put(tmp_path):
    with pdb.open(tmp_path / "db", shards=1, auto_freeze=False, auto_compact=False) as db:
        m = db.create_membrane("m", dim=4)
        vectors = _fill(m, 50, 4)
        db.freeze()
        assert m.delete(7)
        db.freeze()
        m.put(8, vectors[8] * 2, {"new": True})
        assert m.get(7) is None and not m.exists(7)
        assert m.get(8).metadata == {"new": True}
        assert 7 not in {h.id for h in m.search(vectors[7], k=50, exact=True)}
        assert 7 not in {r.id for r in m.scan()}
        assert m.count() == 49


def test_compaction_merges_segments_and_drops_dead_rows(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1, auto_freeze=False, auto_compact=False) as db:
        m = db.create_membrane("m", dim=4)
        for round_ in range(4):
            _fill(m, 100, 4, seed=round_, start=round_ * 50)  # overlapping ids: overwrites
            m.delete_batch(range(round_ * 50, round_ * 50 + 10))
            db.freeze()
        before = {r.id: r for r in m.scan()}
        query = np.ones(4, dtype=np.float32)
        hits_before = m.search(query, k=20, exact=True)
        assert db.stats()["membranes"]["m"]["segments"] == 4
        db.compact()
        stats = db.stats()["membranes"]["m"]
        assert stats["segments"] == 1 and stats["segment_rows"] == len(before)
        assert {r.id: r for r in m.scan()} == before
        assert m.search(query, k=20, exact=True) == hits_before
    with pdb.open(path) as db:
        assert db.membrane("m").count() == len(before)
        assert len(_files(path, ".seg")) == 1


def test_automatic_compaction_bounds_the_number_of_segments(tmp_path):
    with pdb.open(tmp_path / "db", shards=1, memtable_limit=40, compaction_trigger=3) as db:
        m = db.create_membrane("m", dim=4)
        for start in range(0, 1000, 20):
            _fill(m, 20, 4, seed=start, start=start)
        db.freeze()
        # Compaction runs in the background, size-tiered (tiers of 4x rows): once it is idle,
        # each tier holds fewer than `trigger` adjacent segments.
        bound = 2 * (1 + math.ceil(math.log(1000, 4)))
        deadline = time.monotonic() + 60
        while db.stats()["membranes"]["m"]["segments"] > bound and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stats()["membranes"]["m"]["segments"] <= bound
        assert m.count() == 1000


def test_compaction_merges_runs_in_place_and_never_beyond_the_segment_bound(tmp_path):
    """Newest-wins across runs: a tombstone in a merged run still hides an older segment."""
    with pdb.open(tmp_path / "db", shards=1, auto_compact=False, max_segment_rows=100,
                  idle_freeze_seconds=0) as db:
        m = db.create_membrane("m", dim=4)
        for start in range(0, 400, 50):  # eight 50-row segments, oldest first
            _fill(m, 50, 4, seed=start, start=start)
            db.freeze()
        m.delete(7)  # a tombstone above every segment holding 7
        m.put(60, np.ones(4))  # a newer version of a row in the second-oldest segment
        db.freeze()
        db.compact()
        stats = db.stats()["membranes"]["m"]
        assert (stats["segments"], stats["segment_rows"]) == (5, 402)  # 4 runs of 100, the newest
        assert m.get(7) is None and np.array_equal(m.get(60).vector, np.ones(4))
        assert m.count() == 399
    with pdb.open(tmp_path / "db") as db:
        m = db.membrane("m")
        assert m.get(7) is None and np.array_equal(m.get(60).vector, np.ones(4))
        assert m.count() == 399


def test_compact_called_during_a_background_compaction_merges_the_whole_stack(tmp_path,
                                                                             monkeypatch):
    """db.compact() that finds an automatic merge running waits for it and then goes on:
    it used to return as soon as that merge ended, leaving the rest of the stack unmerged."""
    from pomaidb_core import compaction

    running, release = threading.Event(), threading.Event()
    real = compaction.merged_rows

    def held(*args, **kwargs):
        if not running.is_set():  # the automatic merge: held until db.compact() is waiting
            running.set()
            assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(compaction, "merged_rows", held)
    with pdb.open(tmp_path / "db", shards=1, compaction_trigger=2, idle_freeze_seconds=0) as db:
        m = db.create_membrane("m", dim=4)
        for start, n in ((0, 400), (400, 20), (420, 20)):  # the two small ones form a tier
            _fill(m, n, 4, seed=start, start=start)
            db.freeze()
        assert running.wait(30)
        compactor = threading.Thread(target=db.compact)
        compactor.start()
        time.sleep(0.2)  # db.compact() reaches the shard while the automatic merge runs
        release.set()
        compactor.join(30)
        assert not compactor.is_alive()
        stats = db.stats()["membranes"]["m"]
        assert (stats["segments"], stats["segment_rows"], m.count()) == (1, 440, 440)


def test_scan_started_before_compaction_finishes_on_its_files(tmp_path):
    with pdb.open(tmp_path / "db", shards=1, auto_freeze=False, auto_compact=False) as db:
        m = db.create_membrane("m", dim=4)
        for round_ in range(3):
            _fill(m, 100, 4, seed=round_, start=round_ * 100)
            db.freeze()
        scan = m.scan()
        first = next(scan)
        db.compact()  # retires the segments the scan is reading
        rest = list(scan)
        assert len(rest) + 1 == 300 and first.id not in {r.id for r in rest}


def test_orphans_and_temporaries_are_removed_on_open(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        db.create_membrane("m", dim=2).put(1, [1.0, 0.0])
        db.freeze()
    seg_dir = filenames.segment_dir(str(path), 0)
    for name in ("0-999.seg", "0-999.wsbr", "0-5.seg.tmp"):
        with open(os.path.join(seg_dir, name), "wb") as handle:
            handle.write(b"junk")
    with pdb.open(path) as db:
        assert db.membrane("m").get(1) is not None
    assert sorted(os.listdir(seg_dir)) == sorted(
        p.name for p in _files(path, ".seg") + _files(path, ".wsbr"))
    assert len(os.listdir(seg_dir)) == 2


def _flip(file, offset: int, mask: int) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= mask
    file.write_bytes(bytes(data))


def test_a_flipped_vector_byte_is_corruption_on_search_and_verify(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        m = db.create_membrane("m", dim=8)
        _fill(m, 200, 8)
        db.freeze()
    segment = _files(path, ".seg")[0]
    _flip(segment, segment.stat().st_size // 3, 0x40)  # somewhere in the vectors section
    with pdb.open(path) as db:
        m = db.membrane("m")
        with pytest.raises(pdb.CorruptionError):
            m.search(np.ones(8), k=5, exact=True)
        with pytest.raises(pdb.CorruptionError):
            db.verify()


def test_a_missing_sidecar_fails_closed(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        _fill(db.create_membrane("m", dim=8), 100, 8)
        db.freeze()
    os.unlink(_files(path, ".wsbr")[0])
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)


def test_a_damaged_sidecar_fails_closed(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        _fill(db.create_membrane("m", dim=8), 100, 8)
        db.freeze()
    sidecar = _files(path, ".wsbr")[0]
    _flip(sidecar, sidecar.stat().st_size // 2, 0x01)
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)


def test_a_damaged_manifest_fails_closed(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        db.create_membrane("m", dim=2)
    manifest = next((path / "manifest").iterdir())
    _flip(manifest, manifest.stat().st_size - 3, 0x10)
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)


def test_files_are_owner_only(tmp_path):
    path = tmp_path / "db"
    with pdb.open(path, shards=1) as db:
        _fill(db.create_membrane("m", dim=2), 10, 2)
        db.freeze()
    for entry in [path, *path.rglob("*")]:
        mode = entry.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{entry} is {oct(mode)}"


def test_a_small_stack_whose_newer_segments_rival_the_oldest_is_merged_into_one(tmp_path):
    """Fewer segments, fewer routings per query: 60 + 10 + 10 rows become one segment by themselves."""
    with pdb.open(tmp_path / "db", shards=1, idle_freeze_seconds=0, compaction_trigger=4) as db:
        m = db.create_membrane("m", dim=4)
        _fill(m, 60, 4, seed=1)
        db.freeze()
        _fill(m, 10, 4, seed=2, start=100)
        db.freeze()
        assert db.stats()["membranes"]["m"]["segments"] == 2  # 10 < 60 / 4: no merge yet
        _fill(m, 10, 4, seed=3, start=200)
        db.freeze()
        deadline = time.monotonic() + 30
        while db.stats()["membranes"]["m"]["segments"] > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stats()["membranes"]["m"]["segments"] == 1 and m.count() == 80
