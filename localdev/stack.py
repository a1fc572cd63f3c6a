"""``make up`` / ``make down`` / ``make status`` / ``make airflow``: the whole local stack, owned by recorded PIDs.

The stack is the local AWS endpoint (moto + companion, which runs the Flink job processes), PostgreSQL (Airflow's
metadata DB, unix socket only) and Airflow's four components (API server on 127.0.0.1, scheduler with the
LocalExecutor, DAG processor, triggerer; no log server anywhere: ``--skip-serve-logs``, the API server reads
the task log files directly). Everything runs detached, each Airflow component as the leader of a process group
of its own, and is recorded under one state directory (default ``.local/``):

* ``aws/``: the endpoint's PID files and logs (:class:`localdev.aws.LocalEndpoint`);
* ``postgres/``: the cluster (:class:`localdev.postgres.PostgresCluster`; its PID in ``data/postmaster.pid``);
* ``airflow/``: ``AIRFLOW_HOME``, with ``components/<name>.pid`` / ``<name>.log`` and the login's password file;
* ``stack.json``: the ports, so ``down`` and ``status`` need no options.

``up`` starts what is not running, runs ``clickstream_setup``, starts the Flink application
(``clickstream_flink_lifecycle`` with ``action=start``), unpauses the producer, compaction, reconciliation and
watchdog DAGs, and returns once all of it is healthy (or names what did not come up). ``up --foreground``
(``make airflow``) then stays attached and stops the stack on Ctrl-C, SIGTERM or SIGHUP. ``down`` stops
whatever ``up`` recorded, however the launcher ended (even kill -9): each PID is signalled only after checking
that its command line and environment are still the ones started here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localdev import airflow_env, processes
from localdev.postgres import PostgresCluster, PostgresError

REPO = airflow_env.REPO
DEFAULT_STATE_DIR = REPO / ".local"
DEFAULT_AWS_PORT = airflow_env.DEFAULT_PORT
DEFAULT_API_PORT = 8080
HOST = "127.0.0.1"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SETUP_DAG = "clickstream_setup"
LIFECYCLE_DAG = "clickstream_flink_lifecycle"
#: Unpaused by ``up`` so data flows, compacts and reconciles live; a DAG whose file does not exist is skipped.
LIVE_DAGS = (
    "clickstream_producer",
    "clickstream_compaction",
    "clickstream_reconciliation",
    "clickstream_flink_watchdog",
)
#: Settings for watching the pipeline live (AWS keeps its defaults: 60 s buffers and checkpoints).
LIVE_SETTINGS = {
    "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS": "10",
    "CLICKSTREAM_FLINK_CHECKPOINT_MS": "10000",
    "CLICKSTREAM_FLINK_ROLLOVER": "10 s",
}


class StackError(RuntimeError):
    """Something did not come up (or down); the message names it and where its log is."""


class _Stopped(BaseException):
    """A signal asked the foreground launcher to stop (BaseException: no ``except Exception`` swallows it)."""


class Stack:
    def __init__(
        self,
        state_dir: str | os.PathLike = DEFAULT_STATE_DIR,
        aws_port: int | None = None,
        api_port: int | None = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        recorded = self._recorded()
        self.aws_port = aws_port or recorded.get("aws_port") or DEFAULT_AWS_PORT
        self.api_port = api_port or recorded.get("api_port") or DEFAULT_API_PORT
        self.home = self.state_dir / "airflow"
        self.components_dir = self.home / "components"
        self.postgres = PostgresCluster(self.state_dir / "postgres")
        self._popens: dict[str, subprocess.Popen] = {}

    # -- configuration -----------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process of this stack (and of ``python -m localdev.stack airflow``)."""
        extra = {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__WORKERS": "1",
            **airflow_env.login_env(self.home),
            **{key: os.environ.get(key, value) for key, value in LIVE_SETTINGS.items()},
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }
        return airflow_env.local_env(
            home=self.home, port=self.aws_port, extra=extra, postgres_dir=self.postgres.root
        )

    def _recorded(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return {}

    def _record(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "stack.json").write_text(
            json.dumps({"aws_port": self.aws_port, "api_port": self.api_port}, indent=1) + "\n"
        )

    def _endpoint(self):
        from localdev.aws import LocalEndpoint

        return LocalEndpoint(port=self.aws_port, state_dir=self.state_dir / "aws")

    # -- components --------------------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.components_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.components_dir / f"{name}.log"

    def _argv(self, name: str) -> list[str]:
        args = {
            "api-server": ["api-server", "--host", HOST, "--port", str(self.api_port)],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }[name]
        return [sys.executable, "-m", "airflow", *args]

    def component_pid(self, name: str) -> int | None:
        """The recorded PID of ``name`` when that process still is this stack's ``name`` (else None)."""
        try:
            pid = int(self._pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid, name) else None

    def _is_ours(self, pid: int, name: str) -> bool:
        # The API server retitles itself "airflow api_server -- host:127.0.0.1 port:8080" (which also overwrites
        # its environment block): its port identifies it then. The others keep "python -m airflow <name> ...".
        home = {"AIRFLOW_HOME": str(self.home)}
        if name == "api-server":
            markers = [["api_server", f"port:{self.api_port}"], ["api-server", "--port", str(self.api_port)]]
        else:
            markers = [["airflow", name]]
        if not any(processes.matches(pid, words, env=home) for words in markers):
            return False
        try:
            return os.getpgid(pid) == pid  # started as a group leader (start_new_session)
        except ProcessLookupError:
            return False

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        self.components_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            popen = subprocess.Popen(
                self._argv(name),
                cwd=REPO,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._popens[name] = popen
        self._pid_file(name).write_text(f"{popen.pid}\n")

    def _exited(self, name: str) -> int | None:
        popen = self._popens.get(name)
        if popen is not None:
            return popen.poll()
        return None if self.component_pid(name) is not None else -1

    # -- up ----------------------------------------------------------------------------------------------
    def up(self, timeout: float = 600.0, pipeline: bool = True, say: Callable[[str], None] = print) -> dict:
        """Start what is not running and wait until all of it is healthy; returns what :meth:`status` says."""
        self._popens = {}
        started = time.monotonic()
        deadline = started + timeout
        self._refuse_other_ports()
        self._record()
        env = self.env()

        say(f"local AWS endpoint on {HOST}:{self.aws_port} …")
        from localdev.aws import EndpointError

        try:
            self._endpoint().start(timeout=min(120.0, self._left(deadline)))
        except EndpointError as exc:
            raise StackError(f"the local AWS endpoint did not come up: {exc}") from None

        say(f"PostgreSQL (metadata DB, unix socket {self.postgres.socket_dir}) and `airflow db migrate` …")
        try:
            t0 = time.monotonic()
            airflow_env.migrate_db(env)
            say(f"  metadata DB ready in {time.monotonic() - t0:.0f}s")
        except (PostgresError, RuntimeError) as exc:
            raise StackError(f"the metadata DB did not come up: {exc}") from None
        airflow_env.password(self.home)

        for name in COMPONENTS:
            if self.component_pid(name) is None:
                self._spawn(name, env)
        say(f"Airflow ({', '.join(COMPONENTS)}) starting, logs in {self.components_dir} …")
        self._wait_healthy(deadline)
        say(f"  Airflow healthy after {time.monotonic() - started:.0f}s")
        if pipeline:
            self._start_pipeline(deadline, say)
        return self.status()

    def _refuse_other_ports(self) -> None:
        recorded = self._recorded()
        if not recorded or (recorded.get("aws_port"), recorded.get("api_port")) == (
            self.aws_port,
            self.api_port,
        ):
            return
        if any(self.component_pid(name) for name in COMPONENTS):
            raise StackError(
                f"the stack in {self.state_dir} already runs with Airflow on port {recorded.get('api_port')} "
                f"and the AWS endpoint on {recorded.get('aws_port')}; `make down` first to change ports"
            )

    @staticmethod
    def _left(deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def _unhealthy(self) -> list[str]:
        """What is not (yet) healthy, in the words of the API server's health endpoint."""
        health = self.health()
        if health is None:
            return ["api-server (no answer on /api/v2/monitor/health)"]
        parts = {
            "metadatabase": "metadata DB",
            "scheduler": "scheduler",
            "dag_processor": "dag-processor",
            "triggerer": "triggerer",
        }
        return [label for key, label in parts.items() if (health.get(key) or {}).get("status") != "healthy"]

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            for name in COMPONENTS:
                code = self._exited(name)
                if code is not None:
                    raise StackError(
                        f"Airflow {name} exited with status {code} while starting; last lines of "
                        f"{self.log_file(name)}:\n{processes.tail(self.log_file(name))}"
                    )
            missing = self._unhealthy()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"not healthy in time: {', '.join(missing)}; component logs in {self.components_dir}"
                )
            time.sleep(1)

    def _start_pipeline(self, deadline: float, say: Callable[[str], None]) -> None:
        api = AirflowApi(self.api_url, airflow_env.LOGIN_USER, airflow_env.password(self.home))
        present = [dag for dag in LIVE_DAGS if (REPO / "dags" / f"{dag}.py").exists()]
        wanted = [SETUP_DAG, LIFECYCLE_DAG, *present]
        say(f"waiting for the DAG processor to parse {len(wanted)} DAGs …")
        api.wait_for_dags(wanted, deadline)

        say(f"{SETUP_DAG} (creates the stream, bucket, delivery stream, Flink application, …) …")
        run = api.run_dag(SETUP_DAG, {}, deadline)
        if run["state"] != "success":
            raise StackError(
                f"{SETUP_DAG} run {run['dag_run_id']} ended {run['state']}: {api.failed_tasks(run)}; "
                f"task logs under {self._task_logs(run)}"
            )

        app = self.flink_status()
        if app != "RUNNING":
            say(f"{LIFECYCLE_DAG} action=start (the Flink application is {app}) …")
            run = api.run_dag(LIFECYCLE_DAG, {"action": "start"}, deadline)
            if run["state"] != "success" and self.flink_status() in ("STARTING", "RUNNING"):
                # Seen on a loaded 2-core machine: the reschedule-mode sensor's try is lost between the
                # LocalExecutor and the API server ("Task Instance not found") although the app is starting.
                # Starting is idempotent (a RUNNING app is left alone), so one more run settles it.
                say(
                    f"  run {run['dag_run_id']} ended {run['state']} ({api.failed_tasks(run)}) while the "
                    "application is starting; running it once more …"
                )
                run = api.run_dag(LIFECYCLE_DAG, {"action": "start"}, deadline)
            if run["state"] != "success":
                raise StackError(
                    f"{LIFECYCLE_DAG} run {run['dag_run_id']} ended {run['state']}: {api.failed_tasks(run)}; "
                    f"task logs under {self._task_logs(run)}, Flink job logs under {self.state_dir / 'aws'}"
                )
            app = self.flink_status()
            if app != "RUNNING":
                raise StackError(f"the Flink application is {app} after {LIFECYCLE_DAG} start succeeded")
        say("  Flink application RUNNING")
        for dag in present:
            api.set_paused(dag, False)
        say(f"  unpaused {', '.join(present)}")

    def _task_logs(self, run: dict) -> Path:
        return self.home / "logs" / f"dag_id={run['dag_id']}" / f"run_id={run['dag_run_id']}"

    def flink_status(self) -> str | None:
        """The Flink application's status on the local endpoint (None when it does not exist or no answer)."""
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        env = self.env()
        from include.config import settings

        client = boto3.client(
            "kinesisanalyticsv2",
            endpoint_url=f"http://{HOST}:{self.aws_port}",
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            detail = client.describe_application(ApplicationName=settings().flink_app)["ApplicationDetail"]
        except (BotoCoreError, ClientError):
            return None
        return detail["ApplicationStatus"]

    # -- down --------------------------------------------------------------------------------------------
    def down(self, timeout: float = 60.0, say: Callable[[str], None] = print) -> list[str]:
        """Stop Airflow, then the endpoint (and its Flink jobs), then PostgreSQL; returns what was stopped."""
        began = time.monotonic()
        stopped = []
        groups = {name: pgid for name in COMPONENTS if (pgid := self._group_of(name)) is not None}
        # Airflow's task supervisor puts each task in a process group of its own, out of reach of the
        # component's group signal: remember every descendant now, to end those that outlive their parents.
        family = [proc for pgid in groups.values() for proc in processes.descendants(pgid)]
        # The API server last: on SIGTERM the scheduler lets running tasks finish, and they report their end
        # state through the API server's Execution API (stopped first, they retry against a closed port).
        waves = [[n for n in groups if n != "api-server"], [n for n in groups if n == "api-server"]]
        deadline = time.monotonic() + timeout
        for wave in waves:
            for name in wave:  # a wave at once, so its components shut down in parallel
                processes.signal_group(groups[name], signal.SIGTERM)
            for name in wave:
                killed = processes.wait_group(groups[name], self._left(deadline))
                stopped.append(f"{name} (pid {groups[name]}{', killed after the timeout' if killed else ''})")
        leftovers = [pid for pid, started in family if processes.same_process(pid, started)]
        for pid in leftovers:
            processes.signal_group(pid, signal.SIGTERM, group=False)
        for pid in leftovers:
            processes.wait_pid(pid, 10.0)
        if leftovers:
            stopped.append(f"task processes {leftovers}")
        for name in COMPONENTS:
            self._pid_file(name).unlink(missing_ok=True)

        from localdev.aws import EndpointError, LocalEndpoint

        try:
            endpoint = LocalEndpoint.from_state_dir(self.state_dir / "aws")
        except EndpointError:
            endpoint = None
        if endpoint is not None and (endpoint.moto_pid or endpoint.companion_pid):
            killed = endpoint.stop(timeout=timeout)
            stopped.append(f"AWS endpoint :{endpoint.port}" + (f" (+ Flink jobs {killed})" if killed else ""))
        elif endpoint is not None:
            killed = endpoint.kill_orphaned_jobs()
            if killed:
                stopped.append(f"Flink job processes {killed}")
        if self.postgres.stop(timeout=timeout):
            stopped.append("PostgreSQL")
        say(
            f"stopped in {time.monotonic() - began:.0f}s: {', '.join(stopped)}"
            if stopped
            else "stopped: nothing was running"
        )
        return stopped

    def _group_of(self, name: str) -> int | None:
        """The process group to stop for ``name``: its leader when still ours, else (leader gone) None."""
        pid = self.component_pid(name)
        if pid is not None:
            return pid
        try:
            recorded = int(self._pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        # The leader died but its workers may live on in its group: only members that carry our home count.
        members = [
            m
            for m in processes.group_members(recorded)
            if (processes.environ(m) or {}).get("AIRFLOW_HOME") == str(self.home)
        ]
        return recorded if members else None

    # -- status ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from localdev.aws import EndpointError, LocalEndpoint

        try:
            endpoint = LocalEndpoint.from_state_dir(self.state_dir / "aws").status()
        except EndpointError:
            endpoint = None
        health = self.health()
        return {
            "state_dir": str(self.state_dir),
            "airflow": {
                "url": self.api_url,
                "components": {name: self.component_pid(name) for name in COMPONENTS},
                "health": health,
            },
            "postgres": self.postgres.status(),
            "aws_endpoint": endpoint,
            "flink_app": self.flink_status() if endpoint and endpoint["companion"]["healthy"] else None,
        }

    def healthy(self, state: dict[str, Any]) -> bool:
        endpoint = state["aws_endpoint"]
        return (
            all(state["airflow"]["components"].values())
            and not self._unhealthy()
            and state["postgres"]["ready"]
            and bool(endpoint and endpoint["moto"]["healthy"] and endpoint["companion"]["healthy"])
        )

    # -- what to print -----------------------------------------------------------------------------------
    def welcome(self, elapsed: float) -> str:
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        start, end = hour, hour + timedelta(minutes=4)
        plugin = (REPO / "plugins" / "clickstream_plugin.py").exists()
        lines = [
            f"\nThe local stack is up ({elapsed:.0f}s).",
            f"  Airflow UI   {self.api_url}   login: {airflow_env.LOGIN_USER} / {airflow_env.password(self.home)}",
            f"               (generated once, kept in {airflow_env.passwords_file(self.home)})",
            f"  AWS endpoint http://{HOST}:{self.aws_port}   Flink application: {self.flink_status()}",
            f"  Metadata DB  PostgreSQL on unix socket {self.postgres.socket_dir} (no TCP port)",
            f"  Logs         {self.components_dir}/*.log, {self.state_dir / 'aws'}, {self.postgres.log_file}",
            "",
            "Three things to try:",
            "  1. Trigger a run: open clickstream_producer in the UI, press Trigger (the DAGs above already run",
            "     every minute / hour; watch the sessions arrive).",
            "  2. A backfill of a past hour (UI: Trigger → Backfill, or from a shell):",
            "     .venv/bin/python -m localdev.stack airflow backfill create --dag-id clickstream_producer \\",
            f"       --from-date {start:%Y-%m-%dT%H:%M:%S} --to-date {end:%Y-%m-%dT%H:%M:%S}",
            (
                f"  3. The Clickstream page: {self.api_url}/plugin/clickstream"
                if plugin
                else "  3. The Clickstream page: not in plugins/ yet"
            ),
            "",
            "`make status` checks it, `make down` stops all of it.",
        ]
        return "\n".join(lines)


class AirflowApi:
    """The few REST calls ``up`` makes, logged in as the simple auth manager's user (token from /auth/token)."""

    def __init__(self, base_url: str, user: str, password: str):
        self.base_url = base_url
        self.user = user
        self.password = password
        self._token: str | None = None

    def _login(self) -> str:
        body = json.dumps({"username": self.user, "password": self.password}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return json.loads(resp.read())["access_token"]
        except urllib.error.HTTPError as exc:
            raise StackError(
                f"login as {self.user!r} on {self.base_url} refused ({exc.code}): {exc.read()[:300]!r}"
            ) from None

    def call(self, method: str, path: str, body: dict | None = None, allow: tuple[int, ...] = ()) -> Any:
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._login()
            request = urllib.request.Request(
                f"{self.base_url}{path}",
                method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._token = None
                    continue
                if exc.code in allow:
                    return None
                raise StackError(f"{method} {path} → {exc.code}: {exc.read()[:500]!r}") from None
        raise AssertionError("unreachable")

    def wait_for_dags(self, dag_ids: list[str], deadline: float) -> None:
        missing = list(dag_ids)
        while missing:
            missing = [
                dag for dag in missing if self.call("GET", f"/api/v2/dags/{dag}", allow=(404,)) is None
            ]
            if not missing:
                return
            errors = self.call("GET", "/api/v2/importErrors?limit=100") or {}
            broken = [e for e in errors.get("import_errors", []) if any(d in e["filename"] for d in missing)]
            if broken:
                first = broken[0]
                raise StackError(
                    f"DAG file {first['filename']} does not import:\n{first['stack_trace'][-2000:]}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"the DAG processor has not parsed {', '.join(missing)} in time")
            time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def run_dag(self, dag_id: str, conf: dict, deadline: float) -> dict:
        """Unpause ``dag_id`` (the scheduler runs nothing of a paused DAG), trigger it, wait for the end state."""
        self.set_paused(dag_id, False)
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        run_id = run["dag_run_id"]
        while run["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise StackError(f"{dag_id} run {run_id} still {run['state']} at the deadline")
            time.sleep(2)
            run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return run

    def failed_tasks(self, run: dict) -> str:
        tis = self.call("GET", f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances")
        bad = [
            f"{t['task_id']}={t['state']}"
            for t in tis["task_instances"]
            if t["state"] not in ("success", "skipped")
        ]
        return ", ".join(bad) or "no failed task"


def _foreground(stack: Stack, args: argparse.Namespace) -> int:
    """``make airflow``: ``up``, then stay attached; Ctrl-C, SIGTERM or SIGHUP stop the whole stack."""

    def stop(signum, _frame):
        raise _Stopped(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    code = 0
    try:
        started = time.monotonic()
        stack.up(timeout=args.timeout, pipeline=not args.no_pipeline)
        print(stack.welcome(time.monotonic() - started))
        print("Running in the foreground: Ctrl-C (or SIGTERM) stops the whole stack.", flush=True)
        while True:
            gone = [name for name in COMPONENTS if stack.component_pid(name) is None]
            if gone:
                print(f"Airflow {', '.join(gone)} stopped; see {stack.components_dir}", file=sys.stderr)
                code = 1
                break
            time.sleep(1)
    except _Stopped as why:
        print(f"\n{why}: stopping the stack …", file=sys.stderr, flush=True)
    except StackError as exc:
        print(f"make airflow: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.down()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("up", "down", "status"), help="or `airflow ARGS…`: Airflow's CLI")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("CLICKSTREAM_STATE_DIR", DEFAULT_STATE_DIR))
    )
    parser.add_argument(
        "--aws-port", type=int, default=None, help=f"local AWS endpoint (default {DEFAULT_AWS_PORT})"
    )
    parser.add_argument(
        "--api-port", type=int, default=None, help=f"Airflow UI/API (default {DEFAULT_API_PORT})"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for `up` to become healthy")
    parser.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C/SIGTERM stop the stack"
    )
    parser.add_argument(
        "--no-pipeline", action="store_true", help="only start the services (no setup, no Flink app)"
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [
        "airflow"
    ]:  # the Airflow CLI with the stack's environment (state dir from the environment)
        stack = Stack(os.environ.get("CLICKSTREAM_STATE_DIR", DEFAULT_STATE_DIR))
        return subprocess.call(
            [sys.executable, "-m", "airflow", *argv[1:]], env={**os.environ, **stack.env()}
        )
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir, args.aws_port, args.api_port)
    if args.command == "up" and args.foreground:
        return _foreground(stack, args)
    if args.command == "up":
        started = time.monotonic()
        try:
            stack.up(timeout=args.timeout, pipeline=not args.no_pipeline)
        except StackError as exc:
            print(
                f"make up: {exc}\nWhat did start keeps running: `make status` shows it, `make down` stops it.",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; what did start keeps running: `make down` stops it.", file=sys.stderr)
            return 130
        print(stack.welcome(time.monotonic() - started))
        return 0
    if args.command == "down":
        stack.down()
        return 0
    state = stack.status()
    print(json.dumps(state, indent=2))
    return 0 if stack.healthy(state) else 3


if __name__ == "__main__":
    sys.exit(main())
