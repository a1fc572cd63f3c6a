"""A tiny stand-in for the Flink job, for the kinesisanalyticsv2 API tests that need no JVM (no tests here).

:class:`FakeJobRunner` implements :class:`localdev.aws.flink.jobs.JobRunner`; the companion loads it when
``LOCAL_AWS_FLINK_JOBS=tests.local_aws.test_kinesisanalytics_support:FakeJobRunner``. Its job process behaves
like the sessions job where the emulation cares:

* it lists the spool directory every 0.2 s and, like Flink's split assigner, reads the files found in one
  listing in *reverse* name order — so if the bridge ever published two files at once, the recorded read order
  (``reads.jsonl``) would show it;
* it copies each record to ``<output>/echo/dt=.../`` through hidden in-progress part files that a "checkpoint"
  (every 0.3 s, and at a savepoint) renames to committed ``part-*`` files, as Flink's file sink does;
* a savepoint stores the set of files read; a job started from it skips them; one that cannot be written (its
  directory cannot be created) fails the stop or snapshot and the job runs on, as Flink's does;
* a record containing ``CRASH`` makes the job fail with that line in its reason;
* ``flink.config.0`` ``fake.job-graph`` names the job graph (default ``1``; a changed SQL query is a new one): a
  savepoint records it, and a job of another graph started from it fails with Flink 2.3's own message for a
  snapshot whose operators the new program does not have;
* ``flink.config.0`` ``fake.startup-delay-ms`` delays RUNNING, like a slow JVM start, and
  ``fake.savepoint-delay-ms`` makes every savepoint take that long.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from localdev.aws.endpoint import PROJECT_ROOT
from localdev.aws.flink.jobs import (
    FAILED,
    FINISHED,
    GONE,
    RUNNING,
    STARTING,
    JobRequest,
    JobStatus,
    RunnerError,
)
from localdev.processes import cmdline

MODULE = "tests.local_aws.test_kinesisanalytics_support"
LIST_INTERVAL_S = 0.2
COMMIT_INTERVAL_S = 0.3


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


class FakeJobRunner:
    """Runs :func:`job_main` in a subprocess per job; the handle is ``{"pid", "work_dir"}``."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}

    def start(self, request: JobRequest) -> dict:
        work = request.work_dir
        work.mkdir(parents=True, exist_ok=True)
        _write_json(
            work / "request.json",
            {"groups": request.groups, "restore_savepoint": request.restore_savepoint},
        )
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        with open(work / "job.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(work)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children[proc.pid] = proc
        return {"pid": proc.pid, "work_dir": str(work)}

    def _alive(self, handle: dict) -> bool:
        proc = self.children.get(handle.get("pid", -1))
        if proc is not None:
            return proc.poll() is None
        cmd = cmdline(int(handle.get("pid", -1)))
        return bool(cmd) and handle.get("work_dir") in cmd

    def status(self, handle: dict) -> JobStatus:
        if not handle:
            return JobStatus(GONE, "no job")
        status_path = Path(handle["work_dir"]) / "status.json"
        state = json.loads(status_path.read_text()) if status_path.exists() else {"state": STARTING}
        if state["state"] in (FAILED, FINISHED):
            return JobStatus(state["state"], state.get("reason"))
        if not self._alive(handle):
            return JobStatus(GONE, "the job process exited")
        return JobStatus(state["state"], state.get("reason"))

    def _control(self, handle: dict, action: str, savepoint_dir: Path | None, timeout: float) -> str | None:
        work = Path(handle["work_dir"])
        request_id = uuid.uuid4().hex
        _write_json(
            work / "control.json",
            {
                "id": request_id,
                "action": action,
                "savepoint_dir": str(savepoint_dir) if savepoint_dir else None,
            },
        )
        deadline = time.monotonic() + timeout
        result_path = work / f"result-{request_id}.json"
        while time.monotonic() < deadline:
            if result_path.exists():
                result = json.loads(result_path.read_text())
                if result.get("error"):
                    raise RunnerError(f"{action} failed, the job runs on: {result['error']}")
                return result.get("savepoint")
            if not self._alive(handle):
                raise RunnerError(f"the job exited before it answered {action}")
            time.sleep(0.05)
        raise RunnerError(f"the job did not answer {action} within {timeout}s")

    def stop(self, handle: dict, savepoint_dir: Path | None, timeout: float) -> str | None:
        path = self._control(handle, "stop", savepoint_dir, timeout)
        self._wait_exit(handle, timeout)
        return path

    def savepoint(self, handle: dict, savepoint_dir: Path, timeout: float) -> tuple[str, dict]:
        path = self._control(handle, "savepoint", savepoint_dir, timeout)
        assert path
        return path, handle

    def ready(self, handle: dict) -> bool:
        return self.status(handle).state == RUNNING

    def kill(self, handle: dict) -> None:
        if self._alive(handle):
            os.kill(int(handle["pid"]), signal.SIGKILL)
        self._wait_exit(handle, 10)

    def _wait_exit(self, handle: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._alive(handle) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc = self.children.pop(int(handle.get("pid", -1)), None)
        if proc is not None:
            proc.wait(5)


# -- the job process ------------------------------------------------------------------------------------------


def incompatible_savepoint(path: str) -> str:
    """What Flink 2.3 reports (Checkpoints.loadAndValidateCheckpoint) when the new job graph lacks an operator."""
    return (
        "java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint "
        f"file:{path}. Cannot map checkpoint/savepoint state for operator 0a448493b4782967b150582570326227 to the "
        "new program, because the operator is not available in the new program. If you want to allow to skip "
        "this, you can set the --allowNonRestoredState option on the CLI."
    )


def job_main(work: Path) -> int:
    request = json.loads((work / "request.json").read_text())
    spool = Path(request["groups"]["consumer.config.0"]["path"])
    output = Path(request["groups"]["sink.config.0"]["output.path"]) / "echo"
    processed: set[str] = set()
    status = work / "status.json"
    graph = (request["groups"].get("flink.config.0") or {}).get("fake.job-graph", "1")
    if request.get("restore_savepoint"):
        metadata = json.loads((Path(request["restore_savepoint"]) / "_metadata").read_text())
        if metadata.get("graph", "1") != graph:
            _write_json(
                status, {"state": FAILED, "reason": incompatible_savepoint(request["restore_savepoint"])}
            )
            return 1
        processed = set(metadata["processed"])
    reads = work / "reads.jsonl"
    pending: list[Path] = []
    handled_controls: set[str] = set()
    last_commit = time.monotonic()
    delay_ms = int((request["groups"].get("flink.config.0") or {}).get("fake.startup-delay-ms", "0"))
    time.sleep(delay_ms / 1000)  # a slow JVM start
    savepoint_delay_ms = int(
        (request["groups"].get("flink.config.0") or {}).get("fake.savepoint-delay-ms", "0")
    )
    _write_json(status, {"state": RUNNING})

    def commit() -> None:
        for path in pending:
            os.replace(path, path.with_name(path.name[1:].split(".inprogress")[0]))
        pending.clear()

    def savepoint(directory: str) -> str:
        time.sleep(savepoint_delay_ms / 1000)
        commit()
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        _write_json(target / "_metadata", {"processed": sorted(processed), "graph": graph})
        return str(target)

    while True:
        control_path = work / "control.json"
        if control_path.exists():
            control = json.loads(control_path.read_text())
            if control["id"] not in handled_controls:
                handled_controls.add(control["id"])
                try:
                    path = savepoint(control["savepoint_dir"]) if control.get("savepoint_dir") else None
                except OSError as exc:  # like Flink: the savepoint fails, the job goes on
                    _write_json(
                        work / f"result-{control['id']}.json", {"error": f"{type(exc).__name__}: {exc}"}
                    )
                    continue
                if control["action"] == "stop":
                    if path is None:
                        commit()
                    _write_json(status, {"state": FINISHED, "reason": "stopped"})
                    _write_json(work / f"result-{control['id']}.json", {"savepoint": path})
                    return 0
                _write_json(work / f"result-{control['id']}.json", {"savepoint": path})
        found = sorted((p for p in spool.glob("*.jsonl") if p.name not in processed), reverse=True)
        for path in found:
            lines = path.read_bytes().splitlines()
            with open(reads, "a") as fh:
                fh.write(json.dumps({"file": path.name, "records": len(lines)}) + "\n")
            for line in lines:
                if b"CRASH" in line:
                    _write_json(
                        status, {"state": FAILED, "reason": f"poison record {line.decode(errors='replace')}"}
                    )
                    return 1
            if lines:
                part_dir = output / "dt=2026-01-01"
                part_dir.mkdir(parents=True, exist_ok=True)
                part = part_dir / f".part-{uuid.uuid4().hex}-0-0.inprogress.{uuid.uuid4().hex[:8]}"
                part.write_bytes(b"\n".join(lines) + b"\n")
                pending.append(part)
            processed.add(path.name)
        if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
            commit()
            last_commit = time.monotonic()
        time.sleep(LIST_INTERVAL_S)


if __name__ == "__main__":
    sys.exit(job_main(Path(sys.argv[1])))
