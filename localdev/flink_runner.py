"""Run the sessions job locally in PyFlink, one separate process (and JVM) per job.

Used by the CLI (bounded: one time-ordered file, read to the end) and by the local endpoint's
kinesisanalyticsv2 emulation (continuous: a spool directory). The job is built by the same code as on Managed
Flink (:func:`include.flink_app.flink_job.job_from_properties`), with ``filesystem`` connectors instead of
``kinesis`` and ``s3://``. Measured traps this module is shaped by:

* parallelism 1: with several readers the watermark (and so lateness) depends on thread timing;
* ``pipeline.auto-watermark-interval`` must be > 0 or a source-side watermark is never emitted;
* files read out of arrival order make whole files late: writers drop files into ``<spool>/inbox`` and the
  runner's feeder concatenates them, in name (= arrival) order, into one new file under ``<spool>/flink`` per
  tick, so the file source never discovers two files at once;
* checkpoints must go to the file system (the default in-memory storage fails above 5 MiB of state), and the
  restart strategy is ``none``, so a crashing job surfaces as FAILED with its reason instead of restarting
  forever;
* PyFlink 2.3's Python ``stop_with_savepoint`` wrapper is broken, so the Java JobClient is called through py4j;
  a savepoint that fails (its target cannot be written, say) leaves the job running, as Flink does: the runner
  goes on feeding and watching it and :func:`stop_job` raises :class:`SavepointError`;
* ``flink.config.0`` is applied after the runner's own configuration, so keys that would override what the
  runner relies on are refused up front (:func:`check_flink_config`).

Control and status go through files in the job directory, so a handle can be re-opened by another process
(:meth:`JobHandle.load`). Every wait has a timeout; a dead runner process reads as FAILED with its log tail.
The job directory also records the runner's and the JVM's PIDs (the JVM's command line carries a marker), so
that :func:`kill_job` can clean up after an owner that died, without ever signalling a recycled PID.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from include.flink_app import flink_job
from include.sessions.contract import SessionContract

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STARTING, RUNNING, FINISHED, FAILED, CANCELED, STOPPED = (
    "STARTING",
    "RUNNING",
    "FINISHED",
    "FAILED",
    "CANCELED",
    "STOPPED",
)
TERMINAL_STATES = frozenset({FINISHED, FAILED, CANCELED, STOPPED})

#: Sub-directories of a local output directory, one per sink (see flink_job.SINK_DIRS).
OUTPUT_TABLES = ("sessions", "metrics", "late_events", "rejected_events")
#: JVM system property that marks a job's JVM (see :func:`kill_job`).
JVM_MARKER_PROPERTY = "clickstream.flink.job"


class FlinkJobError(RuntimeError):
    """The job failed, or did not reach the expected state in time; the message carries the reason."""


class SavepointError(FlinkJobError):
    """A stop with savepoint failed and the job runs on (as Flink leaves it): stop it again, or cancel it."""


class FlinkConfigError(ValueError):
    """A ``flink.config.0`` key the local run cannot honour; the message names the key and its value."""


# -- spool directory -----------------------------------------------------------------------------------------


def spool_inbox(spool_dir: str | os.PathLike) -> Path:
    """Where writers drop JSON-lines files (see :func:`spool_events`)."""
    return Path(spool_dir) / "inbox"


def spool_source(spool_dir: str | os.PathLike) -> Path:
    """The directory the Flink file source monitors (filled only by the feeder)."""
    return Path(spool_dir) / "flink"


_spool_counter = itertools.count()


def spool_events(spool_dir: str | os.PathLike, records: Iterable[str | bytes | Mapping[str, Any]]) -> Path:
    """Atomically add one file of records (JSON text or dicts, one per line) to the inbox; returns its path.

    File names sort in the order of the calls (nanosecond clock plus a counter), which is the order the feeder
    hands them to Flink: that is the arrival order.
    """
    inbox = spool_inbox(spool_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{next(_spool_counter):06d}-{os.getpid()}.jsonl"
    tmp = inbox / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        for record in records:
            if isinstance(record, Mapping):
                data = json.dumps(record, ensure_ascii=False).encode()
            elif isinstance(record, str):
                data = record.encode()
            elif isinstance(record, bytes):
                data = record
            else:
                raise TypeError(
                    f"a spool record must be str, bytes or a mapping, got {type(record).__name__}"
                )
            handle.write(data.rstrip(b"\n") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, inbox / name)
    return inbox / name


class SpoolFeeder(threading.Thread):
    """Moves inbox files, in name order, into one new source file per tick (see the module docstring)."""

    def __init__(self, spool_dir: Path, interval_s: float) -> None:
        super().__init__(name="spool-feeder", daemon=True)
        self.inbox = spool_inbox(spool_dir)
        self.target = spool_source(spool_dir)
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.error: str | None = None
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.target.mkdir(parents=True, exist_ok=True)
        existing = [
            int(p.stem.split("-")[1]) for p in self.target.glob("part-*.jsonl") if p.stem[5:].isdigit()
        ]
        self.sequence = max(existing, default=0)

    def feed_once(self) -> Path | None:
        files = sorted(p for p in self.inbox.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            return None
        self.sequence += 1
        name = f"part-{self.sequence:010d}.jsonl"
        tmp = self.target / f".{name}.tmp"
        with open(tmp, "wb") as out:
            for path in files:
                data = path.read_bytes()
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.target / name)
        for path in files:
            path.unlink()
        return self.target / name

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.feed_once()
            except OSError as exc:  # reported in the status; the job itself keeps running
                self.error = f"spool feeder: {exc}"


# -- handles and status --------------------------------------------------------------------------------------


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
    _process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

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

    def _save(self) -> None:
        data = {
            "job_dir": str(self.job_dir),
            "pid": self.pid,
            "mode": self.mode,
            "output_dir": str(self.output_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "spool_dir": str(self.spool_dir) if self.spool_dir else None,
            "jvm_marker": self.jvm_marker,
        }
        _write_json(self.job_dir / "handle.json", data)


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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # never partial (atomic replace); treat as absent rather than crash
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no runner log)"
    text = [line for line in text if "GCSFileSystem" not in line]
    return "\n".join(text[-lines:])


def job_status(handle: JobHandle) -> JobStatus:
    """The job's state (STARTING, RUNNING, FINISHED, FAILED, CANCELED, STOPPED) and failure reason, if any."""
    data = _read_json(handle.job_dir / "status.json") or {"state": STARTING}
    returncode = None
    if handle._process is not None:
        returncode = handle._process.poll()
        alive = returncode is None
    else:
        alive = _pid_alive(handle.pid)
    state = data.get("state", STARTING)
    failure = data.get("failure")
    if not alive and state not in TERMINAL_STATES:
        state = FAILED
        failure = (
            f"the runner process {handle.pid} exited (code {returncode}) while the job was {data.get('state')}; "
            f"log tail:\n{_log_tail(handle.log_path)}"
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
                f"(state {status.state}); log tail:\n{_log_tail(handle.log_path)}"
            )
        time.sleep(0.2)


