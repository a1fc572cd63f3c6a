"""docker-compose.yaml cannot run here (no Docker engine), so its parts are checked where they can be:

* the local-aws service's own command lines start a working endpoint (only 0.0.0.0 becomes 127.0.0.1 and the
  ports become free ones, because this machine binds every server to loopback);
* every published port is bound to 127.0.0.1 on the host;
* Airflow's connection points at that service, and its folders and uv version are the project's own.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localdev.aws.endpoint import PROJECT_ROOT
from tests.local_aws.support import alive, free_port_pair, make_client, wait_for

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def python_module_commands(command: str) -> dict[str, list[str]]:
    """``uv run python -m <module> <args>`` in a service's shell command → {module: args}."""
    shell, flag, script = shlex.split(command)
    assert (shell, flag) == ("sh", "-c"), command
    found: dict[str, list[str]] = {}
    for part in re.split(r"&&|&\)|\(", script):
        words = shlex.split(part)
        if words[:4] == ["uv", "run", "python", "-m"]:
            found[words[4]] = words[5:]
    return found


def replace_option(args: list[str], names: tuple[str, ...], value: str) -> list[str]:
    out = list(args)
    (index,) = [i for i, word in enumerate(out) if word in names]
    out[index + 1] = value
    return out


def test_every_published_port_is_bound_to_loopback():
    published = [(name, port) for name, service in SERVICES.items() for port in service.get("ports", [])]
    assert published, "the compose file publishes no port"
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port!r} on every interface"


def test_the_compose_uv_and_python_match_the_makefile():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.M).group(1)
    py_version = re.search(r"^PY_VERSION := (\S+)$", makefile, re.M).group(1)
    for name, service in SERVICES.items():
        assert f"uv=={uv_version}" in service["command"], f"{name} installs another uv than the Makefile"
        assert service["image"].startswith(f"python:{py_version}-"), f"{name} runs {service['image']}"
        assert "uv sync --frozen" in service["command"], f"{name} does not install the locked environment"


def test_airflow_reaches_the_local_aws_service_and_the_project_folders():
    from airflow.models.connection import Connection

    airflow = SERVICES["airflow"]
    assert "local-aws" in airflow["depends_on"]
    env = airflow["environment"]
    conn = Connection(conn_id="aws_default", **json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"]))
    assert conn.conn_type == "aws"
    gateway = python_module_commands(SERVICES["local-aws"]["command"])["localdev.aws.gateway"]
    port = gateway[gateway.index("--port") + 1]
    assert conn.extra_dejson["endpoint_url"] == f"http://local-aws:{port}"
    mount = airflow["working_dir"]
    assert f".:{mount}" in airflow["volumes"]
    for key, folder in (("AIRFLOW__CORE__DAGS_FOLDER", "dags"), ("AIRFLOW__CORE__PLUGINS_FOLDER", "plugins")):
        assert env[key] == f"{mount}/{folder}", key
    assert (PROJECT_ROOT / "dags").is_dir()  # plugins/ may be absent: Airflow then loads no plugin
    assert env["PYTHONPATH"] == mount  # so that the DAGs import include.…


@pytest.fixture
def compose_endpoint(tmp_path: Path):
    """The local-aws service's two command lines, run here on free loopback ports."""
    commands = python_module_commands(SERVICES["local-aws"]["command"])
    assert set(commands) == {"localdev.aws.moto_server", "localdev.aws.gateway"}, commands
    moto_args, gateway_args = commands["localdev.aws.moto_server"], commands["localdev.aws.gateway"]
    # In the container the companion must find moto where moto listens.
    assert moto_args[moto_args.index("-H") + 1] == "127.0.0.1"
    assert gateway_args[gateway_args.index("--moto-port") + 1] == moto_args[moto_args.index("-p") + 1]
    port = free_port_pair()
    moto_args = replace_option(moto_args, ("-p", "--port"), str(port + 1))
    gateway_args = replace_option(gateway_args, ("--host",), "127.0.0.1")
    gateway_args = replace_option(gateway_args, ("--port",), str(port))
    gateway_args = replace_option(gateway_args, ("--moto-port",), str(port + 1))
    gateway_args = replace_option(gateway_args, ("--state-dir",), str(tmp_path / "state"))
    started = []
    try:
        for module, args in (
            ("localdev.aws.moto_server", moto_args),
            ("localdev.aws.gateway", gateway_args),
        ):
            log = open(tmp_path / f"{module}.log", "wb")  # noqa: SIM115 - closed with the process
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *args],
                    cwd=PROJECT_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield f"http://127.0.0.1:{port}", started
    finally:
        for proc in reversed(started):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_local_aws_service_command_serves_s3_kinesis_firehose_and_managed_flink(compose_endpoint):
    url, processes = compose_endpoint
    s3 = make_client(url, "s3")

    def answers() -> bool:
        assert all(proc.poll() is None for proc in processes), "a compose process exited"
        try:
            s3.list_buckets()
        except Exception:  # noqa: BLE001 - not listening yet
            return False
        return True

    wait_for(answers, 60, "the compose endpoint to answer", interval=0.5)
    s3.create_bucket(Bucket="compose-check")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["compose-check"]
    kinesis = make_client(url, "kinesis")
    kinesis.create_stream(StreamName="compose-events", ShardCount=1)
    assert kinesis.list_streams()["StreamNames"] == ["compose-events"]
    assert make_client(url, "firehose").list_delivery_streams()["DeliveryStreamNames"] == []
    assert make_client(url, "kinesisanalyticsv2").list_applications()["ApplicationSummaries"] == []
    assert all(alive(proc.pid) for proc in processes)
