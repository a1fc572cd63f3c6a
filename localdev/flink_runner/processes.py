"""Finding and killing a job's processes from its directory, after its owner died, never a recycled PID.

The job directory records the runner's and the JVM's PIDs; a PID counts only while its command line proves it
is still this job's (the runner's names the job directory, the JVM's carries the job's marker property).
"""

from __future__ import annotations

import os
import signal
import time

from localdev.flink_runner.job_dir import JVM_MARKER_PROPERTY, JobHandle, read_json
from localdev.processes import cmdline


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
    runner = cmdline(handle.pid)
    if runner and "localdev.flink_runner" in runner and str(handle.job_dir) in runner:
        found["runner"] = handle.pid
    jvm_pid = (read_json(handle.job_dir / "status.json") or {}).get("jvm_pid")
    if jvm_pid and handle.jvm_marker:
        jvm = cmdline(int(jvm_pid))
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
    while any(cmdline(pid) for pid in found.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(found.values())
