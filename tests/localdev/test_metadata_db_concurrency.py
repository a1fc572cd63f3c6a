"""Concurrent writers on the metadata DB: backfills and task runs in parallel processes, no lock errors.

With SQLite, `airflow backfill create` next to running components failed with ``database is locked`` (issue 12);
the local metadata DB is now the test session's PostgreSQL. This test gives a small probe DAG a database of its
own in that cluster (so nothing else in the session sees it) and runs two backfills (of two DAGs: Airflow allows
one running backfill per DAG) and three full DAG runs (`airflow dags test`: real task instances and XComs) as five
processes at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from localdev import airflow_env
from tests.conftest import ENV

PROBE_DAGS = ("metadata_db_probe_a", "metadata_db_probe_b")
PROBE_DAG = PROBE_DAGS[0]
WIDTH = 4  # parallel tasks per run

DAG_FILE = textwrap.dedent(
    f"""
    from datetime import datetime

    from airflow.sdk import DAG, task


    @task
    def part(i: int, logical_date=None) -> str:
        return f"{{logical_date:%H}}-{{i}}"


    @task
    def join(parts: list[str]) -> int:
        return len(parts)


    for dag_id in {PROBE_DAGS!r}:
        with DAG(dag_id=dag_id, schedule="@hourly", start_date=datetime(2026, 1, 1), catchup=False):
            join([part.override(task_id=f"part_{{i}}")(i) for i in range({WIDTH})])
    """
)


@pytest.fixture(scope="module")
def probe_env(migrated_database, tmp_path_factory):
    """An Airflow home whose metadata DB is a fresh database ``probe`` (Airflow's migrated schema, copied) in the
    session's cluster."""
    root = tmp_path_factory.mktemp("db-probe")
    (root / "dags").mkdir()
    (root / "dags" / "metadata_db_probe.py").write_text(DAG_FILE)
    cluster = migrated_database("probe")
    env = {
        **os.environ,
        **airflow_env.local_env(home=root / "airflow", postgres_dir=cluster.root),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.url("probe"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": cluster.url("probe", driver="asyncpg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
    }
    _airflow(env, "dags", "reserialize")
    return env


def _airflow(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _query(env: dict, sql: str) -> list[tuple]:
    import psycopg2

    cluster = airflow_env.metadata_db(ENV)
    conn = psycopg2.connect(dbname="probe", user="postgres", host=str(cluster.socket_dir))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_backfills_and_task_runs_in_parallel_processes_hit_no_lock(probe_env):
    day = datetime(2026, 3, 1)
    backfills = [(day, day + timedelta(hours=2)), (day + timedelta(hours=10), day + timedelta(hours=12))]
    test_dates = [day + timedelta(days=1, hours=h) for h in (1, 2, 3)]
    fmt = "%Y-%m-%dT%H:%M:%S"
    commands = [
        (
            "backfill",
            "create",
            "--dag-id",
            dag,
            "--from-date",
            start.strftime(fmt),
            "--to-date",
            end.strftime(fmt),
        )
        for dag, (start, end) in zip(PROBE_DAGS, backfills, strict=True)
    ] + [("dags", "test", PROBE_DAG, when.strftime(fmt)) for when in test_dates]

    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda args: _airflow(probe_env, *args), commands))

    for args, result in zip(commands, results, strict=True):
        output = result.stdout + result.stderr
        assert "database is locked" not in output, args
        assert "OperationalError" not in output, (args, output[-3000:])
    assert _query(probe_env, "SELECT current_setting('server_version_num')::int >= 150000")[0][0]

    for dag, (start, end) in zip(PROBE_DAGS, backfills, strict=True):
        rows = _query(
            probe_env, f"SELECT logical_date FROM dag_run WHERE dag_id = '{dag}' AND run_type = 'backfill'"
        )
        hours = int((end - start).total_seconds() // 3600)
        assert sorted(row[0].replace(tzinfo=None) for row in rows) == [
            start + timedelta(hours=h) for h in range(hours + 1)
        ], dag
        assert len(_query(probe_env, f"SELECT id FROM backfill WHERE dag_id = '{dag}'")) == 1, dag

    runs = _query(
        probe_env, f"SELECT run_type, state, logical_date FROM dag_run WHERE dag_id = '{PROBE_DAG}'"
    )

    tested = {row[2].replace(tzinfo=None): row[1] for row in runs if row[0] != "backfill"}
    assert tested == {when: "success" for when in test_dates}, runs
    tis = _query(
        probe_env,
        "SELECT r.logical_date, ti.state, count(*) FROM task_instance ti JOIN dag_run r "
        f"ON ti.dag_id = r.dag_id AND ti.run_id = r.run_id WHERE r.dag_id = '{PROBE_DAG}' AND r.run_type != 'backfill' "
        "GROUP BY 1, 2",
    )
    assert sorted((d.replace(tzinfo=None), state, n) for d, state, n in tis) == [
        (when, "success", WIDTH + 1) for when in test_dates
    ]
    joined = _query(
        probe_env,
        f"SELECT value FROM xcom WHERE dag_id = '{PROBE_DAG}' AND task_id = 'join' AND key = 'return_value'",
    )
    assert sorted(str(row[0]) for row in joined) == [str(WIDTH)] * len(test_dates)
