"""How the emulation runs a Flink job: a small interface, and its implementation on the sessions job runner.

The emulation only needs to start a job from property groups (optionally from a savepoint), read its status,
stop it with or without a savepoint, and find it again after a companion restart. :class:`SessionsJobRunner`
does that with :mod:`localdev.flink_runner` (PyFlink in a separate process, one JVM per job; control
and status through files in the job directory, so a handle survives a companion restart).
``LOCAL_AWS_FLINK_JOBS=module:Class`` swaps in another implementation (the API tests use a tiny fake job, so
that they need no JVM).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

RUNNER_ENV = "LOCAL_AWS_FLINK_JOBS"

#: Job states reported by a runner.
STARTING, RUNNING, FAILED, FINISHED, CANCELED, GONE = (
    "STARTING",
    "RUNNING",
    "FAILED",
    "FINISHED",
    "CANCELED",
    "GONE",
)
TERMINAL = (FAILED, FINISHED, CANCELED, GONE)

GROUP_CONSUMER = "consumer.config.0"
GROUP_SINK = "sink.config.0"
GROUP_CONTRACT = "contract.config.0"
GROUP_FLINK = "flink.config.0"
#: The request of a run, kept in its work directory (a snapshot restarts the job from it).
REQUEST_FILE = "request.json"


class RunnerError(RuntimeError):
    """The runner could not do what was asked; the message is shown to the user as the failure reason."""


@dataclass
class JobRequest:
    """One local run of an application."""

    #: ``kinesisanalytics/<region>/<name>``: names the job in logs.
    name: str
    #: Property groups rewritten for the local run: ``consumer.config.0`` reads ``source_dir`` with the
    #: filesystem connector, ``sink.config.0``'s ``output.path`` is ``output_dir``.
    groups: dict[str, dict[str, str]]
    #: The runner's spool directory; the job's source reads its ``flink/`` sub-directory.
    spool_dir: Path
    output_dir: Path
    #: Private directory of this run: checkpoints, the job's files and log.
    work_dir: Path
    checkpoint_interval_ms: int = 60_000
    monitor_interval_ms: int = 500
    restore_savepoint: str | None = None
    allow_non_restored_state: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobStatus:
    state: str
    reason: str | None = None


class JobRunner(Protocol):
    """What :mod:`.runtime` needs from a job runner. Handles are JSON-able dicts (persisted for re-adoption)."""

    def start(self, request: JobRequest) -> dict: ...

    def status(self, handle: dict) -> JobStatus: ...

    def stop(self, handle: dict, savepoint_dir: Path | None, timeout: float) -> str | None:
        """Stop the job; with ``savepoint_dir`` take a savepoint first and return its path.

        RunnerError if it cannot; when the savepoint failed but the job runs on (as Flink leaves it), the
        handle stays valid and :meth:`status` says RUNNING (the caller may then keep the run going).
        """
        ...

    def savepoint(self, handle: dict, savepoint_dir: Path, timeout: float) -> tuple[str, dict]:
        """A savepoint of a running job, which runs on; returns its path and the (possibly new) handle."""
        ...

    def ready(self, handle: dict) -> bool:
        """True once the running job can take a savepoint (all its tasks run)."""
        ...

    def kill(self, handle: dict) -> None: ...


def load_runner() -> JobRunner:
    """The runner named by ``LOCAL_AWS_FLINK_JOBS``, else :class:`SessionsJobRunner`."""
    target = os.environ.get(RUNNER_ENV, "").strip()
    if not target:
        return SessionsJobRunner()
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise RunnerError(f"{RUNNER_ENV}={target!r} does not name an importable class: {exc}") from None
    return cls()


_DURATION = re.compile(
    r"^\s*(\d+)\s*(ms|milli|millis|s|sec|secs|second|seconds|min|mins|minute|minutes|h|hour|hours)?\s*$"
)
_UNIT_MS = {
    None: 1,
    "ms": 1,
    "milli": 1,
    "millis": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
}


def duration_ms(value: str, where: str) -> int:
    """Milliseconds of a Flink duration like ``1 min``, ``2 s`` or ``500 ms``; RunnerError naming ``where``."""
    match = _DURATION.match(str(value))
    if not match:
        raise RunnerError(f"{where} must be a duration like '1 min', '10 s' or '500 ms', got {value!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class SessionsJobRunner:
    """:class:`JobRunner` on :mod:`localdev.flink_runner` (imported on first use).

    The runner builds the job from a :class:`~include.sessions.contract.SessionContract`, the sink's rollover
    interval and the checkpoint interval, so the application's groups map onto ``start_job``'s arguments:
    ``contract.config.0`` → contract, ``sink.config.0`` ``rollover.interval`` → ``rollover_interval_ms``
    (``check.interval`` is derived by the runner), CheckpointConfiguration → ``checkpoint_interval_ms``,
    ``flink.config.0`` → ``flink_config`` (applied to the job's configuration, as the AWS entry point does).
    Keys of ``flink.config.0`` that a local run cannot honour or that would break its guarantees (parallelism
    above 1, checkpoint/savepoint/restore locations, restart strategy, addresses and ports, ...; see
    :func:`localdev.flink_runner.check_flink_config`) fail the start with an error naming the key and
    its value; the keys the session contract owns are refused earlier, when the job is planned.
    AllowNonRestoredState → ``allow_non_restored_state`` (Flink's ``execution.state-recovery.ignore-unclaimed-state``).
    """

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}  # job_dir → JobHandle holding our Popen (status without zombies)

    @staticmethod
    def _module() -> Any:
        try:
            return importlib.import_module("localdev.flink_runner")
        except ModuleNotFoundError as exc:
            if exc.name == "localdev.flink_runner":
                raise RunnerError(
                    "the local Flink job runner localdev.flink_runner is not available, so the "
                    "application cannot run locally"
                ) from None
            raise

    def _handle(self, handle: dict) -> Any:
        job_dir = handle["job_dir"]
        cached = self._handles.get(job_dir)
        if cached is None:
            cached = self._module().JobHandle.load(job_dir)
            self._handles[job_dir] = cached
        return cached

    def start(self, request: JobRequest) -> dict:
        fr = self._module()
        from include.sessions.contract import ContractError, SessionContract

        groups = request.groups
        try:
            contract = SessionContract.from_properties(groups.get(GROUP_CONTRACT))
        except ContractError as exc:
            raise RunnerError(f"{GROUP_CONTRACT}: {exc}") from None
        rollover = duration_ms(
            groups[GROUP_SINK].get("rollover.interval", "1 min"), f"{GROUP_SINK} rollover.interval"
        )
        try:
            handle = fr.start_job(
                request.spool_dir,
                request.output_dir,
                contract,
                request.work_dir / "checkpoints",
                request.restore_savepoint,
                allow_non_restored_state=request.allow_non_restored_state,
                job_dir=request.work_dir / "job",
                checkpoint_interval_ms=request.checkpoint_interval_ms,
                monitor_interval_ms=request.monitor_interval_ms,
                rollover_interval_ms=rollover,
                wait_running_s=None,
                flink_config=groups.get(GROUP_FLINK) or None,
            )
        except (fr.FlinkJobError, ValueError, OSError) as exc:
            raise RunnerError(str(exc)) from None
        self._handles[str(handle.job_dir)] = handle
        record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request).items()}
        (request.work_dir / REQUEST_FILE).write_text(json.dumps(record, indent=1))
        return {
            "job_dir": str(handle.job_dir),
            "pid": handle.pid,
            "checkpoint_dir": str(handle.checkpoint_dir),
        }

    def status(self, handle: dict) -> JobStatus:
        fr = self._module()
        if not handle or not Path(handle.get("job_dir", "")).joinpath("handle.json").exists():
            return JobStatus(GONE, "the job's directory is gone")
        status = fr.job_status(self._handle(handle))
        state = {fr.STOPPED: FINISHED}.get(status.state, status.state)
        reason = status.failure
        if status.feeder_error and state == RUNNING:
            reason = status.feeder_error
        return JobStatus(state, reason)

    def ready(self, handle: dict) -> bool:
        """A checkpoint of this job has completed (``<checkpoint_dir>/<job id>/chk-*/_metadata``).

        The runner reports RUNNING once the job is submitted; a savepoint needs every task running, and a
        completed checkpoint is the sign of that which the runner's files show.
        """
        try:
            status = json.loads((Path(handle["job_dir"]) / "status.json").read_text())
        except (FileNotFoundError, ValueError):  # not written yet (the runner process is starting)
            return False
        job_id = status.get("job_id")
        if status.get("state") != "RUNNING" or not job_id:
            return False
        return any(Path(handle["checkpoint_dir"], job_id).glob("chk-*/_metadata"))

    def stop(self, handle: dict, savepoint_dir: Path | None, timeout: float) -> str | None:
        """Stop the job (see :class:`JobRunner`); a failed savepoint leaves it running (and its handle valid)."""
        fr = self._module()
        job = self._handle(handle)
        try:
            path = fr.stop_job(
                job, with_savepoint=savepoint_dir is not None, savepoint_dir=savepoint_dir, timeout_s=timeout
            )
        except fr.SavepointError as exc:  # Flink resumed the job: keep the handle (and its Popen) cached
            raise RunnerError(str(exc)) from None
        except fr.FlinkJobError as exc:
            self._handles.pop(handle["job_dir"], None)
            raise RunnerError(str(exc)) from None
        self._handles.pop(handle["job_dir"], None)
        return path

    def savepoint(self, handle: dict, savepoint_dir: Path, timeout: float) -> tuple[str, dict]:
        """The runner cannot savepoint a job that runs on: stop with a savepoint, then start again from it."""
        saved = json.loads((Path(handle["job_dir"]).parent / REQUEST_FILE).read_text())
        path = self.stop(handle, savepoint_dir, timeout)
        if not path:
            raise RunnerError("the job stopped without a savepoint")
        work = Path(saved["work_dir"])
        request = JobRequest(
            **{
                **saved,
                "spool_dir": Path(saved["spool_dir"]),
                "output_dir": Path(saved["output_dir"]),
                "work_dir": work.with_name(f"{work.name}-{savepoint_dir.name}"),
                "restore_savepoint": path,
            }
        )
        return path, self.start(request)

    def kill(self, handle: dict) -> None:
        """Kill the job's process group at once (a forced stop or a failed run: nothing is committed)."""
        job = self._handles.pop(handle["job_dir"], None)
        pid = job.pid if job is not None else int(handle["pid"])
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process = getattr(job, "process", None)
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


#: Where an endpoint's state directory keeps the job directories of the sessions runner (see :mod:`.runtime`).
JOB_DIRS_GLOB = "services/kinesisanalytics/apps/*/runs/*/job"


def kill_orphaned_jobs(state_dir: Path) -> list[int]:
    """Kill the Flink jobs left running under an endpoint's ``state_dir``; the PIDs killed (``down``, ``up``).

    A companion killed with kill -9 leaves its jobs running (each in its own session, so that a restarted
    companion can re-adopt them). Once the endpoint is going away, nothing will: each job directory's recorded
    runner and JVM are killed, only after their command lines prove they still are that job's
    (:func:`localdev.flink_runner.kill_job`).
    """
    try:
        fr = importlib.import_module("localdev.flink_runner")
    except ModuleNotFoundError:
        return []
    killed: list[int] = []
    for job_dir in sorted(Path(state_dir).glob(JOB_DIRS_GLOB)):
        if (job_dir / "handle.json").is_file():
            killed.extend(fr.kill_job(job_dir))
    return killed
