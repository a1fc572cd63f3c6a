"""Starting, stopping and waiting for a job: one runner process (and JVM) per job, driven through its directory.

Every wait has a timeout; a job that does not stop in time is killed with its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from include.flink_app import flink_job
from include.sessions.contract import SessionContract
from localdev.flink_runner.config import (
    check_flink_config,
    jvm_options,
    local_sink_properties,
    runtime_config,
)
from localdev.flink_runner.feeder import spool_inbox, spool_source
from localdev.flink_runner.job_dir import (
    FAILED,
    JVM_MARKER_PROPERTY,
    RUNNING,
    TERMINAL_STATES,
    FlinkJobError,
    JobHandle,
    JobStatus,
    SavepointError,
    job_status,
    log_tail,
    pid_alive,
    wait_for_state,
    write_json,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _launch(
    *,
    mode: str,
    properties: dict[str, dict[str, str]],
    runtime_config: dict[str, str],
    output_dir: Path,
    checkpoint_dir: Path,
    spool_dir: Path | None,
    feed_interval_ms: int,
    job_dir: str | os.PathLike | None,
    jvm_args: list[str],
) -> JobHandle:
    job_path = (Path(job_dir) if job_dir else Path(tempfile.mkdtemp(prefix="flink-job-"))).resolve()
    job_path.mkdir(parents=True, exist_ok=True)
    for stale in ("status.json", "control.json"):
        (job_path / stale).unlink(missing_ok=True)
    spec = {
        "mode": mode,
        "properties": properties,
        "runtime_config": runtime_config,
        "spool_dir": str(spool_dir) if spool_dir else None,
        "feed_interval_ms": feed_interval_ms,
    }
    write_json(job_path / "spec.json", spec)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    # PyFlink otherwise starts a gRPC "loopback" server for Python UDF workers on all interfaces ([::]:0);
    # the job has no Python UDF, so nothing needs it, and nothing may listen beyond 127.0.0.1.
    env["_python_worker_execution_mode"] = "process"
    # A mark on the JVM's command line (PyFlink passes JVM_ARGS on), so kill_job can tell it is this job's JVM.
    # The caller's JVM_ARGS come after the runner's options, so they win.
    marker = uuid.uuid4().hex
    env["JVM_ARGS"] = " ".join(
        [*jvm_args, env.get("JVM_ARGS", ""), f"-D{JVM_MARKER_PROPERTY}={marker}"]
    ).strip()
    with open(job_path / "runner.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "localdev.flink_runner", "--job-dir", str(job_path)],
            cwd=str(PROJECT_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = JobHandle(
        job_dir=job_path,
        pid=process.pid,
        mode=mode,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        spool_dir=spool_dir,
        jvm_marker=marker,
        process=process,
    )
    handle.save()
    return handle


def start_job(
    spool_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    contract: SessionContract,
    checkpoint_dir: str | os.PathLike,
    restore_savepoint: str | None = None,
    *,
    allow_non_restored_state: bool = False,
    job_dir: str | os.PathLike | None = None,
    checkpoint_interval_ms: int = 2_000,
    watermark_interval_ms: int = 200,
    monitor_interval_ms: int = 1_000,
    rollover_interval_ms: int = 2_000,
    wait_running_s: float | None = 180,
    flink_config: Mapping[str, str] | None = None,
) -> JobHandle:
    """Start the continuous job over ``spool_dir`` (write files with :func:`spool_events`).

    Outputs go to ``output_dir/{sessions,metrics,late_events,rejected_events}/dt=.../hr=.../part-*`` (files
    appear when committed by a checkpoint). With ``wait_running_s`` set, returns once the job runs and raises
    FlinkJobError (with the reason) if it fails first. ``flink_config`` is the ``flink.config.0`` property group
    (extra Flink/table configuration, as on AWS); keys a local run cannot honour raise FlinkConfigError (see
    :func:`check_flink_config`) before anything starts. ``allow_non_restored_state``: see :func:`runtime_config`.
    """
    spool = Path(spool_dir).resolve()
    output = Path(output_dir).resolve()
    checkpoints = Path(checkpoint_dir).resolve()
    spool_source(spool).mkdir(parents=True, exist_ok=True)
    spool_inbox(spool).mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    properties = {
        flink_job.GROUP_CONSUMER: {
            "connector": "filesystem",
            "path": str(spool_source(spool)),
            "source.monitor-interval": f"{monitor_interval_ms} ms",
        },
        flink_job.GROUP_SINK: local_sink_properties(output, rollover_interval_ms),
        flink_job.GROUP_CONTRACT: contract.to_properties(),
    }
    runtime = runtime_config(
        checkpoints,
        checkpoint_interval_ms,
        watermark_interval_ms,
        restore_savepoint,
        allow_non_restored_state,
    )
    if flink_config:
        properties[flink_job.GROUP_FLINK] = check_flink_config(flink_config, runtime)
    handle = _launch(
        mode="continuous",
        properties=properties,
        runtime_config=runtime,
        output_dir=output,
        checkpoint_dir=checkpoints,
        spool_dir=spool,
        # Two monitor intervals between new files: the source never discovers two files in one scan.
        feed_interval_ms=2 * monitor_interval_ms + 100,
        job_dir=job_dir,
        jvm_args=jvm_options("continuous"),
    )
    if wait_running_s:
        _await_running(handle, wait_running_s)
    return handle


def start_bounded_job(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    contract: SessionContract,
    checkpoint_dir: str | os.PathLike,
    *,
    job_dir: str | os.PathLike | None = None,
    checkpoint_interval_ms: int | None = None,
    watermark_interval_ms: int = 200,
) -> JobHandle:
    """Start the job over one file read to its end; the final watermark flushes every window, then it finishes.

    No periodic checkpoints by default (see :func:`runtime_config`): the sinks commit their files at the end.
    """
    source = Path(input_path).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"input file {source} does not exist")
    output = Path(output_dir).resolve()
    checkpoints = Path(checkpoint_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    properties = {
        flink_job.GROUP_CONSUMER: {"connector": "filesystem", "path": str(source)},
        flink_job.GROUP_SINK: local_sink_properties(output, 60_000),
        flink_job.GROUP_CONTRACT: contract.to_properties(),
    }
    return _launch(
        mode="bounded",
        properties=properties,
        runtime_config=runtime_config(checkpoints, checkpoint_interval_ms, watermark_interval_ms, None),
        output_dir=output,
        checkpoint_dir=checkpoints,
        spool_dir=None,
        feed_interval_ms=0,
        job_dir=job_dir,
        jvm_args=jvm_options("bounded", source.stat().st_size),
    )


def _await_running(handle: JobHandle, timeout_s: float) -> JobStatus:
    try:
        status = wait_for_state(handle, {RUNNING}, timeout_s)
    except FlinkJobError:
        _kill(handle)
        raise
    if status.state == FAILED:
        _reap(handle, 10)
        raise FlinkJobError(f"job in {handle.job_dir} failed to start: {status.failure}")
    return status


def _reap(handle: JobHandle, timeout_s: float) -> None:
    """Wait for the runner process to exit; kill its process group if it does not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if handle.process is not None:
            if handle.process.poll() is not None:
                return
        elif not pid_alive(handle.pid):
            return
        time.sleep(0.1)
    _kill(handle)


