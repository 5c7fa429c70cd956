"""Cross-shard batch bookkeeping (txn.py) and its log records (records.py), against hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

import pomaidb_core as pdb
from pomaidb_core import records, txn


def _part(key: bytes, shards: tuple[int, ...]) -> bytes:
    batch = records.PutBatch(7, np.array([1, 2], dtype=np.uint64),
                             np.ones((2, 3), dtype=np.float32), [None, {"a": 1}], [None, b'{"a":1}'])
    return records.encode_part(key, shards, records.encode_put(batch))


def test_a_part_record_round_trips_its_key_shards_and_rows():
    key = bytes(range(16))
    decoded = records.decode(records.PUT_PART, _part(key, (0, 2, 5)))
    assert isinstance(decoded, records.PreparedPut)
    assert decoded.key == key and decoded.shards == (0, 2, 5)
    assert decoded.batch.ids.tolist() == [1, 2] and decoded.batch.metadatas == [None, {"a": 1}]
    assert records.decode(records.COMMIT, records.encode_commit(key)) == records.Commit(key)


@pytest.mark.parametrize("damage", [
    lambda p: p[:10],  # shorter than the key and count
    lambda p: p[:16] + b"\x09\x00" + p[18:],  # more shards than the record holds rows for
    lambda p: p[:16] + b"\x01\x00" + p[18:],  # a batch on one shard is never a part
    lambda p: p[:18] + b"\x05\x00\x02\x00" + p[22:],  # shards not ascending
])
def test_a_damaged_part_record_is_corruption(damage):
    with pytest.raises(pdb.CorruptionError):
        records.decode(records.PUT_PART, damage(_part(bytes(16), (2, 5))))


def test_a_commit_record_of_the_wrong_size_is_corruption():
    with pytest.raises(pdb.CorruptionError):
        records.decode(records.COMMIT, bytes(15))


def _evidence(held=(), committed=(), aborted=(), shards=(0, 1, 2)) -> txn.Evidence:
    return txn.Evidence({key: shards for key in held}, set(committed), set(aborted))


@pytest.mark.parametrize("reports,expected", [
    # every shard still holds its part: the caller may have been answered; apply
    ([_evidence(held=[b"x"])] * 3, {b"x"}),
    # one shard never logged its part and nobody committed: never answered; drop
    ([_evidence(held=[b"x"]), _evidence(), _evidence(held=[b"x"])], set()),
    # a shard froze its part away, which it does only after every COMMIT is written
    ([_evidence(held=[b"x"], committed=[b"x"]), _evidence(), _evidence(held=[b"x"])], {b"x"}),
    # an abort anywhere wins
    ([_evidence(held=[b"x"]), _evidence(held=[b"x"], aborted=[b"x"]), _evidence(held=[b"x"])],
     set()),
    # a batch on shards 0 and 2 only does not need shard 1
    ([_evidence(held=[b"y"], shards=(0, 2)), _evidence(), _evidence(held=[b"y"], shards=(0, 2))],
     {b"y"}),
    # nothing held anywhere: nothing to apply, whatever was committed
    ([_evidence(committed=[b"z"]), _evidence(), _evidence()], set()),
])
def test_recovery_applies_a_batch_exactly_when_no_crash_could_have_split_it(reports, expected):
    assert txn.committed_keys(reports) == expected


def test_votes_count_once_per_shard_and_a_caller_giving_up_aborts_the_rest():
    decisions = []
    cross = txn.CrossShardBatch(
        [0, 1, 2], lambda c, kind, *args: decisions.append(args[1]) if kind == "decide" else None)
    cross.vote(0, None)
    cross.vote(0, pdb.PomaiError("late duplicate"))  # ignored: shard 0 already voted
    assert not cross.decided
    cross.abandon(pdb.PomaiError("cancelled"))
    assert decisions == [False] and cross.logged == {0}
    cross.vote(1, None)  # after the decision: ignored
    assert decisions == [False]


def test_a_batch_is_confirmed_once_every_shard_wrote_its_commit():
    told = []
    cross = txn.CrossShardBatch([0, 1], lambda c, kind: told.append(kind))
    cross.confirm(0, written=True)
    assert not cross.confirmed
    cross.ask_sync()
    cross.ask_sync()  # once: a waiting freeze asks at every drain
    assert told == ["sync_commits"]
    cross.confirm(1, written=True)
    assert cross.confirmed and told == ["sync_commits", "settled"]
    quiet = txn.CrossShardBatch([0, 1], lambda c, kind: told.append(kind))
    quiet.confirm(0, written=True)
    quiet.confirm(1, written=True)  # nobody waits for it: no message
    assert quiet.confirmed and len(told) == 2
    failed = txn.CrossShardBatch([0, 1], lambda c, kind: told.append(kind))
    failed.confirm(0, written=False)
    failed.confirm(1, written=True)
    assert not failed.confirmed and failed.unconfirmable and len(told) == 2


def test_a_batch_that_becomes_unconfirmable_wakes_the_freezes_waiting_for_it():
    """A freeze held by the batch must learn that it will never be confirmed (and fail)
    without waiting for some unrelated command to wake its shard: an idle shard would wait
    forever (the hang a disk-fault sweep found once the idle freeze stopped spinning)."""
    told = []
    cross = txn.CrossShardBatch([0, 1], lambda c, kind: told.append(kind))
    cross.confirm(0, written=True)
    cross.ask_sync()
    cross.confirm(1, written=False)
    assert cross.unconfirmable and told == ["sync_commits", "settled"]
