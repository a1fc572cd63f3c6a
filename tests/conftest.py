"""Test session setup: Airflow runs against a throwaway home and a local AWS endpoint of its own.

The endpoint (moto + companion) is started once per test session on ``CLICKSTREAM_TEST_PORT`` (4666 by
default, so a `make up` endpoint on 4566 can keep running) and stopped, by PID, at the end.

Markers: tests using the endpoint, PostgreSQL, an API server or chromium are marked ``integration``/``browser``
from their fixtures (tests/fast_guard.py); modules that start PyFlink say ``jvm`` in ``pytestmark``.
``CLICKSTREAM_TEST_FAST=1`` (`make test-fast`) runs only the rest and guards that it starts none of those.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from localdev import airflow_env as local_airflow
from tests import fast_guard

# Each pytest-xdist worker (PYTEST_XDIST_WORKER=gw0, gw1, ...) is a session of its own: its own home (so its own
# PostgreSQL cluster and AIRFLOW_HOME) and its own endpoint ports.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if os.environ.get("CLICKSTREAM_TEST_HOME"):
    _HOME = Path(os.environ["CLICKSTREAM_TEST_HOME"]) / _WORKER
else:
    _HOME = Path(
        tempfile.mkdtemp(prefix=f"clickstream-tests-{_WORKER}-" if _WORKER else "clickstream-tests-")
    )


def _test_port() -> int:
    """4666 (so a `make up` endpoint on 4566 can keep running), or a free pair when 4666/4667 are taken or
    when this is one of several xdist workers (which would all see 4666 free at the same moment)."""
    if os.environ.get("CLICKSTREAM_TEST_PORT") and not _WORKER:
        return int(os.environ["CLICKSTREAM_TEST_PORT"])
    from localdev.aws.endpoint import port_is_free

    if not _WORKER and port_is_free(4666) and port_is_free(4667):
        return 4666
    from tests.local_aws.support import free_port_pair

    return free_port_pair()


TEST_PORT = _test_port()
ENV = local_airflow.local_env(
    home=_HOME / "airflow",
    port=TEST_PORT,
    # Short Firehose buffers keep integration tests quick; AWS deployments keep the 60 s default.
    extra={
        "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS": "2",
        "CLICKSTREAM_RETRY_DELAY_SECONDS": "1",
        "CLICKSTREAM_FLINK_CHECKPOINT_MS": "3000",
        "CLICKSTREAM_FLINK_ROLLOVER": "1 s",
    },
)
local_airflow.apply(ENV)
FAST = os.environ.get(fast_guard.FAST_ENV) == "1"
_FAST_LOG = fast_guard.install() if FAST else None
if _FAST_LOG is not None:
    subprocess.Popen.__init__ = fast_guard.guarded_popen_init(_FAST_LOG)
    atexit.register(shutil.rmtree, _FAST_LOG.parent, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    if FAST and not config.option.markexpr:
        config.option.markexpr = fast_guard.FAST_MARKEXPR


# The modules that take minutes (measured, `make test`), longest first. Under pytest-xdist (`--dist loadscope
# --no-loadscope-reorder`) they are handed out first, so two workers split them instead of one worker
# finishing the last of them alone; the order of the tests within a module is kept. Only a scheduling hint:
# a module missing here runs after them, in collection order.
LONGEST_FIRST = (
    "tests/localdev/test_stack_lifecycle.py",
    "tests/integration/test_streaming_pipeline.py",
    "tests/sessions/test_sessions_flink.py",
    "tests/localdev/test_metadata_db_concurrency.py",
    "tests/integration/test_reconciliation_pipeline.py",
    "tests/local_aws/test_kinesisanalytics_flink.py",
    "tests/sessions/test_flink_runner.py",
    "tests/local_aws/test_kinesisanalytics_api.py",
    "tests/integration/test_teardown.py",
    "tests/integration/test_system_pipeline.py",
    "tests/reconciliation/test_producer.py",
    "tests/local_aws/test_firehose_delivery.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in sorted(fast_guard.slow_markers(item.fixturenames)):
            item.add_marker(marker)
    if _WORKER:  # every worker collects, and must collect the same order
        items.sort(key=_rank)  # stable: the rest keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _FAST_LOG is not None:
        item.stash[_GUARD_OFFSET] = _FAST_LOG.stat().st_size


_GUARD_OFFSET = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _FAST_LOG is None or report.when != "teardown" or _GUARD_OFFSET not in item.stash:
        return
    if found := fast_guard.violations(_FAST_LOG, item.stash[_GUARD_OFFSET]):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} ran in the fast set (make test-fast) but started: {'; '.join(found)}. "
            "Use the session fixture that starts it (local_endpoint, airflow_db, ...) or add "
            "`pytestmark = pytest.mark.integration` / `jvm` / `browser` to the module."
        )


@pytest.fixture(scope="session")
def test_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def local_endpoint():
    from localdev.aws import LocalEndpoint

    endpoint = LocalEndpoint(port=TEST_PORT, state_dir=_HOME / "aws")
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB: a PostgreSQL cluster of this session's own (in its temp home), stopped at the end;
    a guard process stops it too when pytest is killed (so a `make up` stack's cluster is never touched)."""
    cluster = local_airflow.metadata_db(ENV).start()
    cluster.start_guard()
    try:
        local_airflow.migrate_db(ENV)
        _copy_database(cluster, cluster.database, MIGRATED_TEMPLATE)
        yield ENV["AIRFLOW_HOME"]
    finally:
        # Close Airflow's pooled connections first: its atexit dispose_orm would otherwise roll back on a
        # server that is gone and print an OperationalError traceback after the test summary.
        from airflow import settings as airflow_settings

        airflow_settings.dispose_orm()
        cluster.stop()


# A copy of the freshly migrated, still empty metadata DB (made by ``airflow_db``): a test wanting an Airflow DB of
# its own copies it (:func:`migrated_database`) in a fraction of a second instead of running `airflow db migrate`.
MIGRATED_TEMPLATE = "airflow_migrated_template"


def _copy_database(cluster, source: str, target: str) -> None:
    """``CREATE DATABASE target TEMPLATE source`` (PostgreSQL copies the files; nobody may be connected to source)."""
    import psycopg2

    from localdev.postgres import SOCKET_PORT, SUPERUSER

    conn = psycopg2.connect(dbname="postgres", user=SUPERUSER, host=str(cluster.socket_dir), port=SOCKET_PORT)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def migrated_database(airflow_db):
    """``make(name)``: a new database ``name`` in the session's cluster holding Airflow's migrated, empty schema;
    returns its cluster."""

    def make(name: str):
        cluster = local_airflow.metadata_db(ENV)
        _copy_database(cluster, MIGRATED_TEMPLATE, name)
        return cluster

    return make


@pytest.fixture(scope="session")
def aws_clients(local_endpoint):
    from localdev.aws.clients import local_client

    def make(service: str):
        return local_client(service, local_endpoint.url)

    return make
