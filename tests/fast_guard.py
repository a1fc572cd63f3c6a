"""The fast set's guard and marking rule: `make test-fast` must start no JVM, endpoint, PostgreSQL or browser.

Tests are sorted by :func:`slow_markers` (the fixtures they use) plus explicit ``pytestmark`` lines. The rule
alone could let a new slow test into the fast set unnoticed, so `make test-fast` (``CLICKSTREAM_TEST_FAST=1``)
also puts guards where those processes start: ``java`` (``JAVA_HOME`` and ``PATH``, so PyFlink in a child
process is caught too), PostgreSQL's binaries (``CLICKSTREAM_PG_BIN``), ``chromium`` on ``PATH``, and, in the
pytest process, the local endpoint and the Airflow API server. A guard refuses to start the process and
records which test asked; that test then fails, naming what it started and how to mark it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

FAST_ENV = "CLICKSTREAM_TEST_FAST"
FAST_MARKEXPR = "not integration and not jvm and not browser and not slow"

# Fixtures that start (or need) a local endpoint, PostgreSQL, an API server or chromium -> marker.
SLOW_FIXTURES = {
    "local_endpoint": "integration",  # tests/conftest.py: the session's endpoint
    "aws_clients": "integration",
    "airflow_db": "integration",  # the session's PostgreSQL + Airflow schema
    "migrated_database": "integration",  # a copy of that schema in the same cluster
    "endpoint": "integration",  # tests/local_aws/conftest.py: an endpoint per module
    "api_server": "integration",  # tests/plugins: a real `airflow api-server`
    "browser": "browser",  # tests/plugins/test_browser.py: chromium
}

# Programs a fast test must not start: the guard stands in for each (name -> what it is, for the message).
GUARDED_PROGRAMS = {
    "java": "a JVM (PyFlink)",
    "chromium": "chromium",
    "chromium-browser": "chromium",
    "pg_ctl": "PostgreSQL",
    "initdb": "PostgreSQL",
    "postgres": "PostgreSQL",
}
# Child processes of the pytest process that are servers (argv fragment -> what it is).
GUARDED_ARGV = {
    "localdev.aws.moto_server": "the local AWS endpoint (moto)",
    "localdev.aws.gateway": "the local AWS endpoint (companion)",
    "api-server": "an Airflow API server",
}


class FastSetViolation(RuntimeError):
    """A test in the fast set started something the fast set promises not to start."""


def slow_markers(fixturenames: Iterable[str]) -> set[str]:
    """The markers a test gets from the fixtures it uses (directly or through other fixtures)."""
    return {SLOW_FIXTURES[name] for name in fixturenames if name in SLOW_FIXTURES}


def _script(path: Path, what: str, log: Path) -> None:
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$PYTEST_CURRENT_TEST|{what}|$0" >> "{log}"\n'
        f'echo "fast test set: refused to start {what} ($0); mark the test integration/jvm/browser" >&2\n'
        "exit 97\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def install(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """Put the guard programs in a new directory and point ``JAVA_HOME``, ``PATH`` and ``CLICKSTREAM_PG_BIN`` at
    them (in ``environ``, which children inherit); returns the log the guards append to, in that directory.

    The directory is world-readable and the log world-writable: PostgreSQL runs as ``nobody`` when tests run as
    root, and its refusal must be recorded too.
    """
    root = Path(tempfile.mkdtemp(prefix="clickstream-fast-guard-"))
    root.chmod(0o755)
    bin_dir = root / "bin"
    bin_dir.mkdir(mode=0o755)
    log = root / "violations.log"
    log.touch()
    log.chmod(0o666)
    for name, what in GUARDED_PROGRAMS.items():
        _script(bin_dir / name, what, log)
    environ["JAVA_HOME"] = str(root)
    environ["CLICKSTREAM_PG_BIN"] = str(bin_dir)
    environ["PATH"] = os.pathsep.join([str(bin_dir), environ.get("PATH", "")])
    return log


def guarded_popen_init(log: Path, original=subprocess.Popen.__init__):
    """A ``Popen.__init__`` that refuses to start the local endpoint's or Airflow's servers (recorded in ``log``)."""

    def init(self, args, *rest, **kwargs):
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
        for fragment, what in GUARDED_ARGV.items():
            if fragment in argv:
                record(log, what, " ".join(argv))
                raise FastSetViolation(f"fast test set: refused to start {what}: {' '.join(argv)}")
        original(self, args, *rest, **kwargs)

    return init


def record(log: Path, what: str, detail: str) -> None:
    with log.open("a") as out:
        out.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '')}|{what}|{detail}\n")


def violations(log: Path, since: int) -> list[str]:
    """Lines the guards wrote after byte ``since``, as "what (program)"."""
    with log.open() as lines:
        lines.seek(since)
        found = [line.rstrip("\n").split("|", 2) for line in lines if line.strip()]
    return [f"{parts[1]} ({parts[2]})" for parts in found if len(parts) == 3]
