"""Child process for crash tests: writes, and reports each acknowledged write on stdout.

argv: path sync start_id mode   (mode: "plain" | "freeze" — freeze/compact now and then)
Vectors are a pure function of the id, so the parent can check contents.
Prints "put <id>" / "del <id>" only after the call returned (acknowledged), and
"try-del <id>" before a delete is issued.
"""

from __future__ import annotations

import random
import sys

import numpy as np

import pomaidb_core as pdb

DIM = 16


def vector_of(key: int) -> np.ndarray:
    return np.random.default_rng(key).standard_normal(DIM).astype(np.float32)


def main() -> None:
    path, sync, start, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = random.Random(start)
    db = pdb.open(path, shards=3, sync=sync, memtable_limit=300, compaction_trigger=3)
    m = db.get_or_create_membrane("crash", dim=DIM, metric="l2")
    print("ready", flush=True)
    key = start
    while True:
        if rng.random() < 0.5:
            m.put(key, vector_of(key), {"k": key})
            print(f"put {key}", flush=True)
            key += 1
        else:
            keys = list(range(key, key + rng.randrange(2, 40)))
            m.put_batch(keys, np.stack([vector_of(k) for k in keys]), [{"k": k} for k in keys])
            print("put " + " ".join(map(str, keys)), flush=True)
            key = keys[-1] + 1
        if rng.random() < 0.2:
            victim = rng.randrange(start, key)
            print(f"try-del {victim}", flush=True)  # from here on, its absence is legitimate
            m.delete(victim)
            print(f"del {victim}", flush=True)
        if mode == "freeze" and rng.random() < 0.05:
            db.freeze() if rng.random() < 0.7 else db.compact()


if __name__ == "__main__":
    main()
