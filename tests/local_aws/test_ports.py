"""Endpoint ports are drawn where no outgoing connection and no other xdist worker can take them first."""

from __future__ import annotations

from pathlib import Path

from localdev.aws import endpoint
from tests.local_aws import support


def test_ports_are_drawn_below_the_kernels_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert endpoint.ephemeral_port_start() == max(low, endpoint.PORT_RANGE_START + 1000)
    for _ in range(50):
        port = endpoint.free_port_pair()
        assert port % 2 == 0 and endpoint.PORT_RANGE_START <= port and port + 1 < low


def test_xdist_workers_draw_from_disjoint_slices(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        start, stop = support.worker_port_range()
        slices.append((start, stop))
        for _ in range(20):
            port = support.free_port_pair()
            assert start <= port and port + 1 < stop
    (a0, a1), (b0, b1) = slices
    assert a0 == endpoint.PORT_RANGE_START and a1 <= b0 and b1 <= endpoint.ephemeral_port_start()
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert support.worker_port_range() == (endpoint.PORT_RANGE_START, endpoint.ephemeral_port_start())
