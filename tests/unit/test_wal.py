"""WAL framing and recovery: torn tails are dropped, damage before valid records is corruption."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pomaidb_core import filenames, fs, records, validation, wal
from pomaidb_core.errors import CorruptionError, InvalidArgumentError, StorageError


def _put(membrane_id: int, ids, dim: int = 3) -> bytes:
    vectors = np.arange(len(ids) * dim, dtype=np.float32).reshape(len(ids), dim)
    batch = validation.make_put_batch(membrane_id, ids, vectors, [{"i": i} for i in ids], dim, 1000)
    return records.encode_put(batch)


def _writer(root, file_limit=1 << 20) -> wal.WalWriter:
    os.makedirs(filenames.wal_dir(root, 0), exist_ok=True)
    return wal.WalWriter(str(root), 0, 1, file_limit)


def _write(root, payloads, file_limit=1 << 20) -> wal.WalWriter:
    """One synced group per payload, as sync="always" writes them."""
    writer = _writer(root, file_limit)
    for payload in payloads:
        writer.append(records.PUT_BATCH, payload)
        writer.commit(durable=True)
    writer.close()
    return writer


def _replay(root, covered=0) -> wal.ReplayResult:
    return wal.read_wal(wal.list_wal_files(str(root), 0), covered)


def test_records_round_trip_in_order(tmp_path):
    payloads = [_put(1, [i, i + 100]) for i in range(20)]
    _write(tmp_path, payloads)
    result = _replay(tmp_path)
    assert [r.seq for r in result.records] == list(range(1, 21))
    decoded = [batch for _, batch in wal.iter_decoded(result)]
    assert decoded[3].ids.tolist() == [3, 103]
    assert decoded[3].metadatas == [{"i": 3}, {"i": 103}]
    assert result.torn_file is None


def test_rotation_splits_files_and_replay_spans_them(tmp_path):
    _write(tmp_path, [_put(1, list(range(50))) for _ in range(10)], file_limit=4096)
    assert len(wal.list_wal_files(str(tmp_path), 0)) > 2
    assert [r.seq for r in _replay(tmp_path).records] == list(range(1, 11))


def test_covered_records_are_skipped(tmp_path):
    _write(tmp_path, [_put(1, [i]) for i in range(5)])
    assert [r.seq for r in _replay(tmp_path, covered=3).records] == [4, 5]


@pytest.mark.parametrize("cut", [1, 5, 16, 17, 30])
def test_truncated_trailing_record_is_ignored(tmp_path, cut):
    _write(tmp_path, [_put(1, [i]) for i in range(4)])
    path = wal.list_wal_files(str(tmp_path), 0)[-1].path
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size - cut)
    result = _replay(tmp_path)
    assert [r.seq for r in result.records] == [1, 2, 3]
    assert result.torn_file == path and result.last_seq == 3
    wal.truncate_torn_tail(result.torn_file, result.torn_offset)
    assert _replay(tmp_path).torn_file is None


def test_bad_checksum_followed_by_valid_records_is_corruption(tmp_path):
    _write(tmp_path, [_put(1, [i]) for i in range(5)])
    path = wal.list_wal_files(str(tmp_path), 0)[-1].path
    data = bytearray(open(path, "rb").read())
    data[40] ^= 0x01  # inside the first record
    open(path, "wb").write(data)
    with pytest.raises(CorruptionError):
        _replay(tmp_path)


def test_damaged_length_field_before_valid_records_is_corruption(tmp_path):
    _write(tmp_path, [_put(1, [i]) for i in range(5)])
    path = wal.list_wal_files(str(tmp_path), 0)[-1].path
    data = bytearray(open(path, "rb").read())
    data[6] = 0x7F  # length of record 1 now runs past the end of the file
    open(path, "wb").write(data)
    with pytest.raises(CorruptionError):
        _replay(tmp_path)


def test_garbage_tail_after_valid_records_is_torn_not_corrupt(tmp_path):
    _write(tmp_path, [_put(1, [i]) for i in range(3)])
    path = wal.list_wal_files(str(tmp_path), 0)[-1].path
    with open(path, "ab") as handle:
        handle.write(b"\x00" * 100)
    assert [r.seq for r in _replay(tmp_path).records] == [1, 2, 3]


def test_drop_covered_deletes_only_fully_covered_files(tmp_path):
    writer = _write(tmp_path, [_put(1, list(range(50))) for _ in range(10)], file_limit=4096)
    files = wal.list_wal_files(str(tmp_path), 0)
    covered = files[2].first_seq - 1
    writer.drop_covered(covered)
    remaining = wal.list_wal_files(str(tmp_path), 0)
    assert remaining[0].first_seq == files[2].first_seq
    assert [r.seq for r in _replay(tmp_path, covered).records] == list(range(covered + 1, 11))


def test_put_batch_validation_collapses_repeated_ids_to_last():
    batch = validation.make_put_batch(1, [5, 6, 5], np.array([[1.0], [2.0], [3.0]]), None, 1, 100)
    assert batch.ids.tolist() == [6, 5]
    assert batch.vectors[:, 0].tolist() == [2.0, 3.0]


def test_decoding_damaged_payloads_raises_corruption():
    payload = _put(1, [1, 2])
    for cut in range(len(payload)):
        try:
            records.decode(records.PUT_BATCH, payload[:cut])
        except CorruptionError:
            continue
        raise AssertionError(f"truncation at {cut} was accepted")


@pytest.mark.parametrize("ids", [[-1], [2**64], [1.0], ["1"], [True], [None]])
def test_bad_ids_are_rejected(ids):
    with pytest.raises(InvalidArgumentError):
        validation.check_ids(ids)


def test_a_missing_first_wal_file_is_corruption(tmp_path):
    _write(tmp_path, [_put(1, list(range(50))) for _ in range(10)], file_limit=4096)
    os.unlink(wal.list_wal_files(str(tmp_path), 0)[0].path)
    with pytest.raises(CorruptionError):
        _replay(tmp_path)


def _flip(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    open(path, "wb").write(data)


def test_one_group_holds_every_record_of_a_commit(tmp_path):
    writer = _writer(tmp_path)
    for i in range(3):
        writer.append(records.PUT_BATCH, _put(1, [i]))
    writer.commit(durable=True)
    writer.append(records.PUT_BATCH, _put(1, [9]))
    writer.commit(durable=True)
    writer.close()
    result = _replay(tmp_path)
    assert [r.seq for r in result.records] == [1, 2, 3, 4]
    assert [b.ids.tolist() for _, b in wal.iter_decoded(result)] == [[0], [1], [2], [9]]


def test_uncommitted_records_never_reach_the_file(tmp_path):
    writer = _writer(tmp_path)
    writer.append(records.PUT_BATCH, _put(1, [1]))
    writer.commit(durable=True)
    writer.append(records.PUT_BATCH, _put(1, [2]))
    writer.close()
    assert [r.seq for r in _replay(tmp_path).records] == [1]


def test_damage_in_an_unsynced_group_before_another_unsynced_group_is_a_torn_tail(tmp_path):
    """Power loss can persist a later page of the unsynced tail and lose an earlier one."""
    writer = _writer(tmp_path)
    writer.append(records.PUT_BATCH, _put(1, [1]))
    writer.commit(durable=True)
    synced_end = os.path.getsize(wal.list_wal_files(str(tmp_path), 0)[0].path)
    writer.append(records.PUT_BATCH, _put(1, [2]))
    writer.commit(durable=False)
    writer.append(records.PUT_BATCH, _put(1, [3]))
    writer.commit(durable=False)
    path = wal.list_wal_files(str(tmp_path), 0)[0].path
    _flip(path, synced_end + 30)  # inside group 2; group 3 stays intact
    result = _replay(tmp_path)
    assert [r.seq for r in result.records] == [1]
    assert (result.torn_file, result.torn_offset) == (path, synced_end)


def test_damage_in_a_synced_group_before_a_later_group_is_corruption(tmp_path):
    writer = _writer(tmp_path)
    writer.append(records.PUT_BATCH, _put(1, [1]))
    writer.commit(durable=True)
    writer.append(records.PUT_BATCH, _put(1, [2]))
    writer.commit(durable=False)  # written after group 1's fsync: it says so
    path = wal.list_wal_files(str(tmp_path), 0)[0].path
    _flip(path, 30)
    with pytest.raises(CorruptionError):
        _replay(tmp_path)


def test_frames_written_before_groups_existed_are_still_read(tmp_path):
    os.makedirs(filenames.wal_dir(tmp_path, 0))
    data = b"".join(wal.frame(seq, records.PUT_BATCH, _put(1, [seq])) for seq in (1, 2, 3))
    open(filenames.wal_path(str(tmp_path), 0, 1), "wb").write(data)
    result = _replay(tmp_path)
    assert [r.seq for r in result.records] == [1, 2, 3]
    _flip(filenames.wal_path(str(tmp_path), 0, 1), 30)
    with pytest.raises(CorruptionError):  # no sync mark: valid data after damage is corruption
        _replay(tmp_path)


def test_a_huge_group_is_split_into_frames_that_replay_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "MAX_GROUP_BYTES", 300)
    writer = _writer(tmp_path)
    for i in range(10):
        writer.append(records.PUT_BATCH, _put(1, [i]))
    writer.commit(durable=True)
    writer.close()
    path = wal.list_wal_files(str(tmp_path), 0)[0].path
    data = open(path, "rb").read()
    assert data.count(bytes([wal.GROUP])) >= 1 and len(data) > 3 * 300 // 2
    assert [r.seq for r in _replay(tmp_path).records] == list(range(1, 11))


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_failed_commit_breaks_the_writer_and_leaves_no_trace_in_the_log(tmp_path, failing):
    writer = _writer(tmp_path)
    writer.append(records.PUT_BATCH, _put(1, [1]))
    writer.commit(durable=True)

    def hook(op, path):
        if op == failing and path.endswith(".wal"):
            raise OSError(5, "injected")

    fs.set_fault_hook(hook)
    try:
        writer.append(records.PUT_BATCH, _put(1, [2]))
        with pytest.raises(StorageError):
            writer.commit(durable=True)
    finally:
        fs.set_fault_hook(None)
    for call in (writer.sync, writer.rotate, lambda: writer.append(records.PUT_BATCH, b"")):
        with pytest.raises(StorageError):
            call()
    writer.close()
    assert [r.seq for r in _replay(tmp_path).records] == [1]


def test_a_batch_too_large_for_one_log_record_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    import pomaidb_core as pdb

    monkeypatch.setattr(wal, "MAX_RECORD_BYTES", 10_000)
    with pdb.open(tmp_path / "db", shards=1) as db:
        m = db.create_membrane("m", dim=16, metric="l2")
        m.put_batch(range(10), np.ones((10, 16)))
        with pytest.raises(InvalidArgumentError, match="split it"):
            m.put_batch(range(100, 300), np.ones((200, 16)))
        with pytest.raises(InvalidArgumentError):
            m.put(5, np.ones(16), {"text": "x" * 20_000})
        assert m.count() == 10 and m.get(5).metadata is None
    with pdb.open(tmp_path / "db") as db:
        assert db.membrane("m").count() == 10
