"""pdb.repair: a damaged database is salvaged into a consistent one; what was dropped is reported.

The oracle is what was written: every record held by an intact log frame or an
intact segment is back after repair, with its vector and metadata, and the
repaired database opens normally and passes verify().
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import filenames, wal

DIM = 6


def vector_of(key: int) -> np.ndarray:
    return np.random.default_rng(key).standard_normal(DIM).astype(np.float32)


def _flip(path: str, offset: int) -> None:
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x40
    open(path, "wb").write(data)


def _contents(path) -> dict[int, tuple]:
    with pdb.open(path, read_only=True) as db:
        return {r.id: (r.vector.tobytes(), r.metadata) for r in db.membrane("m").scan()}


def _build(path, frozen: range, logged: list[range], shards: int = 1) -> None:
    with pdb.open(path, shards=shards, sync="always", auto_freeze=False) as db:
        m = db.create_membrane("m", dim=DIM, metric="cosine")
        if len(frozen):
            m.put_batch(list(frozen), np.stack([vector_of(k) for k in frozen]),
                        [{"k": k} for k in frozen])
            db.freeze()
        for part in logged:  # one log group per call
            m.put_batch(list(part), np.stack([vector_of(k) for k in part]), [{"k": k} for k in part])


def test_a_healthy_database_comes_out_of_repair_unchanged(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0, 50), [range(50, 60), range(60, 70)], shards=2)
    with pdb.open(path) as db:
        db.membrane("m").delete(3)
    before = _contents(path)
    report = pdb.repair(path)
    assert report["segments_dropped"] == [] and report["wal_records_dropped"] == 0
    assert report["wal_records_salvaged"] >= 3
    assert _contents(path) == before
    with pdb.open(path) as db:
        db.verify()


def test_damage_between_acknowledged_log_groups_is_salvaged_around(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0), [range(0, 10), range(10, 20), range(20, 30)])
    log = wal.list_wal_files(str(path), 0)[-1].path
    _flip(log, 60)  # inside the first group
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)
    report = pdb.repair(path)
    assert report["wal_records_dropped"] == 1 and report["wal_damaged_bytes"] > 0
    assert any("wal" in f for f in report["files_set_aside"])
    assert set(_contents(path)) == set(range(10, 30))
    with pdb.open(path) as db:
        m = db.membrane("m")
        assert np.array_equal(m.get(15).vector, vector_of(15)) and m.get(15).metadata == {"k": 15}
        db.verify()
        m.put(100, vector_of(100))  # writable again
    assert os.listdir(filenames.lost_dir(str(path)))


def test_a_damaged_segment_is_dropped_and_reported_and_the_rest_survives(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0, 40), [range(40, 50)])
    seg_dir = filenames.segment_dir(str(path), 0)
    segment = next(n for n in os.listdir(seg_dir) if n.endswith(".seg"))
    _flip(os.path.join(seg_dir, segment), os.path.getsize(os.path.join(seg_dir, segment)) // 2)
    with pytest.raises(pdb.CorruptionError):
        with pdb.open(path) as db:
            db.verify()
    report = pdb.repair(path)
    assert [d["file"] for d in report["segments_dropped"]] == [segment]
    assert report["segments_dropped"][0]["rows"] == 40
    assert set(_contents(path)) == set(range(40, 50))
    with pdb.open(path) as db:
        db.verify()


def test_an_intact_segment_with_a_damaged_sidecar_is_rebuilt_without_loss(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0, 40), [])
    before = _contents(path)
    seg_dir = filenames.segment_dir(str(path), 0)
    sidecar = next(n for n in os.listdir(seg_dir) if n.endswith(".wsbr"))
    _flip(os.path.join(seg_dir, sidecar), 10)
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)
    report = pdb.repair(path)
    assert report["segments_rebuilt"] == [sidecar.replace(".wsbr", ".seg")]
    assert report["segments_dropped"] == []
    assert _contents(path) == before
    with pdb.open(path) as db:
        db.verify()
        assert db.membrane("m").search(vector_of(7), k=1)[0].id == 7


def test_repair_refuses_a_database_in_use_and_a_directory_that_is_none(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0), [range(5)])
    with pdb.open(path):
        with pytest.raises(pdb.LockedError):
            pdb.repair(path)
    with pytest.raises(pdb.NotFoundError):
        pdb.repair(tmp_path / "nothing-here")
    with pytest.raises(pdb.InvalidArgumentError):
        pdb.repair("")


def test_a_database_whose_only_manifest_is_damaged_cannot_be_repaired_and_is_left_as_is(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0), [range(5)])
    manifest_dir = filenames.manifest_dir(str(path))
    manifest = os.path.join(manifest_dir, os.listdir(manifest_dir)[0])
    _flip(manifest, 30)
    before = {name: open(os.path.join(root, name), "rb").read()
              for root, _, names in os.walk(path) for name in names if name != "LOCK"}
    with pytest.raises(pdb.CorruptionError, match="no manifest"):
        pdb.repair(path)
    after = {name: open(os.path.join(root, name), "rb").read()
             for root, _, names in os.walk(path) for name in names if name != "LOCK"}
    assert after == before
    with pytest.raises(pdb.CorruptionError):
        pdb.open(path)


def test_a_damaged_newest_manifest_falls_back_to_the_version_before_it(tmp_path):
    path = tmp_path / "db"
    _build(path, range(0, 20), [range(20, 30)])
    manifest_dir = filenames.manifest_dir(str(path))
    (old_name,) = os.listdir(manifest_dir)
    old_bytes = open(os.path.join(manifest_dir, old_name), "rb").read()
    with pdb.open(path) as db:
        db.create_membrane("other", dim=3)  # a newer manifest version
    (new_name,) = os.listdir(manifest_dir)
    open(os.path.join(manifest_dir, old_name), "wb").write(old_bytes)  # left by a crash mid-commit
    _flip(os.path.join(manifest_dir, new_name), 40)
    report = pdb.repair(path)
    assert report["manifest"] == filenames.parse_manifest_name(old_name)
    assert report["manifests_set_aside"] == [filenames.parse_manifest_name(new_name)]
    assert set(_contents(path)) == set(range(30))
    with pdb.open(path) as db:
        assert db.membranes() == ["m"]
        db.verify()
