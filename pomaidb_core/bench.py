"""`pomaidb bench core` and `pomaidb bench open`: the engine's speed, against baselines measured in the same run.

Prints the machine, the kernel ISA, the data, and ratios, never bare numbers
alone: this machine is small and noisy, so only ratios mean much.

core (on --data DIR, or generated vectors: see pomaidb_core.bench_data):
  put_batch vectors/s per sync policy; single put ops/s (sync="never");
  exact search p50/p99 (one shard = one scanning thread, and the default 4 shards);
  numpy brute force (matmul + argpartition) over the same float32 vectors;
  memory read bandwidth (numpy sum over 512 MiB) and the bandwidth our scan reaches.
open:
  1,000,000 x 128-d generated records written and frozen, then a new process opens
  the DB and runs a first exact query: wall time and RSS after open.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from . import bench_data, kernels
from .db import open as open_db
from .errors import InvalidArgumentError


def _single_thread_blas() -> None:
    threadpool_limits(1)


def machine_line() -> str:
    model = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"machine: {platform.machine()} {model}, {os.cpu_count()} cores; python "
            f"{platform.python_version()}, numpy {np.__version__}; kernel ISA {kernels.active_isa()}")


def _table(rows: list[tuple], headers: tuple) -> str:
    cells = [tuple(str(c) for c in row) for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def memory_bandwidth_gbs() -> float:
    array = np.ones(128 << 20, dtype=np.float32)  # 512 MiB
    array.sum()
    best = min(_timed(array.sum) for _ in range(5))
    return array.nbytes / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_puts(base: np.ndarray) -> list[tuple]:
    rows = []
    for sync in ("always", "batch", "never"):
        with tempfile.TemporaryDirectory() as tmp, open_db(tmp, sync=sync, auto_freeze=False) as db:
            m = db.create_membrane("b", dim=base.shape[1], metric="cosine")
            ids = np.arange(len(base), dtype=np.uint64)
            start = time.perf_counter()
            for lo in range(0, len(base), 1000):
                m.put_batch(ids[lo:lo + 1000], base[lo:lo + 1000])
            rate = len(base) / (time.perf_counter() - start)
        rows.append((f"put_batch (1000/batch), sync={sync}", f"{rate:,.0f} vectors/s"))
    with tempfile.TemporaryDirectory() as tmp, open_db(tmp, sync="never", auto_freeze=False) as db:
        m = db.create_membrane("b", dim=base.shape[1], metric="cosine")
        count = min(20_000, len(base))
        start = time.perf_counter()
        for i in range(count):
            m.put(i, base[i])
        rate = count / (time.perf_counter() - start)
    rows.append(("single put, one thread, sync=never", f"{rate:,.0f} ops/s"))
    return rows


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_search(base: np.ndarray, queries: np.ndarray, n_queries: int) -> list[tuple]:
    rows = []
    bandwidth = memory_bandwidth_gbs()
    numpy_times = []
    for query in queries[:n_queries]:
        start = time.perf_counter()
        scores = base @ query
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]
        numpy_times.append(time.perf_counter() - start)
    np50, np99 = _percentiles(numpy_times)
    rows.append(("numpy brute force (matmul + argpartition)", f"p50 {np50:.2f} ms", f"p99 {np99:.2f} ms",
                 "1.00x", f"{base.nbytes / (np50 / 1e3) / 1e9:.1f} GB/s"))
    for shards in (1, 4):
        with tempfile.TemporaryDirectory() as tmp, open_db(tmp, shards=shards, auto_freeze=False) as db:
            m = db.create_membrane("b", dim=base.shape[1], metric="ip")
            for lo in range(0, len(base), 5000):
                m.put_batch(np.arange(lo, min(lo + 5000, len(base))), base[lo:lo + 5000])
            times = []
            for query in queries[:n_queries]:
                start = time.perf_counter()
                m.search(query, k=10, exact=True)
                times.append(time.perf_counter() - start)
        p50, p99 = _percentiles(times)
        gbs = base.nbytes / (p50 / 1e3) / 1e9
        rows.append((f"PomaiDB exact search, {shards} shard(s)", f"p50 {p50:.2f} ms",
                     f"p99 {p99:.2f} ms", f"{p50 / np50:.2f}x numpy",
                     f"{gbs:.1f} GB/s ({gbs / bandwidth:.0%} of memory bandwidth)"))
    rows.append(("memory read bandwidth (numpy sum, 512 MiB)", "", "", "", f"{bandwidth:.1f} GB/s"))
    return rows


def run_core(args: argparse.Namespace) -> None:
    _single_thread_blas()
    base, queries, described = bench_data.load(bench_data.data_dir(args.data), args.limit,
                                               args.queries)
    print(machine_line())
    print(f"data: {described}; {base.nbytes / 1e6:.0f} MB as float32, {len(queries)} queries, k=10")
    print()
    print(_table(bench_puts(base), ("write path", "throughput")))
    print()
    print(_table(bench_search(base, queries, args.queries),
                 ("search (single caller thread)", "p50", "p99", "time ratio", "bandwidth")))


def run_open(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    n, dim = args.rows, 128
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with open_db(tmp, shards=4, auto_freeze=False) as db:
            m = db.create_membrane("big", dim=dim, metric="l2")
            for lo in range(0, n, 50_000):
                m.put_batch(np.arange(lo, min(lo + 50_000, n)),
                            rng.standard_normal((min(50_000, n - lo), dim), dtype=np.float32))
            db.freeze()
            db.compact()
        build = time.perf_counter() - start
        probe = [sys.executable, "-m", "pomaidb_core.bench", "_open_probe", tmp]
        result = json.loads(subprocess.run(probe, check=True, capture_output=True,
                                           text=True).stdout)
    vector_mb = n * dim * 4 / 1e6
    print(f"data: {n:,} x {dim} float32 generated ({vector_mb:.0f} MB of vectors); "
          f"write + freeze + compact took {build:.1f} s")
    print(_table([
        ("open (new process)", f"{result['open_s'] * 1e3:.0f} ms"),
        ("first exact query", f"{result['query_s'] * 1e3:.0f} ms"),
        ("open + first query", f"{(result['open_s'] + result['query_s']) * 1e3:.0f} ms (target < 1000)"),
        ("RSS growth after open", f"{result['rss_open_mb']:.0f} MB ({result['rss_open_mb'] / vector_mb:.1%} "
                                  "of the vectors)"),
    ], ("reopen", "value")))


def _open_probe(path: str) -> None:
    def rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    before = rss_mb()
    start = time.perf_counter()
    db = open_db(path, shards=4)
    m = db.membrane("big")
    opened = time.perf_counter()
    rss_open = rss_mb() - before
    m.search(np.zeros(128, dtype=np.float32), k=10, exact=True)
    done = time.perf_counter()
    db.close()
    print(json.dumps({"open_s": opened - start, "query_s": done - opened, "rss_open_mb": rss_open,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_open_probe"]:  # the child process of `open`; not a command for people
        _open_probe(argv[1])
        return
    parser = argparse.ArgumentParser(prog="pomaidb bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True,
                                metavar="{core,open,wsbr,scale,text,ray}")
    core = sub.add_parser("core", help="write throughput and exact search vs numpy")
    core.add_argument("--data", default=None, metavar="DIR",
                      help=f"embeddings directory (default: ${bench_data.DATA_ENV}, else generated)")
    core.add_argument("--limit", type=int, default=None, help="use only the first N base rows")
    core.add_argument("--queries", type=int, default=200)
    big = sub.add_parser("open", help="reopen time and RSS of a 1M x 128 database")
    big.add_argument("--rows", type=int, default=1_000_000)
    sub.add_parser("wsbr", help="WSBR recall/QPS sweep (see pomaidb_core.bench_wsbr)",
                   add_help=False)
    sub.add_parser("scale", help="the engine end to end at 100k-1M rows vs hnswlib "
                   "(see pomaidb_core.bench_scale)", add_help=False)
    sub.add_parser("text", help="keyword and hybrid search vs bm25s, known-item quality "
                   "(see pomaidb_core.bench_text)", add_help=False)
    sub.add_parser("ray", help="the Ray backend vs in-process on 1, 2, 4 simulated nodes "
                   "(see pomaidb_core.bench_ray; needs the `ray` extra)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.what not in ("wsbr", "scale", "text", "ray") and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.what == "wsbr":
            from . import bench_wsbr

            bench_wsbr.main(rest)
        elif args.what == "scale":
            from . import bench_scale

            bench_scale.main(rest)
        elif args.what == "text":
            from . import bench_text

            bench_text.main(rest)
        elif args.what == "ray":
            from . import bench_ray

            bench_ray.main(rest)
        elif args.what == "core":
            run_core(args)
        else:
            run_open(args)
    except InvalidArgumentError as exc:
        raise SystemExit(f"pomaidb bench {args.what}: {exc}") from None


if __name__ == "__main__":
    main()
