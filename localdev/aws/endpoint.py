"""Start, stop and inspect the local endpoint's two background processes: moto and the companion.

State lives in one directory (default ``.local/aws``): ``moto.pid`` / ``companion.pid`` (plain PIDs),
``endpoint.json`` (ports and PIDs), ``moto.log`` / ``companion.log`` / ``companion.out`` and the companion's
persistent service state under ``services/``. A PID is only ever signalled after checking that the process
behind it is still the one this state directory started (its command line names the same module and port),
so a recycled PID is never killed. ``stop`` also kills the Flink job processes a killed companion left behind
(recorded in their job directories under ``services/kinesisanalytics/``, checked the same way).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.processes import cmdline, tail

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 4566
DEFAULT_STATE_DIR = Path(".local/aws")
HOST = "127.0.0.1"


class EndpointError(RuntimeError):
    """The endpoint could not be started or stopped; the message says why and where the logs are."""


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


#: Lowest port drawn by :func:`free_port_pair`.
PORT_RANGE_START = 20000


def ephemeral_port_start() -> int:
    """The first port the kernel hands out to outgoing connections (32768 unless configured otherwise).

    A listening port drawn at or above it can be taken by any client socket between the draw and the bind.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, PORT_RANGE_START + 1000)


def free_port_pair(start: int | None = None, stop: int | None = None) -> int:
    """A port p such that p and p + 1 are both free on 127.0.0.1 (the companion and moto), for a throwaway endpoint.

    Drawn at random from even ports in [start, stop) — by default 20000 up to the kernel's ephemeral range, so no
    outgoing connection can take it before the endpoint binds it, and endpoints started side by side by parallel
    test or benchmark runs rarely collide.
    """
    start = PORT_RANGE_START if start is None else start
    stop = ephemeral_port_start() if stop is None else stop
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(start + start % 2, stop - 1, 2)
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise EndpointError(f"no free pair of ports found on 127.0.0.1 (tried 200 in {start}-{stop})")


def _http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class _Proc:
    """One managed process: how to recognise it, start it and find its PID file."""

    name: str
    port: int
    argv: list[str]
    marker: str
    pid_file: Path
    log_file: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_ours(self, pid: int | None) -> bool:
        if pid is None:
            return False
        cmd = cmdline(pid)
        return bool(cmd) and self.marker in cmd and str(self.port) in cmd

    def running_pid(self) -> int | None:
        pid = self.recorded_pid()
        return pid if self.is_ours(pid) else None


