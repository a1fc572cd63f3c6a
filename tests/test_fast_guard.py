"""`make test-fast` starts no JVM, endpoint, PostgreSQL or browser: the marking rule and the guards behind it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from _pytest.mark.expression import Expression

from localdev import postgres
from localdev.aws.endpoint import LocalEndpoint
from tests import fast_guard
from tests.local_aws.support import free_port_pair

SLOW = {"integration", "jvm", "browser", "slow"}


def _markers(item: pytest.Item) -> set[str]:
    return {mark.name for mark in item.iter_markers()}


def test_every_test_using_a_server_fixture_is_outside_the_fast_set(request):
    fast = Expression.compile(fast_guard.FAST_MARKEXPR)
    items = request.session.items
    using_servers = [item for item in items if fast_guard.slow_markers(item.fixturenames)]
    for item in using_servers:
        assert fast_guard.slow_markers(item.fixturenames) <= _markers(item), item.nodeid
        assert not fast.evaluate(lambda name, item=item: name in _markers(item)), item.nodeid
    for item in items:
        assert fast.evaluate(lambda name, item=item: name in _markers(item)) == (not _markers(item) & SLOW)


def test_session_fixtures_that_start_servers_mark_their_users():
    assert fast_guard.slow_markers(["tmp_path", "airflow_db", "aws_clients"]) == {"integration"}
    assert fast_guard.slow_markers(["browser", "api_server"]) == {"integration", "browser"}
    assert fast_guard.slow_markers(["tmp_path", "monkeypatch"]) == set()


@pytest.fixture
def guarded(monkeypatch):
    env = dict(os.environ)
    log = fast_guard.install(env)
    for name in ("JAVA_HOME", "CLICKSTREAM_PG_BIN", "PATH"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setattr(subprocess.Popen, "__init__", fast_guard.guarded_popen_init(log))
    yield log
    shutil.rmtree(log.parent)


def test_a_jvm_started_by_pyflink_in_a_child_process_is_refused_and_recorded(guarded):
    probe = "from pyflink.pyflink_gateway_server import find_java_executable as f; print(f())"
    java = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert java == os.path.join(os.environ["JAVA_HOME"], "bin", "java")
    done = subprocess.run([java, "-version"], capture_output=True, text=True)
    assert done.returncode == 97 and "refused to start a JVM" in done.stderr
    assert fast_guard.violations(guarded, 0) == [f"a JVM (PyFlink) ({java})"]


def test_postgresql_and_chromium_are_refused(guarded, tmp_path):
    with pytest.raises(postgres.PostgresError):
        postgres.PostgresCluster(tmp_path / "pg").start(timeout=10)
    chromium = subprocess.run(["chromium", "--headless"], capture_output=True, text=True)
    assert chromium.returncode == 97
    found = fast_guard.violations(guarded, 0)
    assert found[0].startswith("PostgreSQL (") and found[-1].startswith("chromium ("), found


def test_the_local_endpoint_is_refused_in_this_process(guarded, tmp_path):
    with pytest.raises(fast_guard.FastSetViolation, match="local AWS endpoint"):
        LocalEndpoint(free_port_pair(), tmp_path / "aws").start(timeout=10)
    assert fast_guard.violations(guarded, 0)[0].startswith("the local AWS endpoint (moto)")
