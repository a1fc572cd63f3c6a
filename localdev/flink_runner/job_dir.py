"""A job's directory: its handle, its status as the runner process reports it, and the files that carry both.

Control and status go through JSON files in the job directory (``handle.json``, ``status.json``,
``control.json``, replaced atomically), so a handle can be re-opened by another process (:meth:`JobHandle.load`).
A dead runner process reads as FAILED with its log tail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STARTING, RUNNING, FINISHED, FAILED, CANCELED, STOPPED = (
    "STARTING",
    "RUNNING",
    "FINISHED",
    "FAILED",
    "CANCELED",
    "STOPPED",
)
TERMINAL_STATES = frozenset({FINISHED, FAILED, CANCELED, STOPPED})

#: JVM system property that marks a job's JVM (see :func:`localdev.flink_runner.processes.kill_job`).
JVM_MARKER_PROPERTY = "clickstream.flink.job"


class FlinkJobError(RuntimeError):
    """The job failed, or did not reach the expected state in time; the message carries the reason."""


class SavepointError(FlinkJobError):
    """A stop with savepoint failed and the job runs on (as Flink leaves it): stop it again, or cancel it."""


@dataclass
class JobHandle:
    """A started job: its runner process and the directory holding spec, status, control and log files."""

    job_dir: Path
    pid: int
    mode: str
    output_dir: Path
    checkpoint_dir: Path
    spool_dir: Path | None = None
    #: ``-D<JVM_MARKER_PROPERTY>=<jvm_marker>`` is on the command line of the job's JVM.
    jvm_marker: str | None = None
    #: The runner process, in the process that started it (None in a handle re-opened with :meth:`load`).
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def log_path(self) -> Path:
        return self.job_dir / "runner.log"

    @classmethod
    def load(cls, job_dir: str | os.PathLike) -> JobHandle:
        """Re-open a handle from its job directory (e.g. in another process)."""
        data = json.loads((Path(job_dir) / "handle.json").read_text())
        return cls(
            job_dir=Path(data["job_dir"]),
            pid=data["pid"],
            mode=data["mode"],
            output_dir=Path(data["output_dir"]),
            checkpoint_dir=Path(data["checkpoint_dir"]),
            spool_dir=Path(data["spool_dir"]) if data.get("spool_dir") else None,
            jvm_marker=data.get("jvm_marker"),
        )

    def save(self) -> None:
        """Write ``handle.json`` (everything but the Popen), for :meth:`load`."""
        data = {
            "job_dir": str(self.job_dir),
            "pid": self.pid,
            "mode": self.mode,
            "output_dir": str(self.output_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "spool_dir": str(self.spool_dir) if self.spool_dir else None,
            "jvm_marker": self.jvm_marker,
        }
        write_json(self.job_dir / "handle.json", data)


@dataclass(frozen=True)
class JobStatus:
    """What the runner reported last, corrected by whether its process is still alive."""

    state: str
    job_id: str | None = None
    failure: str | None = None
    savepoint: str | None = None
    alive: bool = False
    returncode: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    feeder_error: str | None = None
    #: The runner's JVM (PyFlink's gateway process), once started.
    jvm_pid: int | None = None
    #: The last control request that failed while the job ran on: ``{"id", "action", "failure"}``.
    control_error: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # never partial (atomic replace); treat as absent rather than crash
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no runner log)"
    text = [line for line in text if "GCSFileSystem" not in line]
    return "\n".join(text[-lines:])


def job_status(handle: JobHandle) -> JobStatus:
    """The job's state (STARTING, RUNNING, FINISHED, FAILED, CANCELED, STOPPED) and failure reason, if any."""
    data = read_json(handle.job_dir / "status.json") or {"state": STARTING}
    returncode = None
    if handle.process is not None:
        returncode = handle.process.poll()
        alive = returncode is None
    else:
        alive = pid_alive(handle.pid)
    state = data.get("state", STARTING)
    failure = data.get("failure")
    if not alive and state not in TERMINAL_STATES:
        state = FAILED
        failure = (
            f"the runner process {handle.pid} exited (code {returncode}) while the job was {data.get('state')}; "
            f"log tail:\n{log_tail(handle.log_path)}"
        )
    return JobStatus(
        state=state,
        job_id=data.get("job_id"),
        failure=failure,
        savepoint=data.get("savepoint"),
        alive=alive,
        returncode=returncode,
        timings=data.get("timings", {}),
        feeder_error=data.get("feeder_error"),
        jvm_pid=data.get("jvm_pid"),
        control_error=data.get("control_error"),
    )


def wait_for_state(handle: JobHandle, states: Iterable[str], timeout_s: float) -> JobStatus:
    """Poll until the job is in one of ``states`` or terminal; raise FlinkJobError on timeout."""
    wanted = set(states)
    deadline = time.monotonic() + timeout_s
    while True:
        status = job_status(handle)
        if status.state in wanted or status.terminal:
            return status
        if time.monotonic() > deadline:
            raise FlinkJobError(
                f"job in {handle.job_dir} did not reach {sorted(wanted)} within {timeout_s:.0f} s "
                f"(state {status.state}); log tail:\n{log_tail(handle.log_path)}"
            )
        time.sleep(0.2)


def describe(handle: JobHandle) -> dict[str, Any]:
    """The handle and its status as plain data (for the kinesisanalyticsv2 emulation's Describe calls)."""
    status = job_status(handle)
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(status).items()}
    data.update(job_dir=str(handle.job_dir), pid=handle.pid, mode=handle.mode)
    return data


def remove_job_dir(handle: JobHandle) -> None:
    """Delete the job directory of a terminated job (spec, status, log)."""
    if job_status(handle).alive:
        raise FlinkJobError(f"job in {handle.job_dir} is still running; stop it first")
    shutil.rmtree(handle.job_dir, ignore_errors=True)
