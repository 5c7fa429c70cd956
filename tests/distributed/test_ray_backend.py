"""The Ray backend against the engine's oracles, on the session's simulated cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from model_walk import random_walk

import pomaidb_core as pdb

ray = pytest.importorskip("ray", reason="the Ray backend needs the `ray` extra")
pytestmark = pytest.mark.ray


def _restart_from_disk(db, options):
    """Stop every shard actor, then start them again: each replays its WAL."""
    db.shutdown()
    return pdb.open(db.path, backend="ray", **options)


@pytest.mark.parametrize(("seed", "metric"), [(0, "cosine"), (1, "l2")])
def test_random_walk_on_ray_agrees_with_oracle(ray_path, seed, metric):
    random_walk(lambda **options: pdb.open(ray_path, backend="ray", **options), seed, 3, metric,
                steps=80, reopen=_restart_from_disk if seed % 2 else None)


def test_shards_are_spread_over_the_hosts_and_pinned(ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    nodes = {node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}
    hosts = set()
    for index in range(3):
        actor = ray.get_actor(f"shard-{index}", namespace=f"pomaidb:{ray_path}")
        node_id = ray.get(actor.node_id.remote())
        hosts |= {k for k in nodes[node_id] if k.startswith("pomaidb_host:")}
    assert hosts == {"pomaidb_host:head", "pomaidb_host:w1", "pomaidb_host:w2"}
    db.close()


def test_errors_are_the_engines_and_a_rejected_batch_changes_nothing(ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    m = db.create_membrane("docs", dim=4)
    with pytest.raises(pdb.AlreadyExistsError):
        db.create_membrane("docs", dim=4)
    with pytest.raises(pdb.InvalidArgumentError):
        m.put_batch([1, 2, 3], np.full((3, 4), np.nan, dtype=np.float32))
    with pytest.raises(pdb.NotFoundError):
        db.membrane("nope")
    assert m.count() == 0
    db.close()
    with pytest.raises(pdb.ClosedError):
        m.count()


def test_async_api_awaits_the_shards(ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    m = db.create_membrane("docs", dim=4, metric="ip")
    vectors = np.eye(4, dtype=np.float32)

    async def run():
        await m.aput_batch([1, 2, 3, 4], vectors, [{"i": i} for i in range(4)])
        hits = await m.asearch(vectors[2], k=1)
        return hits, await m.acount(), await m.aget(4), await m.adelete_batch([1, 9])

    hits, count, record, deleted = asyncio.run(run())
    assert [h.id for h in hits] == [3] and count == 4 and deleted == 1
    np.testing.assert_array_equal(record.vector, vectors[3])
    db.close()


def test_a_second_client_process_attaches_and_shares_the_data(cluster, ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    m = db.create_membrane("docs", dim=4)
    m.put_batch(list(range(20)), np.random.default_rng(0).random((20, 4), dtype=np.float32))
    script = textwrap.dedent(f"""
        import ray, numpy as np, pomaidb_core as pdb
        ray.init(address={cluster.address!r}, log_to_driver=False)
        db = pdb.open({str(ray_path)!r}, backend="ray")
        m = db.membrane("docs")
        print(db.shard_count, m.count(), m.search(np.ones(4), 1)[0].id)
        m.put(100, [1, 2, 3, 4], {{"from": "second"}})
        db.close()
    """)
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    shards, count, best = out.stdout.split()
    assert (int(shards), int(count)) == (3, 20)
    assert int(best) == m.search(np.ones(4), 1)[0].id
    assert m.get(100).metadata == {"from": "second"} and m.count() == 21
    db.close()


def test_membranes_are_created_and_dropped_on_every_shard(ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    docs = db.create_membrane("docs", dim=4)
    db.create_membrane("notes", dim=2, metric="l2")
    docs.put_batch(list(range(30)), np.ones((30, 4), dtype=np.float32))
    assert db.membranes() == ["docs", "notes"]
    db.drop_membrane("docs")
    assert db.membranes() == ["notes"]
    with pytest.raises(pdb.NotFoundError):
        db.drop_membrane("docs")
    again = db.create_membrane("docs", dim=4)
    assert again.meta.membrane_id != docs.meta.membrane_id and again.count() == 0
    stats = db.stats()
    assert stats["shards"] == 3 and stats["membranes"]["docs"]["records"] == 0
    db.close()


def test_a_catalog_change_cut_short_is_repaired_when_a_client_attaches(ray_path):
    db = pdb.open(ray_path, backend="ray", shards=3)
    db.create_membrane("docs", dim=4)
    db.create_membrane("old", dim=4)
    db._ask(1, "drop_membrane", "docs")  # as if the client died inside create or drop
    db._ask(0, "drop_membrane", "old")  # shard 0 holds the catalog: "old" is gone
    db.close()
    db = pdb.open(ray_path, backend="ray")
    m = db.membrane("docs")
    m.put_batch(list(range(30)), np.ones((30, 4), dtype=np.float32))  # reaches every shard
    assert m.count() == 30
    assert all(shard["records"] > 0 for shard in db.stats()["membranes"]["docs"]["per_shard"])
    assert db.membranes() == ["docs"]
    assert all(set(db._ask(shard, "catalog")) == {"docs"} for shard in range(3))
    db.close()


def test_freeze_after_cross_shard_batches_saves_them(ray_path):
    """A shard's committed part no longer holds its freezes once its own COMMIT is written
    (the client votes on the batch but logs nothing: the shard confirms for it)."""
    db = pdb.open(ray_path, backend="ray", shards=3)
    m = db.create_membrane("docs", dim=4)
    vectors = np.random.default_rng(5).standard_normal((60, 4)).astype(np.float32)
    m.put_batch(range(60), vectors)
    db.freeze()  # would wait for good if a shard waited for the client's confirmation
    stats = db.stats()["membranes"]["docs"]
    assert stats["segment_rows"] == 60 and stats["memtable_records"] == 0
    db.shutdown()
    db = pdb.open(ray_path, backend="ray")
    assert db.membrane("docs").count() == 60
    np.testing.assert_array_equal(db.membrane("docs").get(42).vector, vectors[42])
    db.shutdown()
