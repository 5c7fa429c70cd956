"""WAL framing and recovery: torn tails are dropped, damage before valid records is corruption."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pomaidb_core import filenames, records, wal
from pomaidb_core.errors import CorruptionError, InvalidArgumentError


def _put(membrane_id: int, ids, dim: int = 3) -> bytes:
    vectors = np.arange(len(ids) * dim, dtype=np.float32).reshape(len(ids), dim)
    batch = records.make_put_batch(membrane_id, ids, vectors, [{"i": i} for i in ids], dim, 1000)
    return records.encode_put(batch)


def _write(root, payloads, file_limit=1 << 20) -> wal.WalWriter:
    os.makedirs(filenames.wal_dir(root, 0), exist_ok=True)
    writer = wal.WalWriter(str(root), 0, 1, file_limit)
    for payload in payloads:
        writer.append(records.PUT_BATCH, payload)
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
    batch = records.make_put_batch(1, [5, 6, 5], np.array([[1.0], [2.0], [3.0]]), None, 1, 100)
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
        records.check_ids(ids)


def test_a_missing_first_wal_file_is_corruption(tmp_path):
    _write(tmp_path, [_put(1, list(range(50))) for _ in range(10)], file_limit=4096)
    os.unlink(wal.list_wal_files(str(tmp_path), 0)[0].path)
    with pytest.raises(CorruptionError):
        _replay(tmp_path)