def _runtime_config(
    checkpoint_dir: Path,
    checkpoint_interval_ms: int,
    watermark_interval_ms: int,
    restore_savepoint: str | None,
) -> dict[str, str]:
    if watermark_interval_ms <= 0:
        raise ValueError(
            f"watermark_interval_ms must be > 0 (0 disables periodic watermarks), got {watermark_interval_ms}"
        )
    config = {
        "parallelism.default": "1",
        "pipeline.auto-watermark-interval": f"{watermark_interval_ms} ms",
        "execution.checkpointing.interval": f"{checkpoint_interval_ms} ms",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.savepoint-dir": (checkpoint_dir / "savepoints").resolve().as_uri(),
        "restart-strategy.type": "none",
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
    }
    if restore_savepoint:
        config["execution.state-recovery.path"] = str(restore_savepoint)
    return config


#: ``flink.config.0`` key prefixes a local run refuses, with the reason the error gives.
_REFUSED_PREFIXES = (
    (
        ("execution.checkpointing.", "state.checkpoints.", "state.savepoints."),
        "the runner sets checkpoints and savepoints (the checkpoint interval comes from "
        "CheckpointConfiguration)",
    ),
    (("execution.state-recovery.",), "the restore path comes from the snapshot the application restores"),
    (
        ("restart-strategy",),
        "the restart strategy stays 'none', so that a crashing job surfaces as FAILED with its reason",
    ),
    (
        (
            "rest.",
            "jobmanager.",
            "taskmanager.",
            "blob.",
            "metrics.",
            "queryable-state.",
            "pekko.",
            "high-availability",
            "web.",
            "cluster.",
            "execution.target",
            "python.",
        ),
        "the local mini-cluster's processes, addresses and ports are the runner's (it listens on 127.0.0.1 only)",
    ),
)
#: Parallelism keys and the values that keep a local run at parallelism 1.
_PARALLELISM_KEYS = {"parallelism.default": ("1",), "table.exec.resource.default-parallelism": ("1", "-1")}


