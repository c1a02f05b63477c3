"""A real Dask cluster on loopback, shared by the cluster tests: a scheduler and two
single-threaded worker processes, each under a nanny that restarts it when it is killed."""

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def dask_cluster():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           scheduler_port=0, dashboard_address=":0")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def monitor(dask_cluster):
    """A second client that watches the cluster while a run uses it."""
    client = Client(dask_cluster.scheduler_address, set_as_default=False)
    client.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test is back
    try:
        yield client
    finally:
        client.close()
