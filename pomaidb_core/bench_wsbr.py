"""`pomaidb bench wsbr`: WSBR recall@10 against single-thread QPS on real embeddings.

On a data directory (--data DIR; the pypi-100k layout of pomaidb_core.bench_data: all-MiniLM-L6-v2,
384-d; base.f16.npy, queries.f16.npy, gt_ip_top100.npy), or on generated vectors without one, it
builds one WSBR index per segment (--segments N splits the rows the way N shards would),
then prints the machine, the kernels' ISA and one table: build rate and sidecar size; exact
search (numpy BLAS and kernels.topk); a sweep of top_blocks / widen_blocks in both modes
(recall@10, QPS, fraction of rows scanned, speed-up over numpy exact); the defaults, single
queries and a 10 % filter; and, when importable, faiss IndexIVFFlat and hnswlib at the recall
the defaults reach. A recall/QPS plot goes to --out. --engine repeats the default and
filtered searches through the DB API (put_batch, freeze, search_batch, search).

Query timing is single-threaded (BLAS limited to one thread, faiss and hnswlib told to use
one); each figure is the best of --repeats runs of the whole query batch, since the machine
is shared. Timings read on a loaded machine are noisy: the load average is printed.

--build SIZES (e.g. --build 100000,1000000) measures segment builds instead: for each size,
one segment built with BLAS limited to one thread, its build rate (wall and CPU) and recall@10
of a default search against exact ground truth, and, up to --old-max rows, the same for the
previous flat formation (k-means with k = n / block_size over all rows, O(n^2 d / B)). A size
of 100,000 uses the data directory when one is given; other sizes use `mixture` (below).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from . import bench_data, kernels, wsbr, wsbr_build
from .bench import machine_line
from .options import IndexParams
from .routing import shards_of

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_REEXEC_MARK = "POMAIDB_BENCH_WSBR_SINGLE_THREAD"
K = 10
_LOCAL_DIMS = 12  # mixture(): dimensions of a cluster's own noise subspace


def _single_thread(argv: list[str]) -> Callable[[], contextlib.AbstractContextManager]:
    """One BLAS/OpenMP thread for the query timings: threadpoolctl if installed; else this
    program runs again with the environment variables set, so numpy starts with one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if os.environ.get(_REEXEC_MARK) != "1":
            env = dict(os.environ, **{name: "1" for name in _THREAD_VARS}, **{_REEXEC_MARK: "1"})
            os.execve(sys.executable, [sys.executable, "-m", "pomaidb_core.bench_wsbr", *argv], env)
        return contextlib.nullcontext
    return lambda: threadpool_limits(1)


class Segment:
    """One segment as the engine stores it: rows in block order and their global ids."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, index: wsbr.WsbrIndex) -> None:
        self.ids = ids
        self.vectors = vectors
        self.index = index


def load(data: str | None, limit: int | None, n_queries: int, metric: str):
    base, queries, described = bench_data.load(data, limit, n_queries)
    gt_path = os.path.join(data, "gt_ip_top100.npy") if data is not None else ""
    if limit is None and metric in ("ip", "cosine") and os.path.exists(gt_path):
        truth = np.load(gt_path)[:n_queries, :K].astype(np.int64)  # rows are unit length
    else:
        truth = numpy_exact(base, queries, K, metric)
    return base, queries, truth, described


def numpy_exact(base: np.ndarray, queries: np.ndarray, k: int, metric: str,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k ids with numpy alone (BLAS matrix product + argpartition), in chunks."""
    x = base
    if metric == "cosine":
        x = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-30)
    found = np.empty((len(queries), k), dtype=np.int64)
    x_sq = (x * x).sum(axis=1) if metric == "l2" else None
    for start in range(0, len(queries), 64):
        s = queries[start : start + 64] @ x.T
        if x_sq is not None:
            s = 2 * s - x_sq
        if mask is not None:
            s[:, ~mask] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        found[start : start + 64] = np.take_along_axis(top, order, axis=1)
    return found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def build_segments(base: np.ndarray, n_segments: int, metric: str,
                   params: IndexParams) -> tuple[list[Segment], float, float]:
    """Segments split like shards (routing.shards_of on the row ids); (segments, wall, cpu)."""
    shard = shards_of(np.arange(len(base), dtype=np.uint64), n_segments)
    segments = []
    wall, cpu = time.perf_counter(), time.process_time()
    for s in range(n_segments):
        ids = np.nonzero(shard == s)[0]
        order, index = wsbr.build_index(base[ids], metric, params)
        segments.append(Segment(ids[order], np.ascontiguousarray(base[ids[order]]), index))
    return segments, time.perf_counter() - wall, time.process_time() - cpu


