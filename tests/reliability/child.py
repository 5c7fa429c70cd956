"""A second process for the one-writer-per-directory tests.

argv: path role
  role "writer": open for writing; print "locked <ErrorType>" or "opened", then, if it
                 opened, hold the lock until stdin closes (or a SIGKILL).
  role "reader": for each "go" line on stdin, open read_only, check every record's
                 vector and metadata against workload.vector_of, and print
                 "state <json {id: version}>" (or "error <ErrorType>: <message>"); print
                 "want" before each, so the parent can note what it had acknowledged first.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from workload import MEMBRANE, surviving_state

import pomaidb_core as pdb


def writer(path: str) -> None:
    try:
        db = pdb.open(path)
    except pdb.PomaiError as exc:
        print(f"locked {type(exc).__name__}", flush=True)
        return
    print("opened", flush=True)
    sys.stdin.read()
    db.close()


def reader(path: str) -> None:
    print("want", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        try:
            with pdb.open(path, read_only=True) as db:
                shards = db.stats()["shards"]
                if MEMBRANE in db.membranes():
                    state = surviving_state(db.membrane(MEMBRANE), shards)
                else:
                    state = [{} for _ in range(shards)]
            merged = {key: v for part in state for key, v in part.items()}
            print("state " + json.dumps(merged), flush=True)
        except Exception as exc:
            print(f"error {type(exc).__name__}: {exc}", flush=True)
        print("want", flush=True)


if __name__ == "__main__":
    {"writer": writer, "reader": reader}[sys.argv[2]](sys.argv[1])
