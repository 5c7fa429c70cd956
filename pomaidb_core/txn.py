"""Cross-shard batches: a put_batch spanning shards is applied everywhere or nowhere.

Protocol (no extra fsync before the caller's answer):

1. Prepare. Each shard logs its part as a PUT_PART record (the batch's random
   key and its shards, then the rows) in its normal group commit, but does
   not apply it: the part waits, invisible, in the shard's `PreparedParts`.
   The shard then votes.
2. Decide. The last vote decides. All yes: every shard applies its part,
   answers its caller and appends a COMMIT record (the batch's key) that
   rides its next group commit (no fsync of its own: every part is already
   durable, which is enough for recovery, step 4). Any no (a log failure, a
   cancelled part that never ran, a closing shard): every shard that
   prepared logs an ABORT record naming its part's sequence number (synced)
   and fails its caller.
   A caller that gives up (a cancelled aput_batch, a part it could not even
   queue) votes no for every part that has not voted, then waits for the
   shards whose part is logged to hear the decision, so the batch is whole
   or absent by the time the caller sees its error. A shard never logs a
   part of a decided batch (it cannot have been a commit without its vote).
3. Confirm. Until every shard's COMMIT is written, no shard freezes: a freeze
   retires the log that holds its part, which a crash may still need. A
   shard that wants to freeze writes its own pending COMMITs and asks the
   batch's other shards to write theirs ("sync_commits"), so an idle shard
   never holds a freeze back. A batch whose parts are not all logged by the
   shards (a Ray shard's client logs nothing) answers its caller only once
   the COMMIT is written (`answer_after_commit`).
4. Recovery. The shards replay their logs side by side and pool what they
   found (`Recovery`, `committed_keys`): a batch is applied iff no shard logged
   its abort and either some shard logged its COMMIT or every one of its
   shards still holds its part. Otherwise a crash came before every part was
   logged (the caller was never answered) and no part is applied. Each shard
   then logs COMMIT for the recovered batches it applied, before any serves.
   Parts from before PUT_PART (PUT_PREPARED, no key) are presumed committed.

Order: a part is applied at decision time, after writes that the shard logged
later than its PUT_PART record. Replay applies it in log order, so writes
logged after it win there; at run time the same ids are *shadowed*: every
write applied while a part waits removes its ids from that part. Both ways the
newest logged write wins. A shard does not freeze while parts wait (a freeze
covers the log up to its rotation, and a waiting part is not in a memtable).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import PomaiError
from .records import BATCH_KEY_BYTES, PutBatch


@dataclass
class _Logged:
    state: object  # the shard's MembraneState
    batch: PutBatch
    key: bytes | None = None  # None: an old PUT_PREPARED part, presumed committed
    shards: tuple[int, ...] = ()
    shadowed: list[np.ndarray] = field(default_factory=list)


class PreparedParts:
    """One shard's logged-but-undecided parts, by the sequence number of their record."""

    def __init__(self) -> None:
        self._parts: dict[int, _Logged] = {}

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, seq: int, state: object, batch: PutBatch, key: bytes | None = None,
            shards: tuple[int, ...] = ()) -> None:
        self._parts[seq] = _Logged(state, batch, key, shards)

    def key_of(self, seq: int) -> bytes | None:
        part = self._parts.get(seq)
        return None if part is None else part.key

    def keyed(self) -> dict[bytes, tuple[int, ...]]:
        """key -> shards of every part that names its batch (PUT_PART)."""
        return {p.key: p.shards for p in self._parts.values() if p.key is not None}

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
        return part.state, part.batch.subset(keep)

    def seqs(self) -> list[int]:
        return sorted(self._parts)


