"""The environment that runs this project's Airflow against the local AWS endpoint.

Used by ``make demo``, ``make airflow`` and the tests, so all three run the same configuration. Only the
``aws_default`` connection points at the local endpoint; on AWS the same DAGs run with a real connection.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 4566


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
    home: Path | None = None, port: int = DEFAULT_PORT, extra: dict[str, str] | None = None
) -> dict[str, str]:
    home = home or REPO / ".local" / "airflow"
    env = {
        "AIRFLOW_HOME": str(home),
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


def migrate_db(env: dict[str, str]) -> None:
    """Create or upgrade the SQLite metadata DB (idempotent, a few seconds)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


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
    with _param_values_restored(dag):
        return dag.test(logical_date=logical_date, run_conf=conf)


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
