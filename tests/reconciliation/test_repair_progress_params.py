"""Repair runs, the stream's progress marker and the DAG's params, without Airflow (moto S3 in process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from include.config import Settings
from include.reconciliation.params import ReconcileParams
from include.reconciliation.progress import stream_progress
from include.reconciliation.repair import apply_repair
from include.reconciliation.report import Report

CFG = Settings()
HORIZON = datetime(2026, 11, 20, 9, 2, tzinfo=UTC)


def _report(status="failed", **counts) -> Report:
    base = dict.fromkeys(("matched", "missing_in_stream", "missing_in_batch", "mismatch"), 0)
    base.update(counts)
    return Report(
        hour="2026-11-20T08:00:00.000Z",
        status=status,
        passed=status != "failed",
        counts=base,
        totals={"batch": {"sessions": 1000}},
        thresholds={"max_unexplained_share": 0.001},
        window={},
    )


def test_repair_marks_a_failed_hour_repaired_with_its_previous_status():
    failed = _report(matched=950, missing_in_stream=40, mismatch=10)
    repaired = apply_repair(failed, {"status": "failed"}, repair=True)
    assert repaired.status == "repaired" and repaired.passed is True
    assert repaired.repair["previous_status"] == "failed" and repaired.repair["repaired_by_batch"] == 50
    assert repaired.repair["repaired_by_cause"] == {"missing_in_stream": 40, "mismatch": 10}
    assert repaired.counts == failed.counts
    # A second repair run keeps the first previous status: same report, same bytes.
    again = apply_repair(failed, repaired.to_dict(), repair=True)
    assert again.to_json() == repaired.to_json()


def test_without_repair_or_with_lost_raw_data_the_hour_stays_failed():
    failed = _report(matched=950, missing_in_stream=50)
    assert apply_repair(failed, {"status": "failed"}, repair=False) is failed
    lost = _report(matched=950, missing_in_batch=5)
    assert apply_repair(lost, {"status": "failed"}, repair=True).status == "failed"
    passed = _report("passed", matched=1000)
    assert apply_repair(passed, None, repair=True) is passed


def _metrics(s3, hour: str, name: str, window_ends: list[str]) -> None:
    lines = "\n".join(json.dumps({"window_end": end}) for end in window_ends) + "\n"
    s3.put_object(Bucket="lake", Key=f"streaming/metrics/dt=2026-11-20/hr={hour}/{name}", Body=lines.encode())


@mock_aws
def test_the_progress_marker_is_the_committed_window_end_past_the_horizon():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert stream_progress(s3, "lake", CFG, HORIZON, now) is None
    _metrics(s3, "09", "part-1", ["2026-11-20T09:00:00.000Z", "2026-11-20T09:01:00.000Z"])
    _metrics(s3, "09", ".part-2.inprogress", ["2026-11-20T09:05:00.000Z"])  # not committed
    assert stream_progress(s3, "lake", CFG, HORIZON, now) == datetime(2026, 11, 20, 9, 1, tzinfo=UTC)
    _metrics(s3, "10", "part-3", ["2026-11-20T10:30:00.000Z"])
    assert stream_progress(s3, "lake", CFG, HORIZON, now) == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def test_params_parse_the_stream_start_and_refuse_bad_values():
    assert ReconcileParams().stream_started() is None
    p = ReconcileParams.from_dict({"stream_started_at": "2026-11-20T09:00:00Z", "repair": True})
    assert p.stream_started() == datetime(2026, 11, 20, 9, tzinfo=UTC) and p.repair is True
    with pytest.raises(ValueError, match="stream_started_at must be an ISO-8601 timestamp"):
        ReconcileParams.from_dict({"stream_started_at": "yesterday"})
    with pytest.raises(ValueError, match="stream_started_at must carry a time zone"):
        ReconcileParams.from_dict({"stream_started_at": "2026-11-20T09:00:00"})
    with pytest.raises(ValueError, match="unknown reconciliation parameter"):
        ReconcileParams.from_dict({"repiar": True})
    with pytest.raises(ValueError, match="repair must be true or false"):
        ReconcileParams.from_dict({"repair": "yes"})


@mock_aws
def test_the_sessions_table_and_its_partitions_carry_the_hours_status():
    from include.reconciliation.catalog import (
        ensure_sessions_partition,
        partition_parameters,
        sessions_table_input,
    )

    glue = boto3.client("glue", region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "db"})
    glue.create_table(DatabaseName="db", TableInput=sessions_table_input("lake", CFG.batch_sessions_prefix))
    hour = datetime(2026, 11, 20, 8, tzinfo=UTC)
    report = {"status": "failed", "counts": {"matched": 3}, "totals": {"match_rate": 0.75}, "repair": None}
    params = partition_parameters(report, "s3://lake/reports/x/report.json")
    assert ensure_sessions_partition(glue, "db", hour, params) == "created"
    assert ensure_sessions_partition(glue, "db", hour, params) == "unchanged"
    repaired = dict(report, status="repaired", repair={"previous_status": "failed", "repaired_by_batch": 1})
    assert ensure_sessions_partition(glue, "db", hour, partition_parameters(repaired, "s3://x")) == "updated"
    part = glue.get_partition(DatabaseName="db", TableName="sessions", PartitionValues=["2026-11-20", "08"])
    assert (
        part["Partition"]["StorageDescriptor"]["Location"] == "s3://lake/batch/sessions/dt=2026-11-20/hr=08/"
    )
    assert part["Partition"]["Parameters"]["reconciliation_status"] == "repaired"
    assert part["Partition"]["Parameters"]["reconciliation_previous_status"] == "failed"