class CrossShardBatch:
    """The votes of one batch's parts (one per shard); the last one decides, once.

    Votes are idempotent per shard: a part may be voted for by its shard and by a
    caller giving up on it (`abandon`), and only the first counts. Once `decided`,
    the outcome is final; a shard that has not logged its part by then must not
    log it (the decision was necessarily an abort: commit needs its yes).
    After a commit each shard logs COMMIT and `confirm`s once that is written;
    until every shard has, none may freeze its part away (see the module doc).
    """

    answer_after_commit = False  # every part is logged by a shard: committed once decided

    def __init__(self, shards: list[int],
                 tell: Callable[..., None]):
        self.key = os.urandom(BATCH_KEY_BYTES)
        self.shards = shards
        self._waiting = set(shards)
        self.logged: set[int] = set()  # shards that voted yes: their part waits in their log
        self.error: BaseException | None = None
        self.decided = False
        self._unconfirmed = set(shards)
        self.confirmed = False  # every shard's COMMIT is written
        self.unconfirmable = False  # a shard failed to write its COMMIT
        self._sync_asked = False
        # Posts a command to the batch's shards: "decide", "settled" (confirmed or
        # unconfirmable: either way a freeze it held can now go ahead or fail),
        # "sync_commits" (write your pending COMMITs now)
        self._tell = tell
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
            self._tell(self, "decide", self, self.error is None, self.error)

    def confirm(self, shard: int, written: bool) -> None:
        """Shard `shard` wrote its COMMIT (or failed to)."""
        with self._lock:
            was_settled = self.confirmed or self.unconfirmable
            if not written:
                self.unconfirmable = True
            self._unconfirmed.discard(shard)
            self.confirmed = self.confirmed or (not self._unconfirmed and not self.unconfirmable)
            wake = self._sync_asked and not was_settled and (self.confirmed or self.unconfirmable)
        # A freeze waits for it (one asking later finds it settled, see ask_sync); an idle
        # shard has nothing else to wake it, and would hold the freeze's caller forever.
        if wake:
            self._tell(self, "settled")

    def ask_sync(self) -> None:
        """A shard's freeze waits for this batch: have every shard write its COMMIT now (once).
        The asker runs "sync_commits" too, so it looks again even if the batch was confirmed
        meanwhile without a "settled" message."""
        with self._lock:
            asked, self._sync_asked = self._sync_asked, True
        if not asked:
            self._tell(self, "sync_commits")


@dataclass(frozen=True)
class BatchPart:
    """What a shard's command carries of the batch it belongs to."""

    batch: CrossShardBatch
    shard: int

    def vote(self, error: BaseException | None) -> None:
        self.batch.vote(self.shard, error)


@dataclass
class Evidence:
    """What one shard's log says about the keyed parts it replayed (see `committed_keys`)."""

    held: dict[bytes, tuple[int, ...]] = field(default_factory=dict)  # part still logged: shards
    committed: set[bytes] = field(default_factory=set)  # COMMIT records
    aborted: set[bytes] = field(default_factory=set)  # ABORT records naming a keyed part


def committed_keys(reports: Sequence[Evidence]) -> set[bytes]:
    """The batches to apply after a crash: no shard aborted it, and some shard committed it
    or every one of its shards still holds its part. (While any shard's COMMIT is unwritten,
    no shard freezes its part away, so a missing part means it was never logged.)"""
    aborted = set().union(*(r.aborted for r in reports))
    committed = set().union(*(r.committed for r in reports))
    holders: dict[bytes, set[int]] = {}
    shards_of: dict[bytes, tuple[int, ...]] = {}
    for index, report in enumerate(reports):
        for key, shards in report.held.items():
            holders.setdefault(key, set()).add(index)
            shards_of[key] = shards
    return {key for key, held in holders.items()
            if key not in aborted and (key in committed or held >= set(shards_of[key]))}


class PeerFailed(PomaiError):
    """A shard stopped opening because another one failed (DB.open raises that one's error)."""


class Recovery:
    """The shards of one database opening together pool their evidence (a barrier)."""

    def __init__(self, shards: int) -> None:
        self._reports: list[Evidence | None] = [None] * shards
        self._cond = threading.Condition()
        self._result: set[bytes] | None = None
        self._logged = 0
        self._failed = False

    def report(self, shard: int, evidence: Evidence) -> set[bytes]:
        """Give this shard's evidence; wait for every shard's; the batches that committed."""
        with self._cond:
            self._reports[shard] = evidence
            if all(r is not None for r in self._reports):
                self._result = committed_keys(self._reports)  # type: ignore[arg-type]
                self._cond.notify_all()
            self._wait(lambda: self._result is not None)
            assert self._result is not None
            return self._result

    def logged(self) -> None:
        """This shard has logged COMMIT for the recovered batches it applied; wait for all."""
        with self._cond:
            self._logged += 1
            self._cond.notify_all()
            self._wait(lambda: self._logged == len(self._reports))

    def _wait(self, done: Callable[[], bool]) -> None:
        while not done() and not self._failed:
            self._cond.wait()
        if not done():
            raise PeerFailed("another shard failed to open")

    def fail(self) -> None:
        """A shard failed before reporting: the others stop waiting."""
        with self._cond:
            self._failed = True
            self._cond.notify_all()
