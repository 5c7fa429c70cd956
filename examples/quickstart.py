"""PomaiDB in one minute: create, add vectors with metadata, search with a filter, reopen, search again.

    python examples/quickstart.py [--data DIR]

Uses real sentence embeddings of PyPI package summaries (the pypi-100k benchmark set: DIR holds
base.f16.npy, base.txt and queries.f16.npy) when given with --data or when a copy lies beside the
repository, and random vectors otherwise. The database lives in a temporary directory that is
removed at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

import pomaidb_core as pdb

BESIDE_THE_REPOSITORY = Path(__file__).resolve().parents[2] / "shared" / "data" / "pypi-100k"


def load_corpus(data: Path, n: int = 5000) -> tuple[np.ndarray, list[str], np.ndarray]:
    if (data / "base.f16.npy").exists():
        vectors = np.load(data / "base.f16.npy", mmap_mode="r")[:n].astype(np.float32)
        with open(data / "base.txt", encoding="utf-8") as handle:
            texts = [next(handle).rstrip("\n") for _ in range(n)]
        query = np.load(data / "queries.f16.npy")[0].astype(np.float32)
        return vectors, texts, query
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors, [f"document {i}" for i in range(n)], vectors[42] + 0.01


def show(title: str, hits: list[pdb.Hit]) -> None:
    print(title)
    for hit in hits:
        print(f"  {hit.score:.3f}  #{hit.id:<5} [{hit.metadata['tag']}] {hit.metadata['text'][:70]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BESIDE_THE_REPOSITORY,
                        help="directory of the pypi-100k embeddings (default: beside the repository)")
    vectors, texts, query = load_corpus(parser.parse_args().data)
    with tempfile.TemporaryDirectory(prefix="pomaidb-quickstart-") as scratch:
        run(vectors, texts, query, os.path.join(scratch, "db"))


def run(vectors: np.ndarray, texts: list[str], query: np.ndarray, path: str) -> None:
    metadatas = [{"text": t, "tag": f"t{i % 10}", "n": i % 100} for i, t in enumerate(texts)]

    with pdb.open(path, shards=4, sync="batch") as db:
        docs = db.create_membrane("docs", dim=vectors.shape[1], metric="cosine")
        docs.put_batch(range(len(vectors)), vectors, metadatas)
        print(f"stored {docs.count()} vectors in {path}")
        show("top 5:", docs.search(query, k=5))
        before = docs.search(query, k=5, filter={"tag": "t3", "n": {"$lt": 50}})
        show("top 5 with tag == 't3' and n < 50:", before)
        db.freeze()  # memtables -> immutable segments with WSBR sidecars

    with pdb.open(path) as db:  # reopen: memory-mapped segments, WAL replayed
        docs = db.membrane("docs")
        after = docs.search(query, k=5, filter={"tag": "t3", "n": {"$lt": 50}})
        show("after reopening, the same filtered search:", after)
        same = len({h.id for h in after} & {h.id for h in before})
        print(f"{same}/5 of the results are the ones found before reopening (frozen data is "
              "searched through WSBR; exact=True gives the exact answer)")
        print("stats:", {k: v for k, v in db.stats()["membranes"]["docs"].items() if k != "per_shard"})


if __name__ == "__main__":
    main()
