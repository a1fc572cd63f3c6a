"""A real ``airflow api-server`` for the plugin tests: 127.0.0.1 only, simple auth manager with login on.

Users are ``operator`` (admin) and ``watcher`` (viewer) with generated passwords written to the simple auth
manager's passwords file before the server starts, so the tests know them; all-admins mode is off. The server
runs in its own process group and is stopped by that group's id.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localdev.airflow_env import REPO

USERS = {"operator": "admin", "watcher": "viewer"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    url: str
    passwords: dict[str, str]
    log_path: Path
    process: subprocess.Popen

    def token(self, username: str = "operator") -> str:
        """A JWT from ``POST /auth/token`` with the user's password, as any API client gets one."""
        body = json.dumps({"username": username, "password": self.passwords[username]}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def server_env(home: Path, port: int, passwords_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}/",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    }


def start_api_server(home: Path, log_dir: Path, timeout: float = 180) -> ApiServer:
    """Start the server (the metadata DB must be migrated) and wait until its health endpoint answers."""
    home.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps(passwords) + "\n")
    log_path = log_dir / "api-server.log"
    log = open(log_path, "w")  # noqa: SIM115 - the child writes to it for its whole life
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=server_env(home, port, passwords_file),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = ApiServer(f"http://127.0.0.1:{port}", passwords, log_path, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"airflow api-server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/v2/monitor/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"airflow api-server did not answer within {timeout}s:\n{server.log_tail()}")
        time.sleep(1)
