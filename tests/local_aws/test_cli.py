"""`python -m localdev.aws up|status|restart-companion|down`: real processes, PID files, ports."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from localdev.aws.endpoint import EndpointError, LocalEndpoint
from tests.local_aws.support import alive, free_port_pair, local_aws_cli, make_client

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return local_aws_cli(*args, timeout=timeout)


def test_up_status_restart_down(tmp_path):
    port = free_port_pair()
    state = tmp_path / "aws"
    up = cli("up", "--port", str(port), "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"http://127.0.0.1:{port}"
    try:
        moto_pid = int((state / "moto.pid").read_text())
        companion_pid = int((state / "companion.pid").read_text())
        assert alive(moto_pid) and alive(companion_pid)
        info = json.loads((state / "endpoint.json").read_text())
        assert info["moto_port"] == port + 1 and info["companion_pid"] == companion_pid

        status = cli("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["companion"]["healthy"] is True

        again = cli("up", "--port", str(port), "--state-dir", str(state))  # idempotent
        assert again.returncode == 0
        assert int((state / "companion.pid").read_text()) == companion_pid
        elsewhere = cli("up", "--port", str(free_port_pair()), "--state-dir", str(state))
        assert elsewhere.returncode == 1 and f"already run on port {port}" in elsewhere.stderr
        assert int((state / "moto.pid").read_text()) == moto_pid

        s3 = make_client(f"http://127.0.0.1:{port}", "s3")
        s3.create_bucket(Bucket="cli-survives")
        restart = cli("restart-companion", "--state-dir", str(state))
        assert restart.returncode == 0, restart.stderr
        new_companion = int((state / "companion.pid").read_text())
        assert new_companion != companion_pid and not alive(companion_pid)
        assert int((state / "moto.pid").read_text()) == moto_pid
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["cli-survives"]  # moto kept its state

        # moto gone: the gateway answers 502 with a message instead of hanging or resetting.
        os.kill(moto_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(moto_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/cli-survives")
        resp = conn.getresponse()
        assert resp.status == 502 and b"unreachable" in resp.read()
        conn.close()
    finally:
        down = cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not (state / "companion.pid").exists() and not (state / "moto.pid").exists()
    assert not alive(new_companion)


def test_busy_port_fails_clearly(tmp_path):
    port = free_port_pair()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = cli("up", "--port", str(port), "--state-dir", str(tmp_path / "aws"), "--timeout", "20")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    # Nothing was left running: moto (started first, on port + 1) was stopped again.
    assert not (tmp_path / "aws" / "moto.pid").exists()


def test_two_endpoints_do_not_touch_each_other(tmp_path):
    first = LocalEndpoint(free_port_pair(), tmp_path / "one").start()
    try:
        second = LocalEndpoint(first.port, tmp_path / "two", moto_port=free_port_pair())
        with pytest.raises(EndpointError, match="another local_aws companion"):
            second.start(timeout=20)
        assert second.moto_pid is None  # the moto it had started was stopped again
        assert first.companion_health()["ready"] is True
    finally:
        first.stop()
    assert first.companion_pid is None and first.moto_pid is None
