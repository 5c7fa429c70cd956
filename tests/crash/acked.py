"""The parent's oracle of a crash test: what the writer child acknowledged, and the check after reopen.

Per id, `settled` is the state the last check found in the database (version,
or None for absent) and `ops` the operations issued on it since, in issue
order (one thread owns each id), each (version or None for a delete, acked).
After a crash the id must hold the state left by its last acknowledged op or
by any op issued after it (those are "maybe": issued, never acknowledged; an
op rejected with StorageError is one too, since its bytes may have reached
the log before the failure):

    acknowledged put    -> present, with exactly that version or a later issued one
    acknowledged delete -> absent, unless a later put was issued
    never written       -> absent (no phantom ids, no phantom versions)

and count() lies between the ids that must be live and the ids that may be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from writer import MEMBRANE, vector_of

import pomaidb_core as pdb


class LostWrite(AssertionError):
    """The database contradicts what the writer acknowledged."""


@dataclass
class CheckCounts:
    acked_ops: int = 0  # acknowledged operations whose effect was checked
    ids: int = 0  # ids whose state an acknowledgement pinned down


@dataclass
class AckedWrites:
    settled: dict[int, int] = field(default_factory=dict)
    ops: dict[int, list[tuple[int | None, bool]]] = field(default_factory=dict)
    membrane: bool = False  # some child printed "ready": the membrane exists durably
    _issued: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    _acked_ops: int = 0

    def feed(self, line: str) -> None:
        """One stdout line of the child (writer.py's protocol)."""
        word, *rest = line.split()
        if word == "ready":
            self.membrane = True
        elif word == "I":
            thread, n, kind, *args = rest
            version = int(args.pop(0)) if kind == "P" else None
            slots = self._issued[(thread, n)] = []
            for key in map(int, args):
                history = self.ops.setdefault(key, [])
                slots.append((key, len(history)))
                history.append((version, False))
        elif word == "A":
            for key, index in self._issued.pop((rest[0], rest[1])):
                self.ops[key][index] = (self.ops[key][index][0], True)
            self._acked_ops += 1

    def allowed(self, key: int) -> list[int | None]:
        """The states `key` may be in now: after its last acknowledged op, or any later one."""
        states = [self.settled.get(key)] + [version for version, _ in self.ops.get(key, ())]
        last_acked = max((i + 1 for i, (_, acked) in enumerate(self.ops.get(key, ())) if acked),
                         default=0)
        return states[last_acked:]

    def check(self, db: pdb.DB) -> CheckCounts:
        """Compare the reopened database with the oracle, then settle on what it holds."""
        if MEMBRANE not in db.membranes():
            if self.membrane:
                raise LostWrite(f"membrane {MEMBRANE!r} was created (the writer said ready), then vanished")
            return CheckCounts()
        m = db.membrane(MEMBRANE)
        found = _scan_exactly(m)
        tracked = sorted(self.settled.keys() | self.ops.keys())
        phantoms = sorted(found.keys() - set(tracked))
        if phantoms:
            raise LostWrite(f"ids {phantoms[:10]} are present but were never written")
        errors = [_explain(key, found.get(key), self.allowed(key), self.settled.get(key), self.ops.get(key, []))
                  for key in tracked if found.get(key) not in self.allowed(key)]
        if errors:
            raise LostWrite(f"{len(errors)} ids contradict the acknowledged writes:\n" + "\n".join(errors[:20]))
        self._check_batches_whole(found)
        _check_point_reads(m, tracked, found)
        self._check_count(m, tracked, len(found))
        _check_search(m, found)
        db.verify()
        counts = CheckCounts(self._acked_ops, sum(1 for ops in self.ops.values() if any(a for _, a in ops)))
        self.settled, self.ops, self._issued, self._acked_ops = found, {}, {}, 0
        return counts

    def _check_batches_whole(self, found: dict[int, int]) -> None:
        """A put_batch in flight at the kill (its thread's last op: nothing overwrote its ids
        since) is applied on all of its ids or on none, whichever shards they live on."""
        for (thread, n), slots in self._issued.items():
            version = self.ops[slots[0][0]][slots[0][1]][0]
            if version is None or len(slots) < 2:
                continue
            holding = [key for key, _ in slots if found.get(key) == version]
            if 0 < len(holding) < len(slots):
                raise LostWrite(f"put_batch {n} of thread {thread} (version {version}) is partly "
                                f"applied: {len(holding)} of its {len(slots)} ids hold it")

    def _check_count(self, m: pdb.Membrane, tracked: list[int], scanned: int) -> None:
        must = sum(1 for key in tracked if None not in self.allowed(key))
        may = sum(1 for key in tracked if any(s is not None for s in self.allowed(key)))
        count = m.count()
        if not must <= count <= may or count != scanned:
            raise LostWrite(f"count() is {count}, scan() found {scanned}; the acknowledged writes "
                            f"leave between {must} and {may} live records")


def _scan_exactly(m: pdb.Membrane) -> dict[int, int]:
    """id -> version of every live record, after checking its vector against its version."""
    found: dict[int, int] = {}
    for record in m.scan():
        version = record.metadata["v"]
        if not np.array_equal(record.vector, vector_of(record.id, version)):
            raise LostWrite(f"id {record.id} says version {version} but holds another vector")
        found[record.id] = version
    return found


def _check_point_reads(m: pdb.Membrane, tracked: list[int], found: dict[int, int]) -> None:
    for key, record in zip(tracked, m.get_batch(tracked)):
        got = None if record is None else record.metadata["v"]
        if got != found.get(key):
            raise LostWrite(f"get({key}) gives version {got} but scan() gives {found.get(key)}")


def _check_search(m: pdb.Membrane, found: dict[int, int]) -> None:
    if found:
        probe = min(found)
        hits = m.search(vector_of(probe, found[probe]), k=1, exact=True)
        if not hits or hits[0].id != probe:
            raise LostWrite(f"exact search for record {probe}'s own vector did not find it first")


def _explain(key: int, actual: int | None, allowed: list[int | None], settled: int | None, ops: list) -> str:
    def state(version: int | None) -> str:
        return "absent" if version is None else f"version {version}"

    acked = [version for version, ok in ops if ok]
    if acked:
        last = "delete" if acked[-1] is None else f"put of version {acked[-1]}"
        what = f"acknowledged {last}"
    else:
        what = "no acknowledged op this round"
    known = {settled} | {version for version, _ in ops}
    kind = "phantom version" if actual is not None and actual not in known else "lost"
    return (f"  id {key}: {kind}: found {state(actual)}, {what}; allowed "
            f"{', '.join(state(s) for s in allowed)}")
