"""The local Flink job listens on loopback only: every LISTEN socket of its JVM and runner is 127.0.0.1 / ::1.

The companion runs one mini-cluster per application (REST endpoint, RPC, blob server, py4j gateway, ...), on
a machine whose other interfaces may be reachable. :func:`localdev.flink_runner.runtime_config` binds
them to 127.0.0.1; this checks what a real running job actually opened, from ``/proc``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from include.sessions.contract import SessionContract
from localdev import flink_runner as fr
from tests.local_aws.support import flink_rest, is_loopback, listening_sockets, process_group, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.jvm,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def test_the_socket_reader_sees_a_wildcard_listener():
    """The check below can fail: a socket on all interfaces is reported as such."""
    with socket.socket(socket.AF_INET6) as wide, socket.socket() as loop:
        wide.bind(("::", 0))
        wide.listen()
        loop.bind(("127.0.0.1", 0))
        loop.listen()
        found = listening_sockets(os.getpid())
        assert ("::", wide.getsockname()[1]) in found
        assert ("127.0.0.1", loop.getsockname()[1]) in found
    assert not is_loopback("::") and not is_loopback("0.0.0.0")
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("::1") and is_loopback("127.0.0.1")


def test_a_running_flink_job_listens_on_loopback_only(tmp_path: Path):
    handle = fr.start_job(
        tmp_path / "spool",
        tmp_path / "out",
        SessionContract(),
        tmp_path / "checkpoints",
        job_dir=tmp_path / "job",
        checkpoint_interval_ms=1000,
    )
    try:
        status = fr.job_status(handle)
        assert status.state == fr.RUNNING and status.jvm_pid
        fr.spool_events(tmp_path / "spool", [{"event_id": "e1", "user_id": 1}])
        # Everything is up once tasks run and a checkpoint completed (the data path has been exercised too).
        wait_for(
            lambda: list((tmp_path / "checkpoints" / status.job_id).glob("chk-*/_metadata")),
            120,
            "a completed checkpoint",
        )
        group = process_group(handle.pid)
        assert status.jvm_pid in group, (group, status.jvm_pid)  # the runner and its JVM
        sockets = {pid: listening_sockets(pid) for pid in group}
        assert len(sockets[status.jvm_pid]) >= 2, sockets  # at least the REST endpoint and the py4j gateway
        exposed = {pid: [s for s in found if not is_loopback(s[0])] for pid, found in sockets.items()}
        assert not any(exposed.values()), f"listening beyond loopback: {exposed} (all: {sockets})"
        overview = flink_rest(status.jvm_pid, "/jobs/overview")  # the REST endpoint is among them
        assert [job["jid"] for job in overview["jobs"]] == [status.job_id]
    finally:
        fr.stop_job(handle, with_savepoint=False)
    assert not fr.job_status(handle).alive
