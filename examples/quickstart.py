"""PomaiDB in one minute: create, add vectors with metadata, search with a filter, reopen, search again.

Uses real sentence embeddings from ../shared/data/pypi-100k when they are there
(the PyPI package summaries), or random vectors otherwise.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

import pomaidb_core as pdb

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pypi-100k")


def load_corpus(n: int = 5000) -> tuple[np.ndarray, list[str], np.ndarray]:
    if os.path.exists(os.path.join(DATA, "base.f16.npy")):
        vectors = np.load(os.path.join(DATA, "base.f16.npy"), mmap_mode="r")[:n].astype(np.float32)
        with open(os.path.join(DATA, "base.txt"), encoding="utf-8") as handle:
            texts = [next(handle).rstrip("\n") for _ in range(n)]
        query = np.load(os.path.join(DATA, "queries.f16.npy"))[0].astype(np.float32)
        return vectors, texts, query
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    return vectors, [f"document {i}" for i in range(n)], vectors[42] + 0.01


def show(title: str, hits: list[pdb.Hit]) -> None:
    print(title)
    for hit in hits:
        print(f"  {hit.score:.3f}  #{hit.id:<5} [{hit.metadata['tag']}] {hit.metadata['text'][:70]}")


def main() -> None:
    vectors, texts, query = load_corpus()
    path = os.path.join(tempfile.mkdtemp(prefix="pomaidb-quickstart-"), "db")
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