def search(segments: list[Segment], queries: np.ndarray, metric: str, masks=None,
           knobs=None) -> np.ndarray:
    """Global ids of the k best over all segments, (score desc, id asc) like the engine.

    masks and knobs (keyword arguments of search_segment): one per segment, or None.
    """
    scores, ids = [], []
    for i, seg in enumerate(segments):
        s, r = wsbr.search_segment(seg.vectors, seg.index, queries, K, metric,
                                   mask=None if masks is None else masks[i],
                                   **({} if knobs is None else knobs[i]))
        scores.append(s)
        ids.append(np.where(r >= 0, seg.ids[np.maximum(r, 0)], -1))
    scores, ids = np.hstack(scores), np.hstack(ids)
    order = np.lexsort((ids, -scores), axis=1)[:, :K]
    return np.take_along_axis(ids, order, axis=1)


def scanned_fraction(segments: list[Segment], queries: np.ndarray, masks=None, **knobs) -> float:
    rows = 0
    for i, seg in enumerate(segments):
        groups = wsbr.route(seg.index, queries, K, mask=None if masks is None else masks[i],
                            **knobs)
        rows += sum(int(seg.index.block_sizes[g].sum()) for g in groups)
    return rows / len(queries) / sum(len(seg.ids) for seg in segments)


def sweep_wsbr(segments, queries, truth, metric, repeats, fractions, widen_factors):
    rows = []
    for mode, factors in (("shortlist", widen_factors), ("literal", (0,))):
        for factor in factors:
            for fraction in fractions[mode]:
                knobs = [_knobs(seg, fraction, factor, mode) for seg in segments]
                seconds, found = best_time(
                    lambda knobs=knobs: search(segments, queries, metric, knobs=knobs), repeats)
                scanned = np.mean([scanned_fraction([seg], queries, **kn)
                                   for seg, kn in zip(segments, knobs)])
                method = f"WSBR {mode}" + (f" W={factor}T" if factor else "")
                rows.append((method, f"T={fraction:.0%} of each segment's blocks",
                             recall(found, truth), len(queries) / seconds, scanned))
    return rows


def _knobs(seg: Segment, fraction: float, factor: int, mode: str) -> dict:
    top = max(1, round(fraction * seg.index.n_blocks))
    return {"top_blocks": top, "widen_blocks": factor * top, "mode": mode}


