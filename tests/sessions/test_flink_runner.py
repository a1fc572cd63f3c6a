"""The local runner on the real engine: continuous spool input, stop with savepoint, restore, failures."""

from __future__ import annotations

import os
import signal
import time

import pytest

from include.sessions.contract import SessionContract
from localdev import flink_runner as fr
from tests.sessions.golden import T, event

pytestmark = pytest.mark.jvm

CONTRACT = SessionContract()


def wait_rows(output, table, count, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = fr.read_rows(output, table)
        if len(rows) >= count:
            return rows
        time.sleep(0.3)
    raise AssertionError(
        f"{table}: expected {count} rows within {timeout_s} s, got {fr.read_rows(output, table)}"
    )


def test_continuous_job_survives_stop_with_savepoint_and_restore(tmp_path):
    spool, output, checkpoints = tmp_path / "spool", tmp_path / "out", tmp_path / "checkpoints"
    handle = fr.start_job(spool, output, CONTRACT, checkpoints, job_dir=tmp_path / "job1")
    try:
        assert fr.job_status(handle).state == fr.RUNNING
        fr.spool_events(spool, [event("s1", 1, T), event("s2", 1, T + 1_000)])
        fr.spool_events(spool, [event("s3", 2, T + 2_000)])
        fr.spool_events(spool, [event("s4", 3, T + 200_000)])  # the watermark passes users 1 and 2
        rows = wait_rows(output, "sessions", 2)
        assert sorted((r["user_id"], r["event_count"]) for r in rows) == [(1, 2), (2, 1)]
        assert fr.describe(fr.JobHandle.load(handle.job_dir))["state"] == fr.RUNNING
        savepoint = fr.stop_job(handle, with_savepoint=True, savepoint_dir=tmp_path / "savepoints")
    except BaseException:
        fr.stop_job(handle, with_savepoint=False)
        raise
    assert savepoint and fr.job_status(handle).state == fr.STOPPED
    assert not fr.job_status(handle).alive

    # While stopped: more of user 3's session, and a copy of s1 (the dedup state must remember it).
    fr.spool_events(spool, [event("s5", 3, T + 201_000), event("s1", 1, T)])
    handle2 = fr.start_job(
        spool, output, CONTRACT, checkpoints, restore_savepoint=savepoint, job_dir=tmp_path / "j2"
    )
    try:
        fr.spool_events(spool, [event("s6", 4, T + 400_000)])
        rows = wait_rows(output, "sessions", 3)
        time.sleep(2)  # nothing more may arrive: no re-read files, no second session for user 1
        rows = fr.read_rows(output, "sessions")
        assert sorted((r["user_id"], r["event_count"]) for r in rows) == [(1, 2), (2, 1), (3, 2)]
        assert fr.read_rows(output, "late_events") == []  # the s1 copy was a duplicate, not a late event
    finally:
        assert fr.stop_job(handle2, with_savepoint=False) is None
    assert fr.job_status(handle2).state == fr.CANCELED


def test_a_crashing_job_reads_as_failed_with_its_reason(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "sessions").write_text("a file where the sink needs a directory\n")
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(__import__("json").dumps(event(f"x{i}", 1, T + i)) for i in range(3)) + "\n")
    handle = fr.start_bounded_job(
        source, output, CONTRACT, tmp_path / "checkpoints", job_dir=tmp_path / "job"
    )
    status = fr.wait_for_job(handle, timeout_s=180)
    assert status.state == fr.FAILED
    assert "sessions" in status.failure, status.failure
    with pytest.raises(fr.FlinkJobError, match="had failed"):
        fr.stop_job(handle)


def test_a_killed_runner_reads_as_failed_not_running(tmp_path):
    handle = fr.start_job(
        tmp_path / "spool", tmp_path / "out", CONTRACT, tmp_path / "ck", job_dir=tmp_path / "job"
    )
    os.killpg(handle.pid, signal.SIGKILL)
    handle.process.wait(timeout=30)
    status = fr.job_status(fr.JobHandle.load(handle.job_dir))  # as another process would see it
    assert status.state == fr.FAILED and "exited" in status.failure