class LocalEndpoint:
    """The local AWS endpoint; ``with LocalEndpoint(port, state_dir) as ep:`` then ``endpoint_url=ep.url``.

    ``start`` is idempotent (processes already running from this state directory are kept); ``stop`` ends
    exactly the processes this state directory records; ``restart_companion`` replaces only the companion,
    so moto's in-memory AWS state survives while Firehose resumes from its checkpoints.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        state_dir: str | os.PathLike = DEFAULT_STATE_DIR,
        moto_port: int | None = None,
    ):
        self.port = port
        self.moto_port = moto_port if moto_port is not None else port + 1
        self.state_dir = Path(state_dir).resolve()
        self.moto = _Proc(
            "moto",
            self.moto_port,
            [sys.executable, "-m", "localdev.aws.moto_server", "-H", HOST, "-p", str(self.moto_port)],
            "localdev.aws.moto_server",
            self.state_dir / "moto.pid",
            self.state_dir / "moto.log",
        )
        self.companion = _Proc(
            "companion",
            self.port,
            [
                sys.executable,
                "-m",
                "localdev.aws.gateway",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--moto-port",
                str(self.moto_port),
                "--state-dir",
                str(self.state_dir),
            ],
            "localdev.aws.gateway",
            self.state_dir / "companion.pid",
            self.state_dir / "companion.out",
        )

    @classmethod
    def from_state_dir(cls, state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> LocalEndpoint:
        """The endpoint recorded in ``state_dir/endpoint.json`` (what ``up`` started there)."""
        path = Path(state_dir) / "endpoint.json"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise EndpointError(f"no local endpoint was started from {Path(state_dir).resolve()}") from None
        return cls(info["port"], state_dir, info["moto_port"])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def moto_url(self) -> str:
        return f"http://{HOST}:{self.moto_port}"

    @property
    def companion_pid(self) -> int | None:
        return self.companion.running_pid()

    @property
    def moto_pid(self) -> int | None:
        return self.moto.running_pid()

    # -- health --------------------------------------------------------------------------------------------
    def moto_healthy(self) -> bool:
        return _http_get(self.moto_port, "/", timeout=2.0) is not None

    def companion_health(self) -> dict | None:
        answer = _http_get(self.port, "/_companion/health")
        if answer is None or answer[0] != 200:
            return None
        try:
            return json.loads(answer[1])
        except ValueError:
            return None

    def status(self) -> dict[str, Any]:
        health = self.companion_health()
        return {
            "url": self.url,
            "state_dir": str(self.state_dir),
            "moto": {"port": self.moto_port, "pid": self.moto_pid, "healthy": self.moto_healthy()},
            "companion": {
                "port": self.port,
                "pid": self.companion_pid,
                "healthy": bool(health and health.get("ready")),
                "services": (health or {}).get("services"),
            },
        }

    # -- start / stop ------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> LocalEndpoint:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_other_ports()
        started_moto = False
        if self.moto.running_pid() is None:
            self._require_free(self.moto)
            # moto starts empty, so whatever the companion holds refers to resources that no longer exist:
            # a companion still running goes too, and so does its persisted state.
            self._terminate(self.companion, 30.0)
            self.kill_orphaned_jobs()
            shutil.rmtree(self.state_dir / "services", ignore_errors=True)
            self._spawn(self.moto)
            started_moto = True
        try:
            self._wait(lambda: self.moto_healthy(), self.moto, timeout)
            if self.companion.running_pid() is None:
                self._require_free(self.companion)
                self._spawn(self.companion)
            self._wait(lambda: bool((self.companion_health() or {}).get("ready")), self.companion, timeout)
        except EndpointError:
            self._terminate(self.companion, 5.0)
            if started_moto:
                self._terminate(self.moto, 5.0)
            raise
        self._write_info()
        return self

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Stop the companion and moto; returns the PIDs of Flink job processes it had to kill (see below)."""
        # Companion first: on SIGTERM it flushes Firehose buffers into moto's S3 and stops its Flink jobs.
        self._terminate(self.companion, timeout)
        # Jobs a companion killed with kill -9 (or after the timeout above) left running: nothing resumes them.
        killed = self.kill_orphaned_jobs()
        self._terminate(self.moto, timeout)
        return killed

    def kill_orphaned_jobs(self) -> list[int]:
        """Kill the Flink job processes recorded under this state directory that still run; their PIDs.

        Call only with the companion gone: a running companion owns its jobs. Each PID is checked against the
        job directory that recorded it before it is signalled (see :func:`localdev.aws.flink.jobs.kill_orphaned_jobs`).
        """
        from localdev.aws.flink.jobs import kill_orphaned_jobs

        return kill_orphaned_jobs(self.state_dir)

    def restart_companion(self, timeout: float = 60.0) -> None:
        self._terminate(self.companion, timeout)
        if self.moto.running_pid() is None:
            raise EndpointError(f"moto is not running for {self.state_dir}; use start() (or `up`)")
        self._require_free(self.companion)
        self._spawn(self.companion)
        self._wait(lambda: bool((self.companion_health() or {}).get("ready")), self.companion, timeout)
        self._write_info()

    def kill_companion(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Simulate a crash: send ``sig`` (default SIGKILL) to the companion and wait until it is gone."""
        pid = self.companion.running_pid()
        if pid is None:
            raise EndpointError("the companion is not running")
        os.kill(pid, sig)
        self._wait_gone(self.companion, pid, timeout)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------------
    def _refuse_other_ports(self) -> None:
        """One endpoint per state directory: never orphan a running pair by starting another on new ports."""
        try:
            recorded = LocalEndpoint.from_state_dir(self.state_dir)
        except (EndpointError, ValueError, KeyError):
            return
        if (recorded.port, recorded.moto_port) == (self.port, self.moto_port):
            return
        running = [p.name for p in (recorded.moto, recorded.companion) if p.running_pid() is not None]
        if running:
            raise EndpointError(
                f"{' and '.join(running)} from {self.state_dir} already run on port {recorded.port} "
                f"(moto {recorded.moto_port}); stop them (`down`) before starting on port {self.port}"
            )

    def _require_free(self, proc: _Proc) -> None:
        if port_is_free(proc.port):
            return
        other = _http_get(proc.port, "/_companion/health")
        hint = ""
        if other is not None and other[0] == 200:
            hint = " (it is another local_aws companion, started from a different --state-dir)"
        raise EndpointError(
            f"cannot start {proc.name}: port {proc.port} on {HOST} is already in use by another "
            f"process{hint}. "
            f"Stop that process or choose another port with --port (moto uses --port + 1 unless --moto-port)."
        )

    def _spawn(self, proc: _Proc) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(proc.log_file, "ab") as log:
            popen = subprocess.Popen(
                proc.argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        proc.popen = popen
        proc.pid_file.write_text(f"{popen.pid}\n")

    def _wait(self, healthy: Any, proc: _Proc, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy():
                return
            if proc.popen is not None and proc.popen.poll() is not None:
                raise EndpointError(
                    f"{proc.name} exited with status {proc.popen.returncode} while starting; "
                    f"last lines of {proc.log_file}:\n{tail(proc.log_file)}"
                )
            time.sleep(0.1)
        raise EndpointError(
            f"{proc.name} did not become healthy on port {proc.port} within {timeout:.0f}s; "
            f"last lines of {proc.log_file}:\n{tail(proc.log_file)}"
        )

    def _terminate(self, proc: _Proc, timeout: float) -> None:
        pid = proc.running_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                try:
                    self._wait_gone(proc, pid, timeout)
                except EndpointError:
                    os.kill(pid, signal.SIGKILL)
                    self._wait_gone(proc, pid, 10.0)
        if proc.popen is not None:
            proc.popen.poll()
            proc.popen = None
        proc.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _wait_gone(proc: _Proc, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen is not None and proc.popen.pid == pid:
                if proc.popen.poll() is not None:
                    return
            elif cmdline(pid) is None:
                return
            time.sleep(0.05)
        raise EndpointError(f"{proc.name} (pid {pid}) did not exit within {timeout:.0f}s")

    def _write_info(self) -> None:
        info = {
            "url": self.url,
            "port": self.port,
            "moto_port": self.moto_port,
            "moto_pid": self.moto.recorded_pid(),
            "companion_pid": self.companion.recorded_pid(),
        }
        (self.state_dir / "endpoint.json").write_text(json.dumps(info, indent=1) + "\n")
