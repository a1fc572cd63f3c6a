"""``make airflow``: Airflow (API server + UI, scheduler, DAG processor, triggerer) on http://127.0.0.1:8080,
configured by :mod:`localdev.airflow_env` against the local AWS endpoint.

Not ``airflow standalone``: its scheduler and triggerer start a log server bound to every interface, which this
project does not allow; here each component runs with ``--skip-serve-logs`` (the LocalExecutor's task logs are
local files the API server reads directly) and the API server binds 127.0.0.1. Runs in the foreground; Ctrl-C
stops the components it started, by PID. The UI needs no login locally (simple auth manager, all users admin):
never use that setting on a shared host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from localdev import airflow_env as local_airflow

COMPONENTS = (
    ("api-server", ["api-server", "--host", "127.0.0.1", "--port", "8080"]),
    ("scheduler", ["scheduler", "--skip-serve-logs"]),
    ("dag-processor", ["dag-processor"]),
    ("triggerer", ["triggerer", "--skip-serve-logs"]),
)


def main() -> int:
    env = local_airflow.local_env(
        extra={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS": os.environ.get(
                "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS", "10"
            ),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    local_airflow.apply(env)
    local_airflow.migrate_db(env)
    logs = Path(env["AIRFLOW_HOME"]) / "components"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, args in COMPONENTS:
        out = open(logs / f"{name}.log", "ab")
        procs.append(
            (name, subprocess.Popen([sys.executable, "-m", "airflow", *args], stdout=out, stderr=out))
        )
    print(f"Airflow UI: http://127.0.0.1:8080 (component logs in {logs}); Ctrl-C stops it.", flush=True)
    try:
        while all(p.poll() is None for _, p in procs):
            time.sleep(1)
        for name, p in procs:
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; see {logs / (name + '.log')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
