"""`pomaidb bench ray`: the Ray backend against the in-process engine at the same shard count.

For each cluster size (simulated nodes of `ray.cluster_utils.Cluster` on this machine,
each a PomaiDB host), the same generated rows go into a Ray-backed database and an
in-process one, both with --shards shards, frozen into segments; then:

- ingest vec/s (put_batch of --batch rows; cross-shard two-phase commit on Ray);
- single-query search p50/p95 in ms, and the overhead of Ray over in-process: the p50s of
  the same queries sent to both, one after the other, so that both see the same load (on a
  shared machine, figures taken minutes apart differ by more than the overhead);
- the same overhead for a client with `ray_compiled_search=True` (a Ray Compiled Graph);
- search QPS with --clients client threads, both backends.

On a small machine every simulated node shares the same cores, so adding nodes shows
the overhead and correctness of fan-out, not more capacity; the per-shard search cost
printed last is the figure to extrapolate to real machines (see README "Beyond one machine").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import numpy as np

from .bench import _table, machine_line
from .db import open as open_db


def _ingest(m, vectors: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    for lo in range(0, len(vectors), batch):
        hi = min(lo + batch, len(vectors))
        m.put_batch(np.arange(lo, hi), vectors[lo:hi])
    return len(vectors) / (time.perf_counter() - start)


def _latencies_ms(m, queries: np.ndarray, k: int) -> list[float]:
    return [_timed_ms(lambda q=query: m.search(q, k)) for query in queries]


def _timed_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _qps(m, queries: np.ndarray, k: int, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        i = index
        while time.perf_counter() < stop:
            m.search(queries[i % len(queries)], k)
            done[index] += 1
            i += clients

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def _measure(db, vectors: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict:
    m = db.create_membrane("bench", dim=vectors.shape[1], metric="ip")
    ingest = _ingest(m, vectors, args.batch)
    db.freeze()
    _latencies_ms(m, queries[:20], args.k)  # warm: mapped segments, actor threads
    rounds = [_latencies_ms(m, queries, args.k) for _ in range(args.repeat)]
    p50 = statistics.median(statistics.median(r) for r in rounds)
    p95 = statistics.median(float(np.percentile(r, 95)) for r in rounds)
    qps = statistics.median(_qps(m, queries, args.k, args.clients, args.seconds)
                            for _ in range(args.repeat))
    return {"ingest": ingest, "p50": p50, "p95": p95, "qps": qps}


def _paired_overhead_ms(local, remote, queries: np.ndarray, k: int, repeat: int) -> float:
    """Median over rounds of p50(remote) - p50(local), each query timed on both in turn."""
    rounds = []
    for _ in range(repeat):
        times: tuple[list[float], list[float]] = ([], [])
        for query in queries:
            times[0].append(_timed_ms(lambda q=query: local.search(q, k)))
            times[1].append(_timed_ms(lambda q=query: remote.search(q, k)))
        rounds.append(statistics.median(times[1]) - statistics.median(times[0]))
    return statistics.median(rounds)


def _cluster_run(nodes: int, vectors: np.ndarray, queries: np.ndarray,
                 args: argparse.Namespace, local) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=_node(0))
    for i in range(1, nodes):
        cluster.add_node(**_node(i))
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="pomaidb-bench-ray-") as tmp:
            db = open_db(f"{tmp}/db", backend="ray", shards=args.shards)
            try:
                got = _measure(db, vectors, queries, args)
                got["overhead"] = _paired_overhead_ms(local, db.membrane("bench"), queries,
                                                      args.k, args.repeat)
                # A second client on the same actors, its searches through a Compiled Graph.
                fast = open_db(f"{tmp}/db", backend="ray", ray_compiled_search=True)
                try:
                    compiled = fast.membrane("bench")
                    _latencies_ms(compiled, queries[:20], args.k)  # compiles the graph
                    got["compiled"] = _paired_overhead_ms(local, compiled, queries, args.k,
                                                          args.repeat)
                finally:
                    fast.close()
                # The floor under any fan-out: one empty call to every shard actor.
                got["ping"] = statistics.median(_timed_ms(lambda: db._broadcast_each("ping"))
                                                for _ in range(200))
                return got
            finally:
                db.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


def _node(i: int) -> dict:
    return {"num_cpus": 1, "resources": {f"pomaidb_host:n{i}": 1000}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pomaidb bench ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,2,4", help="cluster sizes (default 1,2,4)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000, help="rows per put_batch")
    parser.add_argument("--clients", type=int, default=4, help="client threads for QPS")
    parser.add_argument("--seconds", type=float, default=3.0, help="per QPS run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (medians)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    print(machine_line())
    print(f"data: {args.rows} x {args.dim} generated (ip), {args.shards} shards, k={args.k}, "
          f"{args.clients} client threads; medians of {args.repeat} runs")
    with tempfile.TemporaryDirectory(prefix="pomaidb-bench-local-") as tmp, \
            open_db(f"{tmp}/db", shards=args.shards) as local_db:
        local = _measure(local_db, vectors, queries, args)
        rows = [("in-process", "-", f"{local['ingest']:,.0f}", f"{local['p50']:.2f}",
                 f"{local['p95']:.2f}", "-", "-", "-", f"{local['qps']:,.0f}", "1.00")]
        for nodes in [int(n) for n in args.nodes.split(",")]:
            got = _cluster_run(nodes, vectors, queries, args, local_db.membrane("bench"))
            rows.append(("ray", str(nodes), f"{got['ingest']:,.0f}", f"{got['p50']:.2f}",
                         f"{got['p95']:.2f}", f"{got['overhead']:+.2f}",
                         f"{got['compiled']:+.2f}", f"{got['ping']:.2f}",
                         f"{got['qps']:,.0f}", f"{got['qps'] / local['qps']:.2f}"))
    print(_table(rows, ("backend", "nodes", "ingest vec/s", "search p50 ms", "p95 ms",
                        "overhead p50 ms (paired)", "compiled graph overhead", "ping all ms",
                        "QPS", "QPS vs local")))
    per_shard_ms = local["p50"] / args.shards  # the shards of one query run one after another
    print(f"per-shard search cost (in-process p50 / shards, {args.rows // args.shards} rows per "
          f"shard): {per_shard_ms:.3f} ms")
