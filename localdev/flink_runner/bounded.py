"""The bounded run the CLI uses: one time-ordered file read to its end, then every sink's rows.

Checks of the input that only the caller can make (the CLI's line-by-line verdicts) run while the job starts, not
before: the runner's process, its JVM and the planning take seconds that the checks can use, and a failed check
kills the job before it has read much.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.sessions.contract import SessionContract
from localdev.flink_runner.control import start_bounded_job, wait_for_job
from localdev.flink_runner.job_dir import FINISHED, FlinkJobError, JobStatus
from localdev.flink_runner.outputs import read_rows
from localdev.flink_runner.processes import kill_job


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
    check_input: Callable[[], None] | None = None,
) -> BoundedRun:
    """Run the job over one file to its end and return all outputs; raise FlinkJobError if it fails.

    ``check_input`` runs in this process once the job is launched; if it raises, the job is killed and the
    exception propagates (nothing is read from the outputs).
    """
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
    if check_input is not None:
        try:
            check_input()
        except BaseException:
            kill_job(handle.job_dir)
            if handle.process is not None:
                handle.process.wait(timeout=30)
            raise
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