def check_flink_config(flink_config: Mapping[str, str], runtime_config: Mapping[str, str]) -> dict[str, str]:
    """``flink.config.0`` as strings, or FlinkConfigError naming the first key (and value) a local run refuses.

    The group is applied after the runner's own configuration (see :func:`include.flink_app.main.run`), so a
    key here would override it: parallelism above 1 (nondeterministic watermarks, so lateness), checkpoint and
    savepoint locations, restart strategy, addresses and ports, batch mode or no periodic watermarks are
    refused; table and pipeline options (``table.exec.source.idle-timeout``, ``pipeline.name``, ...) pass.
    """
    config = {str(k).strip(): str(v).strip() for k, v in flink_config.items()}
    for key, value in config.items():
        reason = None
        if key in _PARALLELISM_KEYS:
            if value not in _PARALLELISM_KEYS[key]:
                reason = (
                    "a local run keeps parallelism 1 (with several readers the watermark, and so which events "
                    "are late, depends on thread timing)"
                )
        elif key == "execution.runtime-mode":
            if value.lower() != "streaming":
                reason = "the sessions job runs in streaming mode"
        elif key == "pipeline.auto-watermark-interval":
            if re.fullmatch(r"0+\s*[a-z]*", value.lower()):
                reason = "an interval of 0 disables periodic watermarks, so no session would ever close"
        else:
            for prefixes, why in _REFUSED_PREFIXES:
                if key.startswith(prefixes):
                    reason = why
                    break
            else:
                if key in runtime_config:
                    reason = "the local runner sets it"
        if reason:
            raise FlinkConfigError(
                f"{flink_job.GROUP_FLINK} {key!r} = {value!r} cannot be used by the local Flink run: {reason}"
            )
    return config


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
    _write_json(job_path / "spec.json", spec)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    # PyFlink otherwise starts a gRPC "loopback" server for Python UDF workers on all interfaces ([::]:0);
    # the job has no Python UDF, so nothing needs it, and nothing may listen beyond 127.0.0.1.
    env["_python_worker_execution_mode"] = "process"
    # A mark on the JVM's command line (PyFlink passes JVM_ARGS on), so kill_job can tell it is this job's JVM.
    marker = uuid.uuid4().hex
    env["JVM_ARGS"] = f"{env.get('JVM_ARGS', '')} -D{JVM_MARKER_PROPERTY}={marker}".strip()
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
        _process=process,
    )
    handle._save()
    return handle


