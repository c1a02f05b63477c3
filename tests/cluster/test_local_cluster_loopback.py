"""A local Dask cluster started by cartwin listens on the loopback address only: its scheduler,
workers and any HTTP page (dashboard, identity, logs) are unreachable from the network."""

import ipaddress
import os

import psutil

from cartwin.simulate.distributed import DaskExecutor


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    out = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            out.append((c.laddr.ip, c.laddr.port))
    return out


def test_local_cluster_listens_on_loopback_only():
    me = psutil.Process(os.getpid())
    before = {(ip, port) for ip, port in _listening({me.pid})}
    with DaskExecutor("local", n_workers=1) as ex:
        ex.start()
        ex.client.wait_for_workers(1, timeout=60)
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        sockets = [s for s in _listening(pids) if s not in before]
    assert sockets, "the cluster opened no listening socket at all (test cannot see them)"
    exposed = [s for s in sockets if not ipaddress.ip_address(s[0]).is_loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"
