"""A single-writer workload and the history that judges what may survive it.

Every write is logged per shard *before* it is issued, and counted as
acknowledged once the call returns. Shards are independent logs, so after a
crash or power cut each shard must show the state of some prefix of its own
log: never a hole in the middle, never a record nobody wrote. How long that
prefix must be is the durability promise under test (acknowledged writes for
sync="always"/"batch", everything before the last finished freeze for "never").

A call that raised may or may not have taken effect (a failed fsync leaves its
write in the file). Its ids are *poisoned*: never written again, and judged
apart: absent, or holding some version that was written to them.

Vectors and metadata are pure functions of (id, version), so contents are
checked exactly, not just ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

import pomaidb_core as pdb
from pomaidb_core import routing

DIM = 8
MEMBRANE = "m"
GROUPS = 4


def vector_of(key: int, version: int) -> np.ndarray:
    return np.random.default_rng([key, version]).standard_normal(DIM).astype(np.float32)


def group_of(key: int, version: int) -> int:
    return (key + version) % GROUPS


def metadata_of(key: int, version: int) -> dict:
    return {"v": version, "g": group_of(key, version)}


@dataclass(frozen=True)
class Floor:
    """What the history promised at one instant (taken at the power cut)."""

    membrane: bool  # create_membrane had returned
    acked: tuple[int, ...]  # per shard: ops whose call had returned
    frozen: tuple[int, ...]  # per shard: ops issued before the last freeze() that returned


class History:
    def __init__(self, shards: int, base: dict[int, int] | None = None) -> None:
        self.shards = shards
        self.base = dict(base or {})  # id -> version before this round, durable
        self.ops: list[list[tuple]] = [[] for _ in range(shards)]
        self.acked = [0] * shards
        self.frozen = [0] * shards
        self.membrane = bool(self.base)
        self.versions = dict(self.base)  # the writer's view: newest version per acknowledged id
        self.poisoned: set[int] = set()  # ids a failed call wrote or deleted
        self.issued: dict[int, set[int]] = {k: {v} for k, v in self.base.items()}
        self._next_version = max(self.base.values(), default=0) + 1
        self._next_id = max(self.base, default=-1) + 1

    def fresh_ids(self, count: int) -> list[int]:
        start = self._next_id
        self._next_id += count
        return list(range(start, start + count))

    def known(self) -> list[int]:
        """Ids with a known acknowledged version, safe to overwrite or delete."""
        return [k for k in self.versions if k not in self.poisoned]

    def floor(self) -> Floor:
        return Floor(self.membrane, tuple(self.acked), tuple(self.frozen))

    def _log(self, per_shard: dict[int, tuple]) -> list[tuple[int, int]]:
        slots = []
        for shard, op in per_shard.items():
            self.ops[shard].append(op)
            slots.append((shard, len(self.ops[shard])))
        return slots

    def _ack(self, slots: list[tuple[int, int]]) -> None:
        for shard, count in slots:
            self.acked[shard] = max(self.acked[shard], count)

    def _call(self, slots: list[tuple[int, int]], touched: list[int], call) -> None:
        """Run the write; on failure its ids become poisoned, on success it is acknowledged."""
        try:
            call()
        except BaseException:
            self.poisoned.update(touched)
            raise
        self._ack(slots)

    # ------------------------------------------------------------------ writes

    def put(self, m: pdb.Membrane, keys: list[int]) -> None:
        keys = list(dict.fromkeys(keys))
        version = self._next_version
        self._next_version += 1
        self._next_id = max(self._next_id, max(keys) + 1)
        per_shard: dict[int, dict[int, int]] = {}
        for key in keys:
            per_shard.setdefault(routing.shard_of(key, self.shards), {})[key] = version
            self.issued.setdefault(key, set()).add(version)
        slots = self._log({s: ("put", ids) for s, ids in per_shard.items()})

        def call() -> None:
            if len(keys) == 1:
                m.put(keys[0], vector_of(keys[0], version), metadata_of(keys[0], version))
            else:
                m.put_batch(keys, np.stack([vector_of(k, version) for k in keys]),
                            [metadata_of(k, version) for k in keys])

        self._call(slots, keys, call)
        self.versions.update({key: version for key in keys})

    def delete(self, m: pdb.Membrane, keys: list[int]) -> None:
        per_shard: dict[int, set[int]] = {}
        for key in keys:
            per_shard.setdefault(routing.shard_of(key, self.shards), set()).add(key)
        slots = self._log({s: ("del", ids) for s, ids in per_shard.items()})
        self._call(slots, keys, lambda: m.delete_batch(keys))
        for key in keys:
            self.versions.pop(key, None)

    def delete_where(self, m: pdb.Membrane, group: int) -> None:
        slots = self._log({s: ("where", group) for s in range(self.shards)})
        doomed = [k for k, v in self.versions.items() if group_of(k, v) == group]
        self._call(slots, doomed, lambda: m.delete_where({"g": group}))
        self.versions = {k: v for k, v in self.versions.items() if group_of(k, v) != group}

    def freeze(self, db: pdb.DB) -> None:
        issued = [len(ops) for ops in self.ops]
        db.freeze()
        self.frozen = [max(a, b) for a, b in zip(self.frozen, issued)]

    # ------------------------------------------------------------------ judging

    def prefix_length(self, shard: int, actual: dict[int, int], minimum: int) -> int | None:
        """The k >= minimum such that base + ops[:k] of `shard` gives `actual`, else None.

        Poisoned ids are left out of the comparison; each must hold a version
        that was written to it, if it is there at all.
        """
        for key in self.poisoned & actual.keys():
            assert actual[key] in self.issued.get(key, ()), f"id {key} holds a phantom version"
        actual = {k: v for k, v in actual.items() if k not in self.poisoned}
        state = {k: v for k, v in self.base.items() if routing.shard_of(k, self.shards) == shard}
        for k, op in enumerate([None, *self.ops[shard]]):
            if op is not None:
                _apply(state, op)
                for key in self.poisoned & state.keys():
                    del state[key]
            if k >= minimum and len(state) == len(actual) and state == actual:
                return k
        return None


def _apply(state: dict[int, int], op: tuple) -> None:
    kind, arg = op
    if kind == "put":
        state.update(arg)
    elif kind == "del":
        for key in arg:
            state.pop(key, None)
    else:
        for key in [k for k, v in state.items() if group_of(k, v) == arg]:
            del state[key]


def run(db: pdb.DB, m: pdb.Membrane, history: History, rng: random.Random, steps: int,
        stop=lambda: False, tolerate: tuple[type[BaseException], ...] = ()) -> int:
    """A random mix of puts, overwrites, deletes, delete_where, freezes and compactions.

    Calls raising one of `tolerate` count as failed (never acknowledged) and the
    run goes on; returns how many failed.
    """
    failed = 0
    for _ in range(steps):
        if stop():
            break
        try:
            _one_step(db, m, history, rng)
        except tolerate:
            failed += 1
    return failed


def _one_step(db: pdb.DB, m: pdb.Membrane, history: History, rng: random.Random) -> None:
    roll = rng.random()
    known = history.known()
    if roll < 0.40:
        history.put(m, history.fresh_ids(1))
    elif roll < 0.70:
        count = rng.randint(2, 30)
        reused = rng.sample(known, min(len(known), count // 3))
        history.put(m, reused + history.fresh_ids(count - len(reused)))
    elif roll < 0.82 and known:
        history.delete(m, rng.sample(known, min(len(known), rng.randint(1, 5))))
    elif roll < 0.85:
        history.delete_where(m, rng.randrange(GROUPS))
    elif roll < 0.95:
        history.freeze(db)
    else:
        db.compact()


def surviving_state(m: pdb.Membrane, shards: int) -> list[dict[int, int]]:
    """Per shard id -> version, after checking every record's vector and metadata exactly."""
    per_shard: list[dict[int, int]] = [{} for _ in range(shards)]
    for record in m.scan():
        version = record.metadata["v"]
        assert record.metadata == metadata_of(record.id, version), record
        np.testing.assert_array_equal(record.vector, vector_of(record.id, version))
        per_shard[routing.shard_of(record.id, shards)][record.id] = version
    return per_shard