def local_sink_properties(output_dir: Path, rollover_interval_ms: int) -> dict[str, str]:
    """``sink.config.0`` for local directories: short rollover so committed files appear within seconds."""
    return {
        "output.path": str(output_dir.resolve()),
        "rollover.interval": f"{rollover_interval_ms} ms",
        "check.interval": f"{max(100, rollover_interval_ms // 2)} ms",
    }


def start_job(
    spool_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    contract: SessionContract,
    checkpoint_dir: str | os.PathLike,
    restore_savepoint: str | None = None,
    *,
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
    :func:`check_flink_config`) before anything starts.
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
    runtime_config = _runtime_config(
        checkpoints, checkpoint_interval_ms, watermark_interval_ms, restore_savepoint
    )
    if flink_config:
        properties[flink_job.GROUP_FLINK] = check_flink_config(flink_config, runtime_config)
    handle = _launch(
        mode="continuous",
        properties=properties,
        runtime_config=runtime_config,
        output_dir=output,
        checkpoint_dir=checkpoints,
        spool_dir=spool,
        # Two monitor intervals between new files: the source never discovers two files in one scan.
        feed_interval_ms=2 * monitor_interval_ms + 100,
        job_dir=job_dir,
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
    checkpoint_interval_ms: int = 2_000,
    watermark_interval_ms: int = 200,
) -> JobHandle:
    """Start the job over one file read to its end; the final watermark flushes every window, then it finishes."""
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
        runtime_config=_runtime_config(checkpoints, checkpoint_interval_ms, watermark_interval_ms, None),
        output_dir=output,
        checkpoint_dir=checkpoints,
        spool_dir=None,
        feed_interval_ms=0,
        job_dir=job_dir,
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
        if handle._process is not None:
            if handle._process.poll() is not None:
                return
        elif not _pid_alive(handle.pid):
            return
        time.sleep(0.1)
    _kill(handle)


def _kill(handle: JobHandle) -> None:
    try:
        os.killpg(handle.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if handle._process is not None:
        try:
            handle._process.wait(timeout=10)
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
    _write_json(handle.job_dir / "control.json", request)
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
                f"log tail:\n{_log_tail(handle.log_path)}"
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


# -- outputs -------------------------------------------------------------------------------------------------


def committed_files(output_dir: str | os.PathLike, table: str) -> list[Path]:
    """Committed part files of one sink (in-progress and marker files start with '.' or '_')."""
    if table not in OUTPUT_TABLES:
        raise ValueError(f"table must be one of {OUTPUT_TABLES}, got {table!r}")
    root = Path(output_dir) / table
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith((".", "_"))
        and not any(part.startswith(".") for part in p.parts)
    )


def read_rows(output_dir: str | os.PathLike, table: str) -> list[dict[str, Any]]:
    """All committed rows of one sink (JSON lines)."""
    rows: list[dict[str, Any]] = []
    for path in committed_files(output_dir, table):
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise FlinkJobError(f"{path} line {line_no} is not JSON: {exc}") from None
    return rows


@dataclass(frozen=True)
class BoundedRun:
    """Result of :func:`run_bounded`: the final status and every sink's rows."""

    status: JobStatus
    sessions: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    late_events: list[dict[str, Any]]
    rejected_events: list[dict[str, Any]]
    seconds: float


def run_bounded(
    input_path: str | os.PathLike,
    contract: SessionContract,
    *,
    output_dir: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    timeout_s: float = 1800,
    watermark_interval_ms: int = 200,
) -> BoundedRun:
    """Run the job over one file to its end and return all outputs; raise FlinkJobError if it fails."""
    started = time.monotonic()
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="flink-bounded-"))
    output = Path(output_dir) if output_dir else work / "output"
    if output.exists() and any(output.iterdir()):
        raise FlinkJobError(f"output directory {output} is not empty; a bounded run needs a fresh one")
    handle = start_bounded_job(
        input_path,
        output,
        contract,
        work / "checkpoints",
        job_dir=work / "job",
        watermark_interval_ms=watermark_interval_ms,
    )
    status = wait_for_job(handle, timeout_s)
    if status.state != FINISHED:
        raise FlinkJobError(f"bounded job over {input_path} ended {status.state}: {status.failure}")
    return BoundedRun(
        status=status,
        sessions=read_rows(output, "sessions"),
        metrics=read_rows(output, "metrics"),
        late_events=read_rows(output, "late_events"),
        rejected_events=read_rows(output, "rejected_events"),
        seconds=time.monotonic() - started,
    )


