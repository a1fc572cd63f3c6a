"""Helpers shared by the local endpoint's tests (ports, clients, debug routes, polling, processes and sockets)."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localdev import processes
from localdev.aws import endpoint as _endpoint
from localdev.aws.clients import local_client
from localdev.aws.endpoint import LocalEndpoint

REGION = "us-east-1"


def worker_port_range() -> tuple[int, int]:
    """This pytest-xdist worker's own slice of the endpoint port range (the whole range without xdist).

    Each worker draws its ports when it starts and binds them minutes later; disjoint slices keep the other
    worker from binding one of them in between.
    """
    start, stop = _endpoint.PORT_RANGE_START, _endpoint.ephemeral_port_start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return start, stop
    width = (stop - start) // count
    index = int(worker[2:]) % count
    return start + index * width, start + (index + 1) * width


def free_port_pair() -> int:
    """A free (companion, moto) port pair from this worker's slice (see :func:`worker_port_range`)."""
    return _endpoint.free_port_pair(*worker_port_range())


def make_client(url: str, service: str, **config: Any) -> Any:
    """A client of the endpoint at ``url`` that retries little, so that a failing call fails the test quickly."""
    return local_client(
        service, url, REGION, **{"retries": {"max_attempts": 2, "mode": "standard"}, **config}
    )


def companion_get(endpoint: LocalEndpoint, path: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        endpoint.url + path, method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def firehose_stats(endpoint: LocalEndpoint, name: str) -> dict:
    status, body = companion_get(endpoint, f"/_companion/firehose/{name}")
    assert status == 200, body
    return body


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_active(firehose: Any, name: str, timeout: float = 10) -> None:
    wait_for(
        lambda: (
            firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
                "DeliveryStreamStatus"
            ]
            == "ACTIVE"
        ),
        timeout,
        f"{name} to become ACTIVE",
    )


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


# -- processes and their sockets (Linux /proc) ----------------------------------------------------------------


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _listen_table(path: Path, family: int) -> dict[int, tuple[str, int]]:
    """inode → (address, port) of the LISTEN sockets in one /proc/net/tcp or tcp6 table."""
    rows: dict[int, tuple[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], int(fields[9])
        if state != "0A":  # TCP_LISTEN
            continue
        address, port = local.split(":")
        raw = bytes.fromhex(address)
        # The kernel prints each 32-bit word in host (little-endian) byte order.
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        rows[inode] = (socket.inet_ntop(family, raw), int(port, 16))
    return rows


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """The TCP sockets process ``pid`` listens on, as (address, port), from its fds and /proc/net/tcp{,6}."""
    inodes = _socket_inodes(pid)
    table = {
        **_listen_table(Path(f"/proc/{pid}/net/tcp"), socket.AF_INET),
        **_listen_table(Path(f"/proc/{pid}/net/tcp6"), socket.AF_INET6),
    }
    return sorted(table[inode] for inode in inodes if inode in table)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback (``::ffff:127.0.0.1``, how a dual-stack JVM shows it)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (a job runner and the JVM it started)."""
    return sorted(processes.group_members(pgid))


def local_aws_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m localdev.aws <args>`` (what ``make up`` / ``make down`` run), output captured."""
    from localdev.aws.endpoint import PROJECT_ROOT

    return subprocess.run(
        [sys.executable, "-m", "localdev.aws", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def flink_rest(pid: int, path: str) -> Any:
    """GET ``path`` from the REST endpoint of the Flink mini-cluster in JVM ``pid`` (found among its sockets)."""
    for _, port in listening_sockets(pid):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/overview", timeout=5) as resp:
                json.loads(resp.read())
        except (OSError, ValueError, http.client.HTTPException):
            continue  # not the REST endpoint (py4j, blob server, RPC)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return json.loads(resp.read())
    raise AssertionError(f"no Flink REST endpoint among the sockets of pid {pid}: {listening_sockets(pid)}")