def _kill(handle: JobHandle) -> None:
    try:
        os.killpg(handle.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if handle.process is not None:
        try:
            handle.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def stop_job(
    handle: JobHandle,
    with_savepoint: bool = True,
    savepoint_dir: str | os.PathLike | None = None,
    timeout_s: float = 180,
) -> str | None:
    """Stop the job: with a savepoint (returns its path, for ``start_job(restore_savepoint=...)``) or cancel it.

    Raises FlinkJobError if the job had failed or the stop did not complete in time (the process is then
    killed), and SavepointError if the savepoint failed while the job runs on (as Flink leaves it: stop it
    again, or cancel it). A job that already finished returns None.
    """
    status = job_status(handle)
    if status.terminal:
        _reap(handle, 30)
        if status.state == FAILED:
            raise FlinkJobError(f"job in {handle.job_dir} had failed: {status.failure}")
        return status.savepoint
    target = Path(savepoint_dir) if savepoint_dir else handle.checkpoint_dir / "savepoints"
    request_id = uuid.uuid4().hex
    request = {
        "id": request_id,
        "action": "stop" if with_savepoint else "cancel",
        "savepoint_dir": str(target.resolve()),
    }
    write_json(handle.job_dir / "control.json", request)
    deadline = time.monotonic() + timeout_s
    while True:
        status = job_status(handle)
        if status.terminal:
            break
        if (status.control_error or {}).get("id") == request_id:
            raise SavepointError(
                f"stopping the job in {handle.job_dir} with a savepoint failed, and the job runs on: "
                f"{status.control_error['failure']}"
            )
        if time.monotonic() > deadline:
            _kill(handle)
            raise FlinkJobError(
                f"job in {handle.job_dir} did not stop within {timeout_s:.0f} s (state {status.state}); "
                f"log tail:\n{log_tail(handle.log_path)}"
            )
        time.sleep(0.2)
    _reap(handle, 60)
    if status.state == FAILED:
        raise FlinkJobError(f"stopping the job in {handle.job_dir} failed: {status.failure}")
    return status.savepoint


def wait_for_job(handle: JobHandle, timeout_s: float) -> JobStatus:
    """Wait for a (bounded) job to end; kill it and raise FlinkJobError on timeout."""
    try:
        status = wait_for_state(handle, TERMINAL_STATES, timeout_s)
    except FlinkJobError:
        _kill(handle)
        raise
    _reap(handle, 60)
    return status
