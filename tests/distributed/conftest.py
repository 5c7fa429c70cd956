"""One simulated Ray cluster per test session for tests/distributed (`pytest -m ray`).

A head and two worker nodes, each a host for PomaiDB (resource `pomaidb_host:<name>`),
in this machine's processes: about 10 s to start, so every Ray test shares it.
"""

from __future__ import annotations

import os
import uuid

import pytest

HOSTS = ["head", "w1", "w2"]


def pytest_collection_modifyitems(items):
    """The Ray tests run last, so the cluster's processes live only while they run."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)  # stable


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the Ray backend needs the `ray` extra")
    from ray.cluster_utils import Cluster

    # Ray's workers start in the driver's working directory and put it first on sys.path:
    # from the repository root they would import the source tree (no built extension)
    # instead of the installed package.
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray-workers"))
    simulated = Cluster(initialize_head=True, head_node_args=_node(HOSTS[0]))
    try:
        for host in HOSTS[1:]:
            simulated.add_node(**_node(host))
        ray.init(address=simulated.address, log_to_driver=False)
        yield simulated
    finally:
        ray.shutdown()
        simulated.shutdown()
        os.chdir(cwd)


def _node(host: str) -> dict:
    return {"num_cpus": 1, "resources": {f"pomaidb_host:{host}": 1000}}


@pytest.fixture
def ray_path(cluster, tmp_path):
    """A fresh database path; its shard actors are stopped after the test."""
    import pomaidb_core as pdb

    path = tmp_path / f"db-{uuid.uuid4().hex[:8]}"
    yield path
    try:
        pdb.open(path, backend="ray", ray_timeout_seconds=5).shutdown()
    except pdb.PomaiError:
        pass  # never created, or a shard's node was removed on purpose
