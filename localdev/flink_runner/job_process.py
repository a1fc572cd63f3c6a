"""The runner process: runs the job in PyFlink (its own JVM), reports status and carries out control requests.

Started as ``python -m localdev.flink_runner --job-dir <dir>`` by :mod:`.control`. The job is submitted through
the Managed Flink entry point's own code path (:func:`include.flink_app.main.run`). PyFlink 2.3's Python
``stop_with_savepoint`` wrapper is broken, so the Java JobClient is called through py4j; a savepoint that fails
leaves the job running, as Flink does, and this process goes on feeding and watching it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

from localdev.flink_runner.feeder import SpoolFeeder
from localdev.flink_runner.job_dir import (
    CANCELED,
    FAILED,
    FINISHED,
    RUNNING,
    STARTING,
    STOPPED,
    read_json,
    write_json,
)


def _java_failure(exc: BaseException, depth: int = 1) -> str:
    """The root cause of a Py4J/Java exception as 'Class: message' (plus the Python text if not Java).

    ``depth`` > 1 also gives the causes above the root (``...; caused by <root>``).
    """
    java_exc = getattr(exc, "java_exception", None)
    if java_exc is None:
        return f"{type(exc).__name__}: {exc}"
    causes = []
    current = java_exc
    seen = 0
    while current is not None and seen < 50:
        causes.append(f"{current.getClass().getName()}: {current.getMessage()}")
        current = current.getCause()
        seen += 1
    return "; caused by ".join(causes[-depth:]) if causes else str(exc).splitlines()[0]


class JobProcess:
    """One job in this process: submit it, write ``status.json`` on every change, obey ``control.json``."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.spec = json.loads((job_dir / "spec.json").read_text())
        self.timings: dict[str, float] = {"process_start": time.time()}
        self.state = STARTING
        self.fields: dict[str, Any] = {}
        self.feeder: SpoolFeeder | None = None
        self.terminate = threading.Event()

    def write(self, state: str, **fields: Any) -> None:
        self.state = state
        self.fields.update(fields)
        data = {"state": state, "timings": self.timings, "pid": os.getpid(), **self.fields}
        if self.feeder is not None and self.feeder.error:
            data["feeder_error"] = self.feeder.error
        write_json(self.job_dir / "status.json", data)

    def _start_feeder(self) -> None:
        if self.spec["mode"] == "continuous":
            self.feeder = SpoolFeeder(Path(self.spec["spool_dir"]), self.spec["feed_interval_ms"] / 1000)
            self.feeder.start()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.terminate.set())
        self.write(STARTING)
        self._start_feeder()
        try:
            from pyflink.java_gateway import get_gateway

            # The JVM's PID, so that whoever cleans up after a crash can find (and check) it; see kill_job.
            self.write(STARTING, jvm_pid=int(get_gateway().jvm.java.lang.ProcessHandle.current().pid()))
            self.timings["jvm_ready"] = time.time()
            from include.flink_app.main import run  # the Managed Flink entry point's own code path

            result = run(self.spec["properties"], self.spec["runtime_config"], self.timings)
            client = result.get_job_client()._j_job_client
        except Exception as exc:  # planning or submission failed: report, never hang
            traceback.print_exc()
            self.write(FAILED, failure=_java_failure(exc))
            return 1
        job_id = client.getJobID().toString()
        self.probe = FirstRecordProbe(client, job_id)
        self.write(RUNNING, job_id=job_id, rest_url=self.probe.rest_url)
        return self.watch(client)

    def watch(self, client: Any) -> int:
        result_future = client.getJobExecutionResult()
        while True:
            if "first_record" not in self.timings and self.probe.first_record_seen():
                self.timings["first_record"] = time.time()
                self.write(self.state)
            if result_future.isDone():
                # Checked first: a finished per-job MiniCluster shuts down and then refuses status calls.
                self.timings["ended"] = time.time()
                try:
                    result_future.get()
                except Exception as exc:
                    traceback.print_exc()
                    failure = _java_failure(exc)
                    if "CancellationException" in failure or "JobCancellationException" in failure:
                        self.write(CANCELED)
                        return 0
                    self.write(FAILED, failure=failure)
                    return 1
                self.write(FINISHED)
                return 0
            try:
                flink_state = client.getJobStatus().get().toString()
            except Exception:  # the cluster is shutting down: the result future tells on the next turn
                flink_state = None
            if flink_state is not None and flink_state != self.fields.get("flink_state"):
                self.write(self.state, flink_state=flink_state)
            control = read_json(self.job_dir / "control.json")
            if control or self.terminate.is_set():
                code = self.control(client, control or {"action": "cancel"})
                if code is not None:
                    return code
            time.sleep(0.2)

    def control(self, client: Any, request: dict[str, Any]) -> int | None:
        """Carry out a control request; the exit code, or None when the job runs on (a failed savepoint)."""
        action = request.get("action")
        if self.feeder is not None:
            self.feeder.stopped.set()
        try:
            if action == "stop":
                from pyflink.java_gateway import get_gateway

                format_type = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
                # Flink creates the directory itself; a target it cannot write fails the savepoint, not the job.
                target = Path(request["savepoint_dir"]).resolve().as_uri()
                try:
                    path = self._with_retries(
                        lambda: client.stopWithSavepoint(False, target, format_type).get()
                    )
                except Exception as exc:
                    if not self._runs_on(client):
                        raise
                    return self._savepoint_failed(request, exc)
                self.timings["ended"] = time.time()
                self.write(STOPPED, savepoint=str(path))
                return 0
            client.cancel().get()
            self.timings["ended"] = time.time()
            self.write(CANCELED)
            return 0
        except Exception as exc:
            traceback.print_exc()
            self.write(FAILED, failure=f"{action} failed: {_java_failure(exc)}")
            return 1

    @staticmethod
    def _runs_on(client: Any) -> bool:
        """After a failed stop with savepoint: is the job still running (Flink resumes it), not failing over?"""
        time.sleep(0.5)
        try:
            return (
                not client.getJobExecutionResult().isDone()
                and client.getJobStatus().get().toString() == "RUNNING"
            )
        except Exception:
            return False

    def _savepoint_failed(self, request: dict[str, Any], exc: BaseException) -> None:
        """The savepoint failed and the job runs on: say so (for stop_job), feed the spool again, keep watching."""
        traceback.print_exc()
        (self.job_dir / "control.json").unlink(missing_ok=True)
        if self.feeder is not None:
            self.feeder.join(timeout=30)
        self._start_feeder()
        failure = f"stop with savepoint failed: {_java_failure(exc, depth=2)}"
        self.write(RUNNING, control_error={"id": request.get("id"), "action": "stop", "failure": failure})
        return None

    @staticmethod
    def _with_retries(call: Any, attempts: int = 20, pause_s: float = 1.0) -> Any:
        """A savepoint is refused while tasks are still starting; retry that for a while before giving up.

        Any other failure (the target cannot be written, say) is final at once: retrying cannot help.
        """
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Exception as exc:
                if attempt == attempts or not _tasks_not_running(exc):
                    raise
                traceback.print_exc()
                time.sleep(pause_s)
        raise AssertionError("unreachable")


