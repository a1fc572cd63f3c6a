"""`make airflow` (``python -m localdev.stack up --foreground``) ended by SIGTERM or by SIGKILL, then `make down`:
no process of the stack and no listening port may be left (issue 12: SIGTERM used to orphan all four Airflow
components, holding port 8080).

Each case runs the real launcher on free ports with a temporary state directory. Every process it starts carries a
marker in its environment; the processes are also collected as the launcher's descendants while it runs (the API
server rewrites its environment block when it retitles itself), so "nothing left" is checked against both.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from localdev import processes
from tests.local_aws.support import free_port_pair

REPO = Path(__file__).resolve().parents[2]
MARKER = "CLICKSTREAM_STACK_TEST_MARKER"
READY_LINE = "Running in the foreground"
# What the stack's processes' command lines show of each part (the Airflow components, endpoint, PostgreSQL).
STACK_PARTS = ("api_server", "scheduler", "dag-processor", "triggerer", "localdev.aws.gateway", "postgres")
# The whole stack: endpoint, PostgreSQL, Airflow's API server; the SIGKILL case also starts the Flink JVM.
pytestmark = [pytest.mark.integration, pytest.mark.jvm, pytest.mark.slow]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports() -> tuple[int, int]:
    """(AWS port with the next one free for moto, Airflow API port)."""
    while True:
        aws, api = free_port_pair(), free_port_pair()
        if api not in (aws, aws + 1):
            return aws, api


@pytest.fixture(scope="module")
def state_dir():
    """Shared by both cases, so the second reuses the migrated metadata DB (each case still starts everything).

    Not under pytest's tmp_path root: every pytest start resets that root to mode 0700, which would cut off
    the PostgreSQL server (run as ``nobody`` when the tests run as root) from its data directory.
    """
    state = Path(tempfile.mkdtemp(prefix="clickstream-stack-test-"))
    yield state
    subprocess.run([sys.executable, "-m", "localdev.stack", "down", "--state-dir", str(state)], cwd=REPO)
    shutil.rmtree(state, ignore_errors=True)


class Launcher:
    def __init__(self, state_dir: Path, case: str, pipeline: bool):
        self.state_dir = state_dir
        self.aws_port, self.api_port = _free_ports()
        self.marker = uuid.uuid4().hex
        self.log = state_dir / f"launcher-{case}.log"
        argv = [
            sys.executable,
            "-m",
            "localdev.stack",
            "up",
            "--foreground",
            "--state-dir",
            str(state_dir),
            "--aws-port",
            str(self.aws_port),
            "--api-port",
            str(self.api_port),
            "--timeout",
            "300",
        ]
        if not pipeline:
            argv.append("--no-pipeline")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env={**os.environ, MARKER: self.marker},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def ports(self) -> list[int]:
        return [self.aws_port, self.aws_port + 1, self.api_port]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.output():
            assert self.proc.poll() is None, (
                f"the launcher exited with {self.proc.returncode}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"not ready within {timeout:.0f}s:\n{self.output()}"
            time.sleep(1)

    def wait_running(self, words: tuple[str, ...], timeout: float) -> list[tuple[int, int]]:
        """Wait until each of ``words`` is in the command line of one of the stack's processes; the snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            family = self.snapshot()
            running = _commands(family)
            if all(word in running for word in words):
                return family
            assert self.proc.poll() is None, (
                f"the launcher exited with {self.proc.returncode}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, (
                f"not all of {words} running within {timeout:.0f}s:\n{running}\n{self.output()}"
            )
            time.sleep(1)

    def marked(self) -> list[tuple[int, int]]:
        found = []
        for pid in processes.all_pids():
            if (processes.environ(pid) or {}).get(MARKER) == self.marker and pid != self.proc.pid:
                started = processes.start_time(pid)
                if started is not None and processes.alive(pid):
                    found.append((pid, started))
        return found

    def snapshot(self) -> list[tuple[int, int]]:
        """Every process of this stack now: the launcher's descendants, the marked ones and theirs."""
        family = set(processes.descendants(self.proc.pid)) | set(self.marked())
        for pid, _ in list(family):
            family |= set(processes.descendants(pid))
        return sorted(family)

    def left_over(self, family: list[tuple[int, int]]) -> list[str]:
        alive = {pid for pid, started in family if processes.same_process(pid, started)}
        alive |= {pid for pid, _ in self.marked()}
        described = [f"{pid}: {' '.join(processes.cmdline(pid) or ())[:120]}" for pid in sorted(alive)]
        described += [f"port {port} still in use" for port in self.ports if not _port_free(port)]
        socket_file = self.state_dir / "postgres" / "run" / ".s.PGSQL.5432"
        if socket_file.exists():
            described.append(f"{socket_file} still there")
        return described


def _down(state_dir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "localdev.stack", "down", "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _commands(family: list[tuple[int, int]]) -> str:
    return "\n".join(" ".join(processes.cmdline(pid) or ())[:100] for pid, _ in family)


def test_sigterm_to_the_foreground_launcher_stops_the_whole_stack(state_dir):
    launcher = Launcher(state_dir, "sigterm", pipeline=False)
    try:
        launcher.wait_ready(240)
        family = launcher.snapshot()
        running = _commands(family)
        for word in STACK_PARTS:
            assert word in running, f"{word} not among the stack's processes:\n{running}"

        launcher.proc.send_signal(signal.SIGTERM)
        assert launcher.proc.wait(timeout=120) == 0, launcher.output()
        assert "SIGTERM: stopping the stack" in launcher.output()
        assert launcher.left_over(family) == [], (
            "the launcher's own shutdown left these:\n" + launcher.output()
        )

        assert "nothing was running" in _down(state_dir)
        assert launcher.left_over(family) == []
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()


def test_after_sigkill_of_the_launcher_make_down_stops_everything_it_recorded(state_dir):
    """With the pipeline (the setup DAG, then the lifecycle DAG starts the Flink application's JVM), so down also
    ends the Flink job. The launcher is killed as soon as every part `make down` must stop runs (the JVM is the
    last to appear), not after the lifecycle DAG has seen the application RUNNING: what down has to clean up is
    the same, and the wait would only add the DAG's sensor interval to the suite."""
    launcher = Launcher(state_dir, "sigkill", pipeline=True)
    try:
        family = launcher.wait_running(STACK_PARTS + ("java",), 300)
        running = _commands(family)
        assert "java" in running, f"no Flink JVM among the stack's processes:\n{running}"

        launcher.proc.send_signal(signal.SIGKILL)
        launcher.proc.wait(timeout=10)
        time.sleep(2)
        survivors = [pid for pid, started in family if processes.same_process(pid, started)]
        assert len(survivors) >= 5, "kill -9 of the launcher should leave the detached stack running"

        said = _down(state_dir)
        for part in ("api-server", "scheduler", "dag-processor", "triggerer", "AWS endpoint", "PostgreSQL"):
            assert part in said, said
        assert launcher.left_over(family) == [], said
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()
