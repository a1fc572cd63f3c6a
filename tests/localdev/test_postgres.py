"""The local PostgreSQL cluster (localdev/postgres.py): unix socket only, idempotent start, clean stop, guard."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from localdev import processes
from localdev.postgres import PostgresCluster

pytestmark = pytest.mark.integration  # starts PostgreSQL servers


def _tcp_listening_inodes_of(pid: int) -> list[str]:
    """Inodes of TCP sockets in LISTEN state that ``pid`` holds (from /proc, as `ss -ltnp` reads them)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            held.append(target)
    return held


def _query(cluster: PostgresCluster, sql: str):
    import psycopg2

    conn = psycopg2.connect(dbname=cluster.database, user="postgres", host=str(cluster.socket_dir))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def tmp_dir():
    """Not pytest's tmp_path: every pytest start resets its root to mode 0700, which would cut off a server that
    runs as ``nobody`` (tests run as root) from its data directory."""
    path = Path(tempfile.mkdtemp(prefix="clickstream-pg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(tmp_dir):
    cluster = PostgresCluster(tmp_dir / "postgres")
    yield cluster
    cluster.stop()


def test_start_is_idempotent_serves_the_database_on_a_unix_socket_only_and_stop_ends_it(cluster):
    cluster.start()
    pid = cluster.pid()
    assert pid is not None and cluster.ready()
    assert _query(cluster, "SELECT current_database()") == "airflow"
    assert _query(cluster, "SHOW listen_addresses") == ""
    assert _tcp_listening_inodes_of(pid) == []
    socket = cluster.socket_dir / ".s.PGSQL.5432"
    assert socket.is_socket()
    assert (cluster.socket_dir.stat().st_mode & 0o777) == 0o700

    cluster.start()  # already running: the same server, nothing new
    assert cluster.pid() == pid

    assert cluster.stop() is True
    assert not processes.alive(pid)
    assert cluster.pid() is None and not socket.exists()
    assert cluster.stop() is False

    cluster.start()  # the data survives a restart
    assert _query(cluster, "SELECT count(*) FROM pg_database WHERE datname = 'airflow'") == 1


def test_a_recorded_pid_that_is_not_this_clusters_server_is_never_signalled(cluster):
    """A stale postmaster.pid naming a live stranger (a recycled PID): not ours, not killed, start still works."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster.data_dir.mkdir(parents=True)
        (cluster.data_dir / "postmaster.pid").write_text(f"{stranger.pid}\n{cluster.data_dir}\n")
        assert cluster.pid() is None
        assert cluster.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_the_guard_stops_the_cluster_when_its_owner_is_killed(tmp_dir):
    """What a test session relies on: pytest killed with SIGKILL still leaves no server behind."""
    root = tmp_dir / "postgres"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from localdev.postgres import PostgresCluster\n"
            f"c = PostgresCluster({str(root)!r}).start()\n"
            "c.start_guard()\n"
            "print(c.pid(), flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        pid = int(owner.stdout.readline())
        assert PostgresCluster(root).pid() == pid
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 30
        while processes.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes.alive(pid), "the guard did not stop the cluster of a killed owner"
        assert PostgresCluster(root).pid() is None
    finally:
        if owner.poll() is None:
            owner.kill()
        PostgresCluster(root).stop()