class FirstRecordProbe:
    """When the job's source first emitted a record, from the mini-cluster's REST API (start-up is measured to it).

    The local job client holds its mini-cluster, whose REST address is read by reflection (the port is random);
    a probe that cannot find it, or any REST error, just never reports (the job is not disturbed).
    """

    def __init__(self, client: Any, job_id: str) -> None:
        self.job_id = job_id
        self.rest_url: str | None = None
        self.source_vertex: str | None = None
        try:
            field = client.getClass().getDeclaredField("miniCluster")
            field.setAccessible(True)
            self.rest_url = str(field.get(client).getRestAddress().get()).rstrip("/")
        except Exception:  # another kind of client (a remote cluster): no probe
            self.rest_url = None

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.rest_url}{path}", timeout=1) as response:
            return json.loads(response.read())

    def first_record_seen(self) -> bool:
        if self.rest_url is None:
            return False
        try:
            if self.source_vertex is None:
                vertices = self._get(f"/jobs/{self.job_id}")["vertices"]
                self.source_vertex = next(v["id"] for v in vertices if v["name"].startswith("Source:"))
            metrics = self._get(
                f"/jobs/{self.job_id}/vertices/{self.source_vertex}/metrics?get=0.numRecordsOut"
            )
        except Exception:  # not up yet, or shutting down
            return False
        return any(float(m.get("value", 0)) > 0 for m in metrics)


def _tasks_not_running(exc: BaseException) -> bool:
    """Whether a savepoint failed because not all tasks were running yet (transient right after a start)."""
    text = [str(exc)]
    current = getattr(exc, "java_exception", None)
    for _ in range(50):
        if current is None:
            break
        text.append(f"{current.getClass().getName()}: {current.getMessage()}")
        current = current.getCause()
    joined = " ".join(text).lower()
    return any(
        sign in joined
        for sign in (
            "not all required tasks are currently running",  # NOT_ALL_REQUIRED_TASKS_RUNNING
            "not_all_required_tasks",
            "maximum number of queued checkpoint requests exceeded",  # TOO_MANY_CHECKPOINT_REQUESTS
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one sessions job (started by flink_runner.start_job).")
    parser.add_argument("--job-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    return JobProcess(args.job_dir).run()
