"""Cross-shard batches: a put_batch spanning shards is applied everywhere or nowhere.

Protocol (presumed commit, no extra fsync):

1. Prepare. Each shard logs its part as a PUT_PREPARED record in its normal
   group commit, but does not apply it: the part waits, invisible, in the
   shard's `PreparedParts`. The shard then votes.
2. Decide. The last vote decides. All yes: every shard applies its part and
   answers its caller. Any no (a log failure, a cancelled part that never
   ran, a closing shard): every shard that prepared logs an ABORT record
   naming its part's sequence number (synced) and fails its caller.
   A caller that gives up (a cancelled aput_batch, a part it could not even
   queue) votes no for every part that has not voted, then waits for the
   shards whose part is logged to hear the decision, so the batch is whole
   or absent by the time the caller sees its error. A shard never logs a
   part of a decided batch (it cannot have been a commit without its vote).
3. Recovery. Replay holds PUT_PREPARED parts aside, drops those an ABORT
   names, and applies the rest after the log (a part whose shard logged it
   was decided "commit" unless an abort was logged). A crash between prepare
   and decide can thus keep the parts that were logged: the batch had not been
   acknowledged, and each part is still all-or-nothing on its shard.

Order: a part is applied at decision time, after writes that the shard logged
later than its PUT_PREPARED record. Replay applies it in log order, so writes
logged after it win there; at run time the same ids are *shadowed*: every
write applied while a part waits removes its ids from that part. Both ways the
newest logged write wins. A shard does not freeze while parts wait (a freeze
covers the log up to its rotation, and a waiting part is not in a memtable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .records import PutBatch


@dataclass
class _Logged:
    state: object  # the shard's MembraneState
    batch: PutBatch
    shadowed: list[np.ndarray] = field(default_factory=list)


class PreparedParts:
    """One shard's logged-but-undecided parts, by the sequence number of their record."""

    def __init__(self) -> None:
        self._parts: dict[int, _Logged] = {}

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, seq: int, state: object, batch: PutBatch) -> None:
        self._parts[seq] = _Logged(state, batch)

    def shadow(self, membrane_id: int, ids: np.ndarray, seq: int) -> None:
        """A write logged at `seq` was applied: it wins over the parts logged before it."""
        for part_seq, part in self._parts.items():
            if part_seq < seq and part.batch.membrane_id == membrane_id:
                part.shadowed.append(ids)

    def drop(self, seq: int) -> None:
        self._parts.pop(seq, None)

    def take(self, seq: int) -> tuple[object, PutBatch] | None:
        """The part's state and the rows of it that no later write shadowed."""
        part = self._parts.pop(seq, None)
        if part is None:
            return None
        if not part.shadowed:
            return part.state, part.batch
        keep = np.flatnonzero(~np.isin(part.batch.ids, np.concatenate(part.shadowed)))
        return part.state, part.batch.subset(keep.tolist())

    def seqs(self) -> list[int]:
        return sorted(self._parts)


class CrossShardBatch:
    """The votes of one batch's parts (one per shard); the last one decides, once.

    Votes are idempotent per shard: a part may be voted for by its shard and by a
    caller giving up on it (`abandon`), and only the first counts. Once `decided`,
    the outcome is final; a shard that has not logged its part by then must not
    log it (the decision was necessarily an abort: commit needs its yes).
    """

    def __init__(self, shards: list[int],
                 decide: Callable[[CrossShardBatch, bool, BaseException | None], None]):
        self.shards = shards
        self._waiting = set(shards)
        self.logged: set[int] = set()  # shards that voted yes: their part waits in their log
        self.error: BaseException | None = None
        self.decided = False
        self._decide = decide
        self._lock = threading.Lock()

    def vote(self, shard: int, error: BaseException | None) -> None:
        self._count({shard}, error)

    def abandon(self, error: BaseException) -> None:
        """The caller gives up: every part that has not voted yet votes no."""
        self._count(set(self.shards), error)

    def _count(self, shards: set[int], error: BaseException | None) -> None:
        with self._lock:
            if self.decided or not (shards & self._waiting):
                return
            self._waiting -= shards
            if error is None:
                self.logged |= shards
            elif self.error is None:
                self.error = error
            self.decided = not self._waiting
        if self.decided:
            self._decide(self, self.error is None, self.error)


@dataclass(frozen=True)
class BatchPart:
    """What a shard's command carries of the batch it belongs to."""

    batch: CrossShardBatch
    shard: int

    def vote(self, error: BaseException | None) -> None:
        self.batch.vote(self.shard, error)