# -- the runner process --------------------------------------------------------------------------------------


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


class _Runner:
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
        _write_json(self.job_dir / "status.json", data)

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
            from include.flink_app.main import run  # the Managed Flink entry point's own code path

            result = run(self.spec["properties"], self.spec["runtime_config"], self.timings)
            client = result.get_job_client()._j_job_client
        except Exception as exc:  # planning or submission failed: report, never hang
            traceback.print_exc()
            self.write(FAILED, failure=_java_failure(exc))
            return 1
        self.write(RUNNING, job_id=client.getJobID().toString())
        return self.watch(client)

    def watch(self, client: Any) -> int:
        result_future = client.getJobExecutionResult()
        while True:
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
            control = _read_json(self.job_dir / "control.json")
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


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one sessions job (started by flink_runner.start_job).")
    parser.add_argument("--job-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    return _Runner(args.job_dir).run()


def describe(handle: JobHandle) -> dict[str, Any]:
    """The handle and its status as plain data (for the kinesisanalyticsv2 emulation's Describe calls)."""
    status = job_status(handle)
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(status).items()}
    data.update(job_dir=str(handle.job_dir), pid=handle.pid, mode=handle.mode)
    return data


def _proc_cmdline(pid: int) -> list[str] | None:
    """The command line of a live, non-zombie process, or None."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            if "\nState:\tZ" in (proc / "status").read_text():
                return None
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    out = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True)
    line = out.stdout.strip()
    if out.returncode != 0 or not line or line.startswith("Z"):
        return None
    return line.split()[1:]


def job_processes(job_dir: str | os.PathLike) -> dict[str, int]:
    """The live processes of a job, found from its directory and checked: ``{"runner": pid, "jvm": pid}``.

    A PID counts only while its command line still proves it is this job's (the runner's names the job
    directory, the JVM's carries the job's marker), so a recycled PID is never reported.
    """
    try:
        handle = JobHandle.load(job_dir)
    except (FileNotFoundError, ValueError, KeyError):
        return {}
    found: dict[str, int] = {}
    runner = _proc_cmdline(handle.pid)
    if runner and "localdev.flink_runner" in runner and str(handle.job_dir) in runner:
        found["runner"] = handle.pid
    jvm_pid = (_read_json(handle.job_dir / "status.json") or {}).get("jvm_pid")
    if jvm_pid and handle.jvm_marker:
        jvm = _proc_cmdline(int(jvm_pid))
        if jvm and f"-D{JVM_MARKER_PROPERTY}={handle.jvm_marker}" in jvm:
            found["jvm"] = int(jvm_pid)
    return found


def kill_job(job_dir: str | os.PathLike, timeout_s: float = 10) -> list[int]:
    """Kill a job whose owner is gone (its companion was killed with kill -9): runner and JVM; the PIDs killed.

    Only the processes :func:`job_processes` vouches for are signalled (the runner with its process group,
    which holds the JVM), and this waits until they are gone.
    """
    found = job_processes(job_dir)
    if "runner" in found:
        try:
            os.killpg(found["runner"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if "jvm" in found:
        try:
            os.kill(found["jvm"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while any(_proc_cmdline(pid) for pid in found.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(found.values())


def remove_job_dir(handle: JobHandle) -> None:
    """Delete the job directory of a terminated job (spec, status, log)."""
    if job_status(handle).alive:
        raise FlinkJobError(f"job in {handle.job_dir} is still running; stop it first")
    shutil.rmtree(handle.job_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(_child_main())