def single_query_ms(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median latency of one query at a time."""
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q[None, :])
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def faiss_rows(base, queries, truth, metric, repeats, target):
    try:
        import faiss
    except ImportError:
        return []
    x, q = base, queries
    if metric == "cosine":
        x = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    nlist = int(4 * np.sqrt(len(base)))
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexIVFFlat(faiss.IndexFlat(base.shape[1], kind), base.shape[1], nlist, kind)
    index.cp.niter = 10
    start = time.perf_counter()
    index.train(x)
    index.add(x)
    build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    rows = []
    for nprobe in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96):
        index.nprobe = nprobe
        seconds, (_, found) = best_time(lambda: index.search(q, K), repeats)
        rows.append(("faiss IVF-flat", f"nlist={nlist} nprobe={nprobe} (build {build:.0f}s)",
                     recall(found, truth), len(q) / seconds, nprobe / nlist))
    return _up_to(rows, target)


def hnsw_rows(base, queries, truth, metric, repeats, target):
    try:
        import hnswlib
    except ImportError:
        return []
    space = {"cosine": "cosine", "ip": "ip", "l2": "l2"}[metric]
    index = hnswlib.Index(space=space, dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=100, random_seed=1)
    start = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=os.cpu_count() or 1)
    build = time.perf_counter() - start
    rows = []
    for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192):
        index.set_ef(max(ef, K))
        seconds, (found, _) = best_time(lambda: index.knn_query(queries, k=K, num_threads=1),
                                        repeats)
        rows.append(("hnswlib", f"M=16 efC=100 ef={ef} (build {build:.0f}s)",
                     recall(found.astype(np.int64), truth), len(queries) / seconds, float("nan")))
    return _up_to(rows, target)


def _up_to(rows: list, target: float) -> list:
    """The sweep up to and including the first row reaching `target` recall."""
    for i, row in enumerate(rows):
        if row[2] >= target:
            return rows[: i + 1]
    return rows


def print_table(rows, exact_qps: float) -> None:
    print(f"{'method':<21} {'setting':<48} {'recall@10':>9} {'QPS':>8} {'scanned':>8} "
          f"{'x exact':>8}")
    for method, setting, rec, qps, scanned in rows:
        print(f"{method:<21} {setting:<48} {_cell(rec, '.4f'):>9} {_cell(qps, '.0f'):>8} "
              f"{_cell(scanned, '.1%'):>8} {_cell(qps / exact_qps, '.1f'):>8}")


def _cell(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)  # NaN: not measured


def plot(rows, exact_qps: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in dict.fromkeys(r[0] for r in rows):
        pts = sorted((r[2], r[3]) for r in rows if r[0] == method and "default" not in r[1])
        if len(pts) > 1:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    for r in rows:
        if "default" in r[1] and r[0] == "WSBR":
            ax.scatter([r[2]], [r[3]], marker="*", s=160, zorder=5, label=f"WSBR {r[1]}")
    ax.axhline(exact_qps, color="grey", linestyle="--", label="numpy exact")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (one thread)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def engine_rows(base, queries, truth, metric, n_shards, repeats) -> list:
    """Default and 10 %-filtered search through the DB API (put_batch, freeze, search)."""
    import tempfile

    from . import open as open_db

    rows = []
    tags = [{"tag": f"t{i % 10}"} for i in range(len(base))]
    with tempfile.TemporaryDirectory() as path, open_db(path, shards=n_shards) as db:
        m = db.create_membrane("bench", dim=base.shape[1], metric=metric)
        start = time.perf_counter()
        for lo in range(0, len(base), 10_000):
            m.put_batch(list(range(lo, min(lo + 10_000, len(base)))), base[lo : lo + 10_000],
                        tags[lo : lo + 10_000])
        db.freeze()
        build = time.perf_counter() - start
        rows.append(("engine", f"put_batch + freeze: {len(base) / build:,.0f} rows/s",
                     float("nan"), float("nan"), float("nan")))
        for name, flt, want in (("default", None, truth),
                                ("default, filter tag=t3", {"tag": "t3"},
                                 numpy_exact(base, queries, K, metric,
                                             np.arange(len(base)) % 10 == 3))):
            seconds, hits = best_time(lambda flt=flt: m.search_batch(queries, k=K, filter=flt),
                                      repeats)
            found = np.array([[h.id for h in row] for row in hits])
            p50 = single_query_ms(lambda q, flt=flt: m.search(q[0], k=K, filter=flt),
                                  queries[:200])
            rows.append(("engine", f"{name} (p50 single query {p50:.2f} ms)", recall(found, want),
                         len(queries) / seconds, float("nan")))
        seconds, _ = best_time(lambda: m.search_batch(queries, k=K, exact=True), 1)
        rows.append(("engine", "exact=True", 1.0, len(queries) / seconds, 1.0))
    return rows


# ---------------------------------------------------------------------------- build benchmark


def mixture(rows: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian mixture shaped like sentence embeddings; (base, queries), unit rows.

    Two levels of structure, as topics have subtopics: rows / 20,000 + 2 topic directions,
    and rows / 200 cluster centres, each the unit vector of a random topic (weight 1) plus its
    own random direction (weight 0.8) plus a shared component (weight 0.3: embeddings of one
    model share a mean direction). Cluster sizes are lognormal (sigma 1: a few big clusters,
    many small ones). A row is its centre plus noise of norm s (s uniform in [1.2, 2.0] per
    cluster), mostly (0.9) within a random 12-dimensional subspace of the cluster and a
    little (0.45) isotropic, then scaled to unit length: clusters have a low local dimension
    like real embeddings, so nearest neighbours are meaningful within a cluster and often lie
    in sibling clusters of the topic (isotropic blobs in 384-d would make every row of a
    cluster equally near and any clustering look perfect). Queries are fresh draws from the
    same mixture. Generated cluster by cluster, float32 throughout.
    """
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    n_centres = max(4, rows // 200)
    topics = unit(rng.standard_normal((rows // 20_000 + 2, dim)))
    centres = unit(topics[rng.integers(0, len(topics), n_centres)]
                   + 0.8 * unit(rng.standard_normal((n_centres, dim)))
                   + 0.3 * unit(rng.standard_normal(dim)))
    weights = rng.lognormal(0.0, 1.0, n_centres)
    spread = rng.uniform(1.2, 2.0, n_centres).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, dim), dtype=np.float32)
        which = rng.choice(n_centres, size=count, p=weights / weights.sum())
        for c in np.unique(which):
            at = np.nonzero(which == c)[0]
            local = unit(rng.standard_normal((_LOCAL_DIMS, dim)))
            noise = (0.9 / np.sqrt(_LOCAL_DIMS)) * rng.standard_normal(
                (len(at), _LOCAL_DIMS), dtype=np.float32) @ local
            noise += (0.45 / np.sqrt(dim)) * rng.standard_normal((len(at), dim), dtype=np.float32)
            out[at] = unit(centres[c] + spread[c] * noise)
        return out

    return draw(rows), draw(n_queries)


def flat_blocks(routing: np.ndarray, block_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The previous block formation, for comparison: one flat k-means with k = n / block_size
    (PCA space, trained on 5 rows per centroid), every row assigned to the nearest of all k
    centroids, refined among the 32 nearest of all k centroids, oversized clusters split."""
    n = len(routing)
    k = -(-n // block_size)
    sample = routing[wsbr_build.sample_rows(n, 10_000, rng)]
    mu = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    basis = wsbr_build.pca_basis(sample - mu, 128, rng)
    labels = wsbr_build.kmeans(wsbr_build.project(routing, mu, basis), k, 5, 6, rng)
    labels = wsbr_build.refine(routing, labels, np.zeros(k, dtype=np.int64))
    return wsbr_build.split_clusters(routing, labels, k, block_size)


def build_rows(sizes: list[int], data: str | None, n_queries: int, old_max: int,
               metric: str) -> list[tuple]:
    """(rows, data, former, wall s, CPU s, blocks, default top_blocks, scanned, recall@10)."""
    rows = []
    for size in sizes:
        if size == 100_000 and data is not None:
            base, queries, _ = bench_data.load(data, size, n_queries)
            described = "pypi-100k" if "pypi" in data else os.path.basename(data)
        else:
            base, queries = mixture(size, 384, n_queries)
            described = "mixture"
        _, truth = kernels.topk(base, queries, K, metric)
        formers = [("two-level", wsbr_build.form_blocks)]
        if size <= old_max:
            formers.append(("flat (old)", flat_blocks))
        for name, former in formers:
            rows.append((size, described, name, *_timed_build(base, queries, truth, metric, former)))
            print(_build_line(rows[-1]), flush=True)
    return rows


def _timed_build(base, queries, truth, metric, former) -> tuple:
    from threadpoolctl import threadpool_limits

    with _former(former), threadpool_limits(1, user_api="blas"):
        wall, cpu = time.perf_counter(), time.process_time()
        order, index = wsbr.build_index(base, metric, IndexParams())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    vectors = np.ascontiguousarray(base[order])
    _, found = wsbr.search_segment(vectors, index, queries, K, metric)
    scanned = scanned_fraction([Segment(order, vectors, index)], queries)
    return wall, cpu, index.n_blocks, index.top_blocks, scanned, recall(order[found], truth)


@contextlib.contextmanager
def _former(former):
    """build_index with another block formation (the benchmark's only way to compare)."""
    saved = wsbr.form_blocks
    wsbr.form_blocks = former
    try:
        yield
    finally:
        wsbr.form_blocks = saved


_BUILD_HEADER = (f"{'rows':>9} {'data':<10} {'formation':<11} {'wall s':>7} {'CPU s':>7} "
                 f"{'vec/s CPU':>10} {'blocks':>7} {'T':>5} {'scanned':>8} {'recall@10':>9}")


def _build_line(row: tuple) -> str:
    size, described, name, wall, cpu, blocks, top, scanned, rec = row
    return (f"{size:>9,} {described:<10} {name:<11} {wall:>7.1f} {cpu:>7.1f} {size / cpu:>10,.0f} "
            f"{blocks:>7,} {top:>5} {scanned:>8.2%} {rec:>9.4f}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    limit_threads = _single_thread(argv)
    parser = argparse.ArgumentParser(prog="pomaidb bench wsbr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, metavar="DIR",
                        help=f"embeddings directory (default: ${bench_data.DATA_ENV}, else generated)")
    parser.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    parser.add_argument("--limit", type=int, default=None, help="use only the first N base rows")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=1, help="split the base like N shards")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench-out/wsbr.png")
    parser.add_argument("--no-baselines", action="store_true", help="skip faiss and hnswlib")
    parser.add_argument("--engine", action="store_true", help="also search through the DB API")
    parser.add_argument("--build", default=None, metavar="SIZES",
                        help="measure segment builds of these comma-separated row counts instead")
    parser.add_argument("--old-max", type=int, default=200_000,
                        help="with --build: also build the old flat formation up to this size")
    args = parser.parse_args(argv)
    if args.build is not None:
        print(f"{machine_line()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(_BUILD_HEADER)
        build_rows([int(x) for x in args.build.split(",")], bench_data.data_dir(args.data),
                   min(args.queries, 500), args.old_max, args.metric)
        return

    base, queries, truth, described = load(bench_data.data_dir(args.data), args.limit,
                                           args.queries, args.metric)
    print(f"{machine_line()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"data: {described}; {len(queries)} queries, metric {args.metric}, "
          f"{args.segments} segment(s)")
    segments, build_wall, build_cpu = build_segments(base, args.segments, args.metric,
                                                     IndexParams())
    sidecar = sum(len(seg.index.to_bytes(0)) for seg in segments)
    print(f"build (freeze-time blocks + sidecar): {len(base) / build_wall:,.0f} vectors/s wall "
          f"({build_wall:.1f} s), {len(base) / build_cpu:,.0f} vectors/s CPU; "
          f"{sum(s.index.n_blocks for s in segments)} blocks; sidecar "
          f"{sidecar / len(base):.1f} bytes/vector")

    with limit_threads():
        rows = run_searches(args, base, queries, truth, segments)
    exact_qps = rows[0][3]
    print_table(rows, exact_qps)
    try:
        plot(rows, exact_qps, args.out)
        print(f"plot: {args.out}")
    except ImportError:
        print("plot: skipped (matplotlib is not installed: pip install 'pomaidb-core[bench]')")


def run_searches(args, base, queries, truth, segments) -> list:
    metric, repeats = args.metric, args.repeats
    seconds, found = best_time(lambda: numpy_exact(base, queries, K, metric), 1)
    rows = [("numpy exact", "BLAS product + argpartition", recall(found, truth),
             len(queries) / seconds, 1.0)]
    seconds, (_, r) = best_time(lambda: kernels.topk(base, queries, K, metric), 1)
    rows.append(("kernels exact", f"kernels.topk ({kernels.active_isa()})", recall(r, truth),
                 len(queries) / seconds, 1.0))
    fractions = {"shortlist": (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.15),
                 "literal": (0.05, 0.10, 0.15, 0.20, 0.30)}
    rows += sweep_wsbr(segments, queries, truth, metric, repeats, fractions, (3, 7))
    seconds, found = best_time(lambda: search(segments, queries, metric), repeats)
    default_recall = recall(found, truth)
    p50 = single_query_ms(lambda q: search(segments, q, metric), queries[:200])
    rows.append(("WSBR", f"default (p50 single query {p50:.2f} ms)", default_recall,
                 len(queries) / seconds, scanned_fraction(segments, queries)))
    allowed = np.arange(len(base)) % 10 == 3
    masks = [allowed[seg.ids] for seg in segments]
    want = numpy_exact(base, queries, K, metric, allowed)
    seconds, found = best_time(lambda: search(segments, queries, metric, masks), repeats)
    p50 = single_query_ms(lambda q: search(segments, q, metric, masks), queries[:200])
    rows.append(("WSBR", f"default, 10% filter (p50 single query {p50:.2f} ms)",
                 recall(found, want), len(queries) / seconds,
                 scanned_fraction(segments, queries, masks)))
    if not args.no_baselines:
        rows += faiss_rows(base, queries, truth, metric, repeats, default_recall)
        rows += hnsw_rows(base, queries, truth, metric, repeats, default_recall)
    if args.engine:
        rows += engine_rows(base, queries, truth, metric, args.segments, repeats)
    return rows


if __name__ == "__main__":
    main()
