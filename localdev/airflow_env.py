"""The environment that runs this project's Airflow against the local AWS endpoint.

Used by ``make demo``, ``make up`` / ``make airflow`` and the tests, so all of them run the same configuration.
Only the ``aws_default`` connection points at the local endpoint; on AWS the same DAGs run with a real
connection. The metadata database is a local PostgreSQL cluster (:mod:`localdev.postgres`) next to the Airflow
home (``<home>/../postgres``), reached through its unix socket only; :func:`migrate_db` starts it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from localdev.postgres import PostgresCluster

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 4566
#: Which PostgreSQL cluster directory the environment's metadata DB lives in (read by :func:`metadata_db`).
POSTGRES_DIR_VAR = "CLICKSTREAM_LOCAL_POSTGRES"
LOGIN_USER = "admin"


def aws_connection_uri(port: int = DEFAULT_PORT, region: str = "us-east-1") -> str:
    """The ``aws_default`` connection as Airflow's JSON connection format (endpoint_url in the extra)."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": region, "endpoint_url": f"http://127.0.0.1:{port}"},
        }
    )


def local_env(
    home: Path | None = None,
    port: int = DEFAULT_PORT,
    extra: dict[str, str] | None = None,
    postgres_dir: Path | None = None,
) -> dict[str, str]:
    """Airflow's environment: home (default ``.local/airflow``), DAGs, plugins, the metadata DB, ``aws_default``.

    The metadata DB is the PostgreSQL cluster in ``postgres_dir`` (default: ``postgres`` beside ``home``),
    so a test session's temporary home gets a cluster of its own and never touches `make up`'s.
    """
    home = Path(home or REPO / ".local" / "airflow")
    cluster = PostgresCluster(postgres_dir or home.parent / "postgres")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.url(),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": cluster.url(driver="asyncpg"),
        POSTGRES_DIR_VAR: str(cluster.root),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": "8080",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(port),
        # boto3 outside Airflow (companion, tests) must never pick up real credentials by accident.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    }
    env.update(extra or {})
    return env


def apply(env: dict[str, str]) -> None:
    os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def metadata_db(env: dict[str, str]) -> PostgresCluster:
    """The PostgreSQL cluster holding the metadata DB of ``env`` (from :func:`local_env`)."""
    return PostgresCluster(env[POSTGRES_DIR_VAR])


def migrate_db(env: dict[str, str]) -> PostgresCluster:
    """Start the metadata DB's PostgreSQL unless it runs, then create or upgrade Airflow's schema (idempotent).

    Returns the cluster; it keeps running (``make down`` or :meth:`PostgresCluster.stop` stops it).
    """
    cluster = metadata_db(env).start()
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`airflow db migrate` on {cluster.url()} failed with status {result.returncode}:\n"
            + "\n".join(result.stderr.splitlines()[-30:])
        )
    return cluster


def login_env(home: Path) -> dict[str, str]:
    """Airflow's simple auth manager with one ``admin`` user and a generated password (see :func:`password`).

    Not all-admins: the UI and the REST API ask for a login, so the plugins' authorization is exercised locally.
    """
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{LOGIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(home)),
    }


def passwords_file(home: Path) -> Path:
    return Path(home) / "simple_auth_manager_passwords.json.generated"


def password(home: Path) -> str:
    """The ``admin`` password, generated once (16 characters from Airflow's own alphabet) and kept in the
    passwords file the simple auth manager reads (JSON ``{"admin": "..."}``, mode 0600)."""
    path = passwords_file(home)
    try:
        passwords = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        passwords = {}
    except ValueError as exc:
        raise RuntimeError(f"{path} is not the JSON object of passwords Airflow writes: {exc}") from None
    if not passwords.get(LOGIN_USER):
        alphabet = "abcdefghkmnpqrstuvwxyzABCDEFGHKMNPQRSTUVWXYZ23456789"
        passwords[LOGIN_USER] = "".join(secrets.choice(alphabet) for _ in range(16))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(passwords) + "\n")
    return passwords[LOGIN_USER]


@functools.lru_cache(maxsize=1)
def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def load_dag(dag_id: str):
    """A DAG from this repository's dags/ folder, parsed the way the scheduler parses it (once per process)."""
    bag = _dagbag()
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {REPO / 'dags'}")
    return dag


def run_dag(dag_id: str, logical_date=None, conf: dict | None = None):
    """Run a DAG in-process with ``dag.test()`` (real task instances, XComs and DB rows); returns the DagRun.

    For the interval timetables of this project, ``logical_date`` is the *end* of the wanted data interval.
    """
    dag = load_dag(dag_id)
    with _param_values_restored(dag), _deadline_left_to_the_scheduler(dag):
        return dag.test(logical_date=logical_date, run_conf=conf)


@contextlib.contextmanager
def _deadline_left_to_the_scheduler(dag):
    """Run without the DAG's deadline alerts, and put them back afterwards.

    ``dag.test()`` of Airflow 3.3.2 runs a copy of the DAG whose ``deadline`` holds the serialized alert dicts
    where the scheduler's copy holds the deadline_alert row ids; once a run succeeds, ``DagRun.update_state``
    looks the dicts up as ids and fails ("can't adapt type 'dict'"). Deadlines are evaluated by the scheduler,
    not by ``dag.test()``, so in-process runs lose nothing by leaving them out.
    """
    saved = getattr(dag, "deadline", None)
    dag.deadline = None
    try:
        yield
    finally:
        dag.deadline = saved


@contextlib.contextmanager
def _param_values_restored(dag):
    """Put every ``Param`` of ``dag`` and its tasks back to its parsed value after a run.

    The Task SDK merges a run's ``conf`` into the *shared* ``Param`` objects (``process_params`` →
    ``ParamsDict.__setitem__`` → ``Param.resolve`` sets ``param.value``), so in one process a key given to
    one run became the default of every later run (measured: one run's fault knobs leaked into the next run
    of the producer). A worker parses the DAG in each task process, so only in-process runs need this.
    """
    holders = [dag.params] + [task.params for task in dag.tasks if task.params]
    saved = [(param, param.value) for params in holders for param in params.values()]
    try:
        yield
    finally:
        for param, value in saved:
            param.value = value


def task_result(dag_run, task_id: str):
    """The return value (XCom) of ``task_id`` in ``dag_run``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
        )
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


def task_states(dag_run) -> dict[str, str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dr = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id)
        ).one()
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
