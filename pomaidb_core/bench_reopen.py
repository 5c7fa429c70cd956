"""`python -m pomaidb_core.bench_reopen`: the first filtered query after a cold reopen.

Writes N x 128 generated records with RAG-shaped metadata into a database of 4 shards,
freezing every 50,000 rows (so N / 50,000 segments, as an ingest leaves them), then opens it
in a new process and times, in order: open, a first unfiltered query, a first filtered query
(one category in ten: 10% of the rows), a filtered query on another category (its column is
now loaded, its mask is not) and a filtered query on another field. The difference between the
first two filtered queries is what the first filter costs on cold segments: decoding per-row
JSON (format v1) or mapping typed columns (v2).

Metadata per row: category (10 values), page (int), source (one document per 50 rows) and
"_lc_text", 300+ characters of page text, as the LangChain integration stores it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np

from .bench import machine_line
from .db import open as open_db

DIM, SEGMENT_ROWS = 128, 50_000
TEXT = ("Retrieval-augmented generation splits documents into chunks, embeds each chunk and "
        "stores the vectors with their text and metadata; a query embeds the question, finds "
        "the nearest chunks under an optional metadata filter and hands their text to the "
        "language model as context. This sentence pads the chunk to a realistic length.")


def metadata(i: int) -> dict:
    return {"category": f"c{i % 10}", "page": i % 500, "source": f"doc{i // 50}.pdf",
            "_lc_text": f"{i}: {TEXT}"}


def build(path: str, rows: int) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with open_db(path, shards=4, auto_freeze=False) as db:
        m = db.create_membrane("big", dim=DIM, metric="l2")
        for lo in range(0, rows, SEGMENT_ROWS):
            hi = min(lo + SEGMENT_ROWS, rows)
            m.put_batch(np.arange(lo, hi), rng.standard_normal((hi - lo, DIM), dtype=np.float32),
                        [metadata(i) for i in range(lo, hi)])
            db.freeze()
    return time.perf_counter() - start


def probe(path: str) -> dict:
    query = np.zeros(DIM, dtype=np.float32)
    timings = {}
    start = time.perf_counter()
    db = open_db(path, shards=4, read_only=True)
    m = db.membrane("big")
    timings["open_s"] = time.perf_counter() - start
    for name, flt in (("unfiltered_s", None), ("first_filtered_s", {"category": "c3"}),
                      ("warm_column_s", {"category": "c4"}), ("second_field_s", {"page": {"$lt": 50}})):
        start = time.perf_counter()
        hits = m.search(query, k=10, filter=flt)
        timings[name] = time.perf_counter() - start
        assert len(hits) == 10
    db.close()
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pomaidb_core.bench_reopen",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="keep the database here (default: a temp dir)")
    parser.add_argument("--probe", action="store_true",
                        help="only time the queries on the database kept in DIR")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dir or f"{tmp}/db"
        built = build(path, args.rows)
        child = [sys.executable, "-m", "pomaidb_core.bench_reopen", "--probe", "--dir", path]
        result = json.loads(subprocess.run(child, check=True, capture_output=True,
                                           text=True).stdout)
    print(machine_line())
    print(f"data: {args.rows:,} x {DIM} generated, {-(-args.rows // SEGMENT_ROWS)} segments "
          f"over 4 shards; write + freeze took {built:.1f} s")
    for name, seconds in result.items():
        print(f"{name:18} {seconds * 1e3:10.1f} ms")
    filtering = result["first_filtered_s"] - result["warm_column_s"]
    print(f"{'column cost':18} {filtering * 1e3:10.1f} ms (first filtered - warm column query)")


if __name__ == "__main__":
    main()
