"""Fixtures of the Clickstream page tests: the seeded lake and a real API server with the plugin loaded.

The plugins folder goes on ``sys.path`` as Airflow puts it there, so ``clickstream`` imports by name here too.
Artifacts (server log, screenshots) go to ``.local/test-artifacts/plugins/`` (``CLICKSTREAM_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from localdev.airflow_env import REPO, run_dag, task_states

PLUGINS = REPO / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

ARTIFACTS = (
    Path(os.environ.get("CLICKSTREAM_TEST_ARTIFACTS") or REPO / ".local" / "test-artifacts") / "plugins"
)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def seeded(local_endpoint, airflow_db, aws_clients):
    """Setup through the setup DAG, then the two seeded hours (see tests/plugins/seed.py)."""
    from tests.plugins.seed import seed

    run = run_dag("clickstream_setup")
    assert run.state == "success", task_states(run)
    return seed(aws_clients("s3"), aws_clients("kinesis"))


@pytest.fixture(scope="session")
def api_server(seeded, test_home, artifacts_dir):
    from tests.plugins.airflow_server import start_api_server

    server = start_api_server(test_home / "plugin-api-server", artifacts_dir)
    try:
        yield server
    finally:
        server.stop()
