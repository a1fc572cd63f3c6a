"""Test session setup: Airflow runs against a throwaway home and a local AWS endpoint of its own.

The endpoint (moto + companion) is started once per test session on ``CLICKSTREAM_TEST_PORT`` (4666 by
default, so a `make up` endpoint on 4566 can keep running) and stopped, by PID, at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from localdev import airflow_env as local_airflow

_HOME = Path(os.environ.get("CLICKSTREAM_TEST_HOME") or tempfile.mkdtemp(prefix="clickstream-tests-"))


def _test_port() -> int:
    """4666 (so a `make up` endpoint on 4566 can keep running), or a free pair when 4666/4667 are taken."""
    if os.environ.get("CLICKSTREAM_TEST_PORT"):
        return int(os.environ["CLICKSTREAM_TEST_PORT"])
    from localdev.aws.endpoint import port_is_free

    if port_is_free(4666) and port_is_free(4667):
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
        yield ENV["AIRFLOW_HOME"]
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def aws_clients(local_endpoint):
    from localdev.aws.clients import local_client

    def make(service: str):
        return local_client(service, local_endpoint.url)

    return make
